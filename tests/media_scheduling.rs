//! `serve --media-rt-priority` and `--media-cpus` with the real binary: the media threads (and their
//! tickers, one priority above) run under SCHED_FIFO pinned to the CPUs asked for, and the other
//! threads do not; where the system refuses real-time scheduling the server says so and serves on.
//! What the machine allows is read from /proc, so each branch asserts what an operator would see.

mod common;

use std::time::Duration;

use common::{root, Server};

/// One thread of the server: its name, scheduling policy (stat field 41), real-time priority (40)
/// and allowed CPUs (`Cpus_allowed_list`).
#[derive(Debug)]
struct Thread {
    name: String,
    policy: u32,
    rt_priority: u32,
    cpus: String,
}

fn threads(pid: u32) -> Vec<Thread> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let dir = task.expect("task entry").path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (head, rest) = stat.rsplit_once(") ").expect("stat has a command name");
        let name = head.split_once('(').expect("stat has a command name").1;
        // After the name the fields start at 3 (state): rt_priority is 40, policy 41.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        out.push(Thread {
            name: name.to_owned(),
            rt_priority: f[37].parse().expect("rt_priority"),
            policy: f[38].parse().expect("policy"),
            cpus,
        });
    }
    out
}

/// Whether this process may ask for SCHED_FIFO at `priority`: CAP_SYS_NICE (bit 23 of CapEff) or an
/// RLIMIT_RTPRIO at least that high.
fn may_use_fifo(priority: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_sys_nice = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps >> 23 & 1 == 1);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let rtprio = limits
        .lines()
        .find(|l| l.starts_with("Max realtime priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    cap_sys_nice || rtprio >= priority
}

const SCHED_FIFO: u32 = 1;

#[test]
fn media_threads_run_under_sched_fifo_on_the_cpus_asked_for_and_nothing_else_does() {
    let server = Server::start(
        &root().join("ivr-menus"),
        &[
            "--no-watch",
            "--media-threads",
            "2",
            "--media-rt-priority",
            "5",
            "--media-cpus",
            "0",
        ],
    );
    server
        .wait_log("menus live", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("server not up:\n{}", server.log_text()));
    let fifo = may_use_fifo(6);
    // The tickers start, and each thread applies its options, just after the engine is up: read
    // /proc until they all show (bounded), then check what it shows.
    let settled = |all: &[Thread]| {
        let media = all.iter().filter(|t| t.name.starts_with("helpline-media"));
        media.clone().count() == 4
            && media.clone().all(|t| t.cpus == "0")
            && (!fifo || media.clone().all(|t| t.policy == SCHED_FIFO))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut all = threads(server.pid());
    while !settled(&all) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        all = threads(server.pid());
    }
    let media: Vec<&Thread> = all
        .iter()
        .filter(|t| t.name.starts_with("helpline-media"))
        .collect();
    // Two media threads and their two tickers ("helpline-media-tick" shows as 15 characters).
    assert_eq!(media.len(), 4, "{all:#?}");
    for t in &media {
        assert_eq!(t.cpus, "0", "{t:?} pinned to CPU 0");
    }
    if fifo {
        for t in &media {
            let want = if t.name.starts_with("helpline-media-") {
                6
            } else {
                5
            };
            assert_eq!((t.policy, t.rt_priority), (SCHED_FIFO, want), "{t:?}");
        }
    } else {
        // Refused: logged once per thread, and the server runs on.
        assert!(
            server
                .wait_log_count("left on the normal scheduler", 4, Duration::from_secs(5))
                .is_some(),
            "{}",
            server.log_text()
        );
    }
    for t in all.iter().filter(|t| !t.name.starts_with("helpline-media")) {
        assert_ne!(t.policy, SCHED_FIFO, "only the media threads: {t:?}");
    }
}
