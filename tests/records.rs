//! Issue 14's durable call records against the real binary: a CDR on a full filesystem (a 64 KiB
//! tmpfs, so root is required) waits in the spool, `/health/ready` turns 503 past half of it, and once
//! space is freed every record is in the file, whole, in call order, none twice; a rename as logrotate
//! does it plus `SIGUSR1` leaves every record in exactly one of the two files; a full spool refuses new
//! calls with 503 and a shutdown still writes every record.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sdp_offer, Server, Ua};

const WAIT: Duration = Duration::from_secs(10);

fn first_flow() -> PathBuf {
    common::root().join("tests/data/menus/first-flow")
}

/// The value of an unlabelled sample (or the sample with exactly these labels) in `/metrics`.
fn metric(http: SocketAddr, sample: &str) -> f64 {
    let (status, body) = common::http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{body}"))
}

/// Records waiting in the CDR spool.
fn spooled(http: SocketAddr) -> usize {
    metric(http, "helpline_cdr_spooled_records") as usize
}

/// The lines of a file (none when it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every line parsed as a JSON object, with its `call_id`: a torn line fails here.
fn call_ids(path: &Path) -> Vec<String> {
    lines(path)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: torn or bad line {l:?}: {e}", path.display()));
            v["call_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no call_id in {l}"))
                .to_owned()
        })
        .collect()
}

/// Polls `cond` (every 20 ms) until it holds, bounded by [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One whole call: INVITE, 200, ACK, our BYE and its 200. Returns its Call-ID.
fn call(server: &Server, rtp: &UdpSocket) -> String {
    common::whole_call(server, rtp, WAIT)
}

/// An INVITE the server must refuse with 503 and a Retry-After.
fn refused_call(server: &Server, rtp: &UdpSocket) -> String {
    let mut ua = Ua::udp(server.addr);
    let port = rtp.local_addr().expect("rtp addr").port();
    let call = ua.invite("08000000001", &sdp_offer(port, "0 101", ""));
    let refused = ua.expect_response(503, WAIT);
    let retry = refused.header("Retry-After").expect("a Retry-After");
    assert!(
        retry.trim().parse::<u32>().is_ok_and(|s| s > 0),
        "{}",
        refused.text
    );
    call.call_id
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    assert!(
        root,
        "this test mounts a 64 KiB tmpfs to fill a real filesystem: run it as root (CI does)"
    );
}

/// A small tmpfs, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server may still hold the CDR file open if the test failed before it exited.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `path` with one file until it refuses another byte.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let block = [b'x'; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling: {e}"),
        }
    }
    // A last partial page's worth, byte-sized writes, so nothing is left.
    while f.write(b"x").is_ok_and(|n| n == 1) {}
}

#[test]
fn cdr_on_a_full_filesystem_waits_in_the_spool_and_lands_whole_and_in_order() {
    require_root();
    let dir = common::temp_dir("records-tmpfs");
    let fs = Tmpfs::mount(&dir.join("fs"));
    let cdr = fs.0.join("cdr.jsonl");
    let filler = fs.0.join("filler");
    let server = Server::start_with_cdr(
        &first_flow(),
        &cdr,
        &[
            "--no-watch",
            "--http",
            "127.0.0.1:0",
            "--cdr-spool",
            "8",
            "--cdr-fsync",
            "line",
        ],
    );
    let http = server.http_addr();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    assert_eq!(common::http_get(http, "/health/ready").0, 200);

    // Full, then one page freed: the first records fit, the one that crosses the page's end is
    // written in part, cut back, and waits with every record after it.
    fill(&filler);
    let len = std::fs::metadata(&filler).expect("filler").len();
    std::fs::File::options()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(len.saturating_sub(4096)))
        .expect("free one page");
    let mut made = Vec::new();
    while spooled(http) == 0 {
        assert!(made.len() < 30, "30 records fit in one page?");
        made.push(call(&server, &rtp));
        let n = made.len();
        wait_until("the record written or spooled", || {
            lines(&cdr).len() + spooled(http) == n
        });
    }
    let written = call_ids(&cdr);
    assert_eq!(written, made[..written.len()], "whole lines, in order");
    assert!(!written.is_empty(), "some records fitted in the free page");
    // Unless the records ended exactly at the page's end, the refused one went in part first.
    let used = std::fs::metadata(&cdr).expect("the CDR").len();
    if !used.is_multiple_of(4096) {
        assert!(
            server
                .wait_log("a part-written record was cut off the file", WAIT)
                .is_some(),
            "{used} bytes used: the record crossing the page end was not cut back:\n{}",
            server.log_text()
        );
    }

    // Up to half the spool (4 of 8): still ready; one more: 503, naming the spool.
    while spooled(http) < 4 {
        made.push(call(&server, &rtp));
        let n = made.len();
        wait_until("the record spooled", || {
            lines(&cdr).len() + spooled(http) == n
        });
        assert_eq!(
            common::http_get(http, "/health/ready").0,
            200,
            "{} spooled",
            spooled(http)
        );
    }
    made.push(call(&server, &rtp));
    wait_until("readiness to fail past half the spool", || {
        common::http_get(http, "/health/ready").0 == 503
    });
    let (_, why) = common::http_get(http, "/health/ready");
    assert!(why.contains("5 records wait in the spool"), "{why}");
    assert_eq!(
        call_ids(&cdr),
        written,
        "nothing more written, nothing torn"
    );

    // Space again: the next record is a retry; everything lands, in call order, once each.
    std::fs::remove_file(&filler).expect("remove the filler");
    made.push(call(&server, &rtp));
    wait_until("every record in the file", || {
        lines(&cdr).len() >= made.len()
    });
    assert_eq!(call_ids(&cdr), made);
    assert_eq!(spooled(http), 0);
    assert_eq!(common::http_get(http, "/health/ready").0, 200);
    assert_eq!(
        metric(http, "helpline_cdr_records_written_total"),
        made.len() as f64
    );
    drop(server);
}

#[test]
fn renamed_by_logrotate_and_sigusr1_every_record_is_in_one_of_the_two_files() {
    let dir = common::temp_dir("records-rotate");
    let cdr = dir.join("cdr.jsonl");
    let rotated = dir.join("cdr.jsonl.1");
    let server = Server::start_with_cdr(&first_flow(), &cdr, &["--no-watch"]);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let mut made = vec![call(&server, &rtp), call(&server, &rtp)];
    wait_until("two records", || lines(&cdr).len() == 2);
    // logrotate (no copytruncate): rename, a call in between, then the signal.
    std::fs::rename(&cdr, &rotated).expect("rename");
    made.push(call(&server, &rtp));
    server.signal("USR1");
    server
        .wait_log("SIGUSR1: reopening the record files", WAIT)
        .unwrap_or_else(|| panic!("no reopen:\n{}", server.log_text()));
    made.push(call(&server, &rtp));
    made.push(call(&server, &rtp));
    wait_until("five records in the two files", || {
        lines(&rotated).len() + lines(&cdr).len() == 5
    });
    let old = call_ids(&rotated);
    let new = call_ids(&cdr);
    assert_eq!(old, made[..2], "the rotated file keeps what it had");
    let mut all = old.clone();
    all.extend(new.iter().cloned());
    assert_eq!(
        all, made,
        "every record once, in order, across the two files"
    );
    assert_eq!(
        new[new.len() - 2..],
        made[3..],
        "after SIGUSR1: the new file"
    );
}

#[test]
fn a_full_spool_refuses_new_calls_with_503_and_a_shutdown_writes_every_record() {
    let dir = common::temp_dir("records-full");
    let cdr = dir.join("cdr.jsonl");
    let mut server = Server::start_with_cdr(
        &first_flow(),
        &cdr,
        &["--no-watch", "--http", "127.0.0.1:0", "--cdr-spool", "3"],
    );
    let http = server.http_addr();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let mut made = vec![call(&server, &rtp)];
    wait_until("the first record", || lines(&cdr).len() == 1);
    // The path becomes a directory (the file moved away): no record can be written there.
    let moved = dir.join("cdr.jsonl.0");
    std::fs::rename(&cdr, &moved).expect("move the CDR away");
    std::fs::create_dir(&cdr).expect("a directory in its place");
    for _ in 0..3 {
        made.push(call(&server, &rtp));
    }
    wait_until("three records spooled", || spooled(http) == 3);
    // Full: a new call is refused and leaves no record; nothing already spooled is dropped.
    refused_call(&server, &rtp);
    server
        .wait_log("record spool full", WAIT)
        .unwrap_or_else(|| panic!("no spool-full log:\n{}", server.log_text()));
    assert_eq!(
        metric(
            http,
            "helpline_overload_refusals_total{reason=\"records-full\"}"
        ),
        1.0
    );
    assert_eq!(spooled(http), 3);
    // A clean shutdown, the path still unusable: the writer keeps retrying; once the path can take a
    // file again (within its shutdown grace), every spooled record is written before exit.
    server.signal("TERM");
    server
        .wait_log("shutting down", WAIT)
        .unwrap_or_else(|| panic!("no shutdown:\n{}", server.log_text()));
    std::fs::remove_dir(&cdr).expect("remove the directory");
    let status = server.wait_exit(WAIT).expect("the server exits");
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    assert_eq!(call_ids(&moved), made[..1]);
    assert_eq!(
        call_ids(&cdr),
        made[1..],
        "every accepted call's record, in order"
    );
    assert!(
        !server.log_text().contains("record not written"),
        "{}",
        server.log_text()
    );
}

#[test]
fn the_shipped_logrotate_snippet_renames_the_service_cdr_and_signals_usr1() {
    let root = common::root();
    let snippet = std::fs::read_to_string(root.join("deploy/logrotate/helpline"))
        .expect("deploy/logrotate/helpline");
    let unit =
        std::fs::read_to_string(root.join("deploy/helpline.service")).expect("the systemd unit");
    let config: toml::Table = std::fs::read_to_string(root.join("deploy/helpline.toml"))
        .expect("deploy/helpline.toml")
        .parse()
        .expect("deploy/helpline.toml is TOML");
    // The directives, comments left out.
    let directives: Vec<&str> = snippet
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    // The unit reads the example config, whose [records] cdr is the file to rotate.
    assert!(
        unit.contains("--server-config /etc/helpline/helpline.toml"),
        "the unit reads deploy/helpline.toml"
    );
    let cdr = config["records"]["cdr"]
        .as_str()
        .expect("deploy/helpline.toml sets [records] cdr");
    assert!(
        directives[0].split_whitespace().any(|p| p == cdr),
        "the snippet rotates the unit's CDR {cdr}: {}",
        directives[0]
    );
    assert!(
        !directives.contains(&"copytruncate"),
        "copytruncate loses records"
    );
    assert!(
        directives.contains(&"nocreate"),
        "helpline creates the new file"
    );
    let post = directives
        .iter()
        .skip_while(|d| **d != "postrotate")
        .nth(1)
        .expect("a postrotate script");
    assert!(
        post.contains("-s USR1") && post.contains("helpline.service"),
        "postrotate sends SIGUSR1 (SIGHUP reloads the menus): {post}"
    );
}
