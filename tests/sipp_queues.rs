//! Queues against the real `helpline` binary over loopback, with SIPp on both sides: SIPp agents
//! (`examples/sipp/agent.xml` + `agent_call.xml`, one process per agent, `-s ID -ap PASSWORD`) register
//! with digest auth, SIPp callers on the UK number (`examples/sipp/caller_uk_refunds.xml`) press 2 and
//! an order number and are routed to `europe.refunds`. Three cases, as the queue issue asks:
//! - round-robin: ten callers and three agents, every caller answered, the agents' shares differing by
//!   at most one and the offers going round the agents in turn (CDR, queue log, the agents' own logs);
//! - ring-all: three agents ring for one caller, the first to answer takes it and the two others get
//!   CANCEL, which they answer 487 (seen from SIPp's side, and in the CDR and queue log);
//! - a full queue (`max_length`): the caller who finds it full overflows to the English team
//!   (`english-line.refunds`) and is answered there (the CDR's `queue`, `queue_result`, `queues_tried`;
//!   the queue log's `overflow`).
//!
//! The agents and queue settings are written into a temporary copy of the shipped menus. It does not
//! test the queue's decisions in detail (tests/queue_properties.rs and the sans-IO tests do).
mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_media_port, free_udp_port, menus_with_sample_agents, run_sipp, sipp, sipp_call_id_args,
    temp_dir, Server, SippRun, Ua,
};
use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SIPP_TIMEOUT: Duration = Duration::from_secs(90);
const LOG_TIMEOUT: Duration = Duration::from_secs(20);
/// The UK line is open at this time (a Friday evening, Paris time).
const UK_OPEN: &str = "2026-11-27T19:00:00+01:00";
const UK_NUMBER: &str = "08000289999";
const CALLER: &str = "examples/sipp/caller_uk_refunds.xml";
const REALM: &str = "helpline";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The test's agents, each with a password, serving `queues`.
fn agents_toml(agents: &[(&str, &[&str])]) -> String {
    let mut text = String::new();
    for (id, queues) in agents {
        let a1 = format!("{id}:{REALM}:{}", password(id));
        let queues: Vec<String> = queues.iter().map(|q| format!("\"{q}\"")).collect();
        text.push_str(&format!(
            "[agents.\"{id}\"]\nname = \"Test agent {id}\"\nha1 = \"{}\"\nha1_sha256 = \"{}\"\n\
             queues = [{}]\nlanguages = [\"en\"]\n\n",
            hex(&Md5::digest(a1.as_bytes())),
            hex(&Sha256::digest(a1.as_bytes())),
            queues.join(", ")
        ));
    }
    text
}

fn password(id: &str) -> String {
    format!("{id}-secret")
}

/// The shipped menus without their `[queues.*]` tables (`[queue_defaults]` stays), plus one file with
/// `agents` and the test's `queues` tables (TOML text).
fn menus(agents: &[(&str, &[&str])], queues: &str) -> PathBuf {
    let text = format!("{}\n{queues}", agents_toml(agents));
    let dir = menus_with_sample_agents(|_| text);
    for entry in std::fs::read_dir(&dir).expect("the menus copy") {
        let path = entry.expect("a menus entry").path();
        let shipped = std::fs::read_to_string(&path).expect("a menu file");
        if path.file_name().is_some_and(|n| n != "agents.toml") && shipped.contains("[queues.") {
            std::fs::write(&path, without_queue_tables(&shipped)).expect("rewrite a menu file");
        }
    }
    dir
}

/// `toml` without its `[queues."…"]` tables (each up to the next other table header).
fn without_queue_tables(toml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            skipping = line.starts_with("[queues.");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A server on those menus at a time the UK line is open, with a queue log.
fn start(menus: &Path) -> (Server, PathBuf) {
    let log = temp_dir("queue-log").join("queue.jsonl");
    let path = log.display().to_string();
    let server = Server::start(menus, &["--pretend-time", UK_OPEN, "--queue-log", &path]);
    (server, log)
}

/// How a SIPp agent behaves (the `-set` variables of `agent_call.xml`).
#[derive(Clone, Copy)]
struct Behaviour {
    /// Ringing before the answer; `None`: the phone never answers (waits for CANCEL).
    ring_ms: Option<u64>,
    /// Talk before the agent hangs up.
    talk_ms: u64,
    /// Calls after which it unregisters; 0: until [`SippAgent::log_out`].
    calls: u32,
}

/// One SIPp process registered as one agent, over UDP, until its calls are done.
struct SippAgent {
    id: String,
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl SippAgent {
    fn start(server: &Server, id: &str, how: Behaviour) -> SippAgent {
        let dir = temp_dir(&format!("sipp-agent-{id}"));
        let root = common::root();
        let port = free_udp_port();
        let mut cmd = Command::new(sipp());
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(root.join("examples/sipp/agent.xml"))
            .arg("-oocsf")
            .arg(root.join("examples/sipp/agent_call.xml"))
            .arg(server.addr.to_string())
            .args(["-i", "127.0.0.1", "-t", "u1", "-m", "1"])
            .args(["-s", id, "-ap", &password(id)])
            .args(["-p", &port.to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args(["-nostdin", "-trace_err", "-trace_logs"])
            // SIPp's own bound: the agent fails rather than waiting forever.
            .args(["-timeout", "80s", "-timeout_error"])
            .args(["-set", "calls", &how.calls.to_string()])
            .args(["-set", "talk_ms", &how.talk_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match how.ring_ms {
            Some(ms) => cmd.args(["-set", "ring_ms", &ms.to_string()]),
            None => cmd.args(["-set", "answer", "no"]),
        };
        let child = cmd.spawn().expect("spawn sipp");
        SippAgent {
            id: id.to_owned(),
            port,
            child: Some(child),
            dir,
        }
    }

    /// Asks the agent to unregister: an OPTIONS to its phone, which answers 200.
    fn log_out(&self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut ua = Ua::udp(addr);
        let (local, id) = (ua.local, &self.id);
        let branch = ua.branch();
        ua.send(
            &format!(
                "OPTIONS sip:{id}@{addr} SIP/2.0
                Via: SIP/2.0/UDP {local};branch={branch}
                Max-Forwards: 70
                From: <sip:test@{local}>;tag=stop-{id}
                To: <sip:{id}@{addr}>
                Call-ID: {branch}@127.0.0.1
                CSeq: 1 OPTIONS"
            ),
            "",
        );
        ua.expect_response(200, LOG_TIMEOUT);
    }

    /// Waits (bounded) for SIPp to exit; returns its status and everything it printed and logged.
    fn finish(&mut self, timeout: Duration) -> SippRun {
        let mut child = self.child.take().expect("finish is called once");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the SIPp agent {} did not finish within {timeout:?}:\n{}",
                    self.id,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut output = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut output);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut output);
        }
        output.push_str(&self.logs());
        SippRun { status, output }
    }

    /// SIPp's error and `<log>` files (`-trace_err`, `-trace_logs`).
    fn logs(&self) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for SippAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn assert_sipp_ok(run: &SippRun, what: &str, server: &Server) {
    assert!(
        run.status.success(),
        "{what}: sipp exited {:?}\n--- sipp ---\n{}\n--- server ---\n{}",
        run.status.code(),
        run.output,
        server.log_text()
    );
}

/// Starts the agents and waits until the server has logged each of them in.
fn start_agents(server: &Server, agents: &[(&str, Behaviour)]) -> Vec<SippAgent> {
    let started: Vec<SippAgent> = agents
        .iter()
        .map(|(id, how)| SippAgent::start(server, id, *how))
        .collect();
    server.wait_log_count("agent logged in", started.len(), LOG_TIMEOUT);
    let log = server.log_text();
    for agent in &started {
        let needle = format!("agent={}", agent.id);
        assert!(
            log.lines()
                .map(common::strip_ansi)
                .any(|l| l.contains("agent logged in") && l.contains(&needle)),
            "{} never logged in\n--- agent ---\n{}\n--- server ---\n{log}",
            agent.id,
            agent.logs(),
        );
    }
    started
}

/// Runs `n` SIPp callers on the UK number, one every `every_ms`, their Call-IDs starting `prefix-N-`
/// (N = 1, 2, … in the order they call); all must succeed (each reached an agent and hung up).
fn call(server: &Server, prefix: &str, n: u32, every_ms: u64) -> SippRun {
    let cid = sipp_call_id_args(prefix);
    let (n, rp) = (n.to_string(), (2 * every_ms).to_string());
    let run = run_sipp(
        server.addr,
        CALLER,
        &[
            "-s", UK_NUMBER, "-m", &n, "-l", &n, "-r", "2", "-rp", &rp, &cid[0], &cid[1],
        ],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "callers", server);
    run
}

/// The CDRs of the calls whose Call-ID starts with `prefix-`, keyed by their call number.
fn cdrs(server: &Server, prefix: &str, n: usize) -> BTreeMap<u32, Value> {
    let all = server.wait_cdrs(n, LOG_TIMEOUT);
    let mine: BTreeMap<u32, Value> = all
        .into_iter()
        .filter_map(|c| {
            let id = c["call_id"]
                .as_str()?
                .strip_prefix(prefix)?
                .strip_prefix('-')?;
            let number = id.split('-').next()?.parse().ok()?;
            Some((number, c))
        })
        .collect();
    assert_eq!(mine.len(), n, "{mine:#?}\n{}", server.log_text());
    mine
}

/// The queue log's lines so far, once `pred` holds for them (bounded: the writer is asynchronous).
fn queue_log(path: &Path, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if pred(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the queue log never got there:\n{}",
            lines
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events<'a>(log: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    log.iter().filter(move |l| l["event"] == event)
}

/// `queues_tried` as (queue, result) pairs.
fn queues_tried(cdr: &Value) -> Vec<(String, String)> {
    cdr["queues_tried"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues_tried in {cdr:#}"))
        .iter()
        .map(|t| {
            (
                t["queue"].as_str().unwrap_or_default().to_owned(),
                t["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(queue: &str, result: &str) -> (String, String) {
    (queue.to_owned(), result.to_owned())
}

/// How many `agent INVITE queue=QUEUE` lines an agent's SIPp logged.
fn invites(run: &SippRun, queue: &str) -> usize {
    run.output
        .matches(&format!("agent INVITE queue={queue} "))
        .count()
}

const THREE: [&str; 3] = ["q1", "q2", "q3"];

/// Ten callers, one every 1.5 s, three agents who talk 1 s each and have no wrap-up: under round-robin
/// the agent whose turn it is has always been idle for seconds, so the offers go q1, q2, q3, q1 … (from
/// wherever it starts) and the shares are 4, 3, 3.
#[test]
fn round_robin_shares_ten_callers_between_three_sipp_agents() {
    let queues = r#"
[queues."europe.refunds"]
strategy = "round-robin"
ring_timeout = "10s"
wrap_up = "0s"
"#;
    let agents: Vec<(&str, &[&str])> = THREE
        .iter()
        .map(|a| (*a, &["europe.refunds"][..]))
        .collect();
    let (server, log_path) = start(&menus(&agents, queues));
    let how = Behaviour {
        ring_ms: Some(0),
        talk_ms: 1000,
        calls: 0,
    };
    let mut phones = start_agents(&server, &THREE.map(|a| (a, how)));
    call(&server, "rr", 10, 1500);

    let cdrs = cdrs(&server, "rr", 10);
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for (n, cdr) in &cdrs {
        let ctx = format!("caller {n}: {cdr:#}");
        assert_eq!(cdr["final_status"], 200, "{ctx}");
        assert_eq!(cdr["queue"], "europe.refunds", "{ctx}");
        assert_eq!(cdr["queue_result"], "answered", "{ctx}");
        assert_eq!(
            queues_tried(cdr),
            [pair("europe.refunds", "answered")],
            "{ctx}"
        );
        assert_eq!(cdr["end_reason"], "agent-bye", "{ctx}");
        let agent = cdr["agent"].as_str().unwrap_or_default().to_owned();
        assert!(THREE.contains(&agent.as_str()), "{ctx}");
        *shares.entry(agent).or_default() += 1;
    }
    let (min, max) = (
        shares.values().min().copied().unwrap_or(0),
        shares.values().max().copied().unwrap_or(0),
    );
    assert!(
        shares.len() == 3 && max - min <= 1,
        "shares {shares:?}\n{cdrs:#?}"
    );

    // The queue log: ten answers, by the agents the CDRs name, after offers that went round in turn.
    let log = queue_log(&log_path, |l| events(l, "answer").count() >= 10);
    for answer in events(&log, "answer") {
        let call_id = answer["call_id"].as_str().unwrap_or_default();
        let cdr = cdrs
            .values()
            .find(|c| c["call_id"] == call_id)
            .unwrap_or_else(|| panic!("answer for an unknown call: {answer}"));
        assert_eq!(answer["agent"], cdr["agent"], "{answer} vs {cdr:#}");
        assert_eq!(answer["queue"], "europe.refunds", "{answer}");
    }
    assert_eq!(events(&log, "join").count(), 10, "{log:#?}");
    let offered: Vec<&str> = events(&log, "offer")
        .map(|o| o["agent"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(offered.len(), 10, "one offer per caller: {offered:?}");
    for turn in offered.windows(2) {
        let next = THREE[(THREE.iter().position(|a| *a == turn[0]).unwrap_or(0) + 1) % 3];
        assert_eq!(turn[1], next, "round-robin order broken: {offered:?}");
    }

    // Each agent's phone saw exactly its share of INVITEs, and logs out cleanly when asked.
    for phone in &mut phones {
        phone.log_out();
        let run = phone.finish(SIPP_TIMEOUT);
        assert_sipp_ok(&run, &format!("agent {}", phone.id), &server);
        assert_eq!(
            invites(&run, "europe.refunds"),
            shares[&phone.id],
            "{}: {}",
            phone.id,
            run.output
        );
    }
}

/// Ring-all: q1 answers after 1 s of ringing, q2 and q3 never answer; all three ring at once, q1 takes
/// the caller and the others get CANCEL (their SIPp answers 200 and 487 and sees the ACK) and are idle
/// again at once.
#[test]
fn ring_all_rings_three_sipp_agents_and_cancels_the_two_that_did_not_answer() {
    let queues = r#"
[queues."europe.refunds"]
strategy = "ring-all"
ring_timeout = "20s"
wrap_up = "0s"
"#;
    let agents: Vec<(&str, &[&str])> = THREE
        .iter()
        .map(|a| (*a, &["europe.refunds"][..]))
        .collect();
    let (server, log_path) = start(&menus(&agents, queues));
    let answers = Behaviour {
        ring_ms: Some(1000),
        talk_ms: 1000,
        calls: 1,
    };
    let rings = Behaviour {
        ring_ms: None,
        ..answers
    };
    let mut phones = start_agents(&server, &[("q1", answers), ("q2", rings), ("q3", rings)]);
    call(&server, "ringall", 1, 1000);

    let cdrs = cdrs(&server, "ringall", 1);
    let cdr = &cdrs[&1];
    assert_eq!(cdr["final_status"], 200, "{cdr:#}");
    assert_eq!(cdr["queue"], "europe.refunds", "{cdr:#}");
    assert_eq!(cdr["queue_result"], "answered", "{cdr:#}");
    assert_eq!(cdr["agent"], "q1", "{cdr:#}");
    assert_eq!(
        queues_tried(cdr),
        [pair("europe.refunds", "answered")],
        "{cdr:#}"
    );

    // SIPp's side: every phone rang once; q2 and q3 were cancelled (200, 487, ACK), q1 was not.
    for phone in &mut phones {
        let run = phone.finish(SIPP_TIMEOUT);
        assert_sipp_ok(&run, &format!("agent {}", phone.id), &server);
        assert_eq!(invites(&run, "europe.refunds"), 1, "{}", run.output);
        let cancelled = run
            .output
            .matches("agent CANCEL queue=europe.refunds")
            .count();
        let expected = usize::from(phone.id != "q1");
        assert_eq!(cancelled, expected, "{}: {}", phone.id, run.output);
    }

    // The queue log: the three were offered the caller, one answered, the two others went back to idle
    // after the answer (never left offered).
    let log = queue_log(&log_path, |l| {
        events(l, "answer").count() >= 1
            && ["q2", "q3"].iter().all(|a| {
                l.iter().skip_while(|e| e["event"] != "answer").any(|e| {
                    e["event"] == "agent-state" && e["agent"] == *a && e["state"] == "idle"
                })
            })
    });
    let mut offered: Vec<&str> = events(&log, "offer")
        .filter(|o| o["call_id"] == cdr["call_id"])
        .map(|o| o["agent"].as_str().unwrap_or_default())
        .collect();
    offered.sort_unstable();
    assert_eq!(offered, THREE, "{log:#?}");
    let answered: Vec<&Value> = events(&log, "answer").collect();
    assert_eq!(answered.len(), 1, "{log:#?}");
    assert_eq!(answered[0]["agent"], "q1", "{log:#?}");
    assert_eq!(answered[0]["call_id"], cdr["call_id"], "{log:#?}");
}

/// `europe.refunds` holds one waiting caller at most: caller 1 talks to eu1 (4 s), caller 2 waits for
/// eu1, caller 3 finds the line full and overflows to the English team, where en1 answers; caller 2 is
/// answered by eu1 once caller 1 is done.
#[test]
fn a_full_queue_overflows_to_the_english_team() {
    let queues = r#"
[queues."europe.refunds"]
max_length = 1
overflow = "english-line.refunds"
wrap_up = "0s"

[queues."english-line.refunds"]
wrap_up = "0s"
"#;
    let agents: [(&str, &[&str]); 2] = [
        ("eu1", &["europe.refunds"]),
        ("en1", &["english-line.refunds"]),
    ];
    let (server, log_path) = start(&menus(&agents, queues));
    let eu1 = Behaviour {
        ring_ms: Some(0),
        talk_ms: 4000,
        calls: 2,
    };
    let en1 = Behaviour {
        talk_ms: 1000,
        calls: 1,
        ..eu1
    };
    let mut phones = start_agents(&server, &[("eu1", eu1), ("en1", en1)]);
    call(&server, "overflow", 3, 1000);

    let cdrs = cdrs(&server, "overflow", 3);
    for n in [1, 2] {
        let cdr = &cdrs[&n];
        assert_eq!(cdr["final_status"], 200, "caller {n}: {cdr:#}");
        assert_eq!(cdr["queue"], "europe.refunds", "caller {n}: {cdr:#}");
        assert_eq!(cdr["queue_result"], "answered", "caller {n}: {cdr:#}");
        assert_eq!(cdr["agent"], "eu1", "caller {n}: {cdr:#}");
        assert_eq!(
            queues_tried(cdr),
            [pair("europe.refunds", "answered")],
            "caller {n}: {cdr:#}"
        );
    }
    // Caller 2 really waited in line while eu1 talked to caller 1.
    assert!(
        cdrs[&2]["queue_wait_ms"]
            .as_u64()
            .is_some_and(|w| w >= 1000),
        "{:#}",
        cdrs[&2]
    );
    let third = &cdrs[&3];
    assert_eq!(third["final_status"], 200, "{third:#}");
    assert_eq!(third["route"], "europe.refunds", "{third:#}");
    assert_eq!(third["queue"], "english-line.refunds", "{third:#}");
    assert_eq!(third["queue_result"], "answered", "{third:#}");
    assert_eq!(third["agent"], "en1", "{third:#}");
    assert_eq!(
        queues_tried(third),
        [
            pair("europe.refunds", "overflow"),
            pair("english-line.refunds", "answered")
        ],
        "{third:#}"
    );

    let log = queue_log(&log_path, |l| events(l, "answer").count() >= 3);
    let overflows: Vec<&Value> = events(&log, "overflow").collect();
    assert_eq!(overflows.len(), 1, "{log:#?}");
    let overflow = overflows[0];
    assert_eq!(overflow["call_id"], third["call_id"], "{overflow}");
    assert_eq!(overflow["queue"], "europe.refunds", "{overflow}");
    assert_eq!(overflow["reason"], "max-length", "{overflow}");
    assert_eq!(overflow["target"], "english-line.refunds", "{overflow}");
    assert!(
        events(&log, "join")
            .any(|j| j["call_id"] == third["call_id"] && j["queue"] == "english-line.refunds"),
        "{log:#?}"
    );
    assert!(
        events(&log, "answer").any(|a| a["call_id"] == third["call_id"]
            && a["queue"] == "english-line.refunds"
            && a["agent"] == "en1"),
        "{log:#?}"
    );

    for phone in &mut phones {
        let run = phone.finish(SIPP_TIMEOUT);
        assert_sipp_ok(&run, &format!("agent {}", phone.id), &server);
        let (queue, n) = if phone.id == "eu1" {
            ("europe.refunds", 2)
        } else {
            ("english-line.refunds", 1)
        };
        assert_eq!(invites(&run, queue), n, "{}: {}", phone.id, run.output);
    }
}
