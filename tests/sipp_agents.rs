//! SIPp agents against the real `helpline` binary: a SIPp phone registers as the sample agent `ana`
//! (`examples/sipp/register_agent.xml`) with digest auth and gets `200`; with a wrong password it gets
//! `403` and the server never logs the agent in. Then whole calls: SIPp as ana
//! (`examples/sipp/agent.xml` with `agent_call.xml`, `-s ana -ap europe-refunds-1`) registers, a SIPp caller on the UK number
//! (`examples/sipp/caller_uk_refunds.xml`) presses 2 and types an order number, ana's phone gets our
//! INVITE with the caller's context, answers, plays audio, and one side hangs up; the CDR says the call
//! was answered by ana in `europe.refunds`. The menus are the shipped `ivr-menus/` plus
//! `examples/agents/agents.toml`. Outcomes are read from SIPp's exit status and logs, the server's log
//! and the CDR.
mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_media_port, free_udp_port, menus_with_sample_agents, run_sipp, sipp, sipp_call_id_args,
    temp_dir, Server, SippRun,
};
use serde_json::json;

const SIPP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TIMEOUT: Duration = Duration::from_secs(20);
const SCENARIO: &str = "examples/sipp/register_agent.xml";

fn assert_sipp_ok(run: &SippRun, what: &str, server: &Server) {
    assert!(
        run.status.success(),
        "{what}: sipp exited {:?}\n--- sipp ---\n{}\n--- server ---\n{}",
        run.status.code(),
        run.output,
        server.log_text()
    );
}

fn register(transport: &str) {
    let server = Server::start(&menus_with_sample_agents(str::to_owned), &[]);
    let run = run_sipp(
        server.addr,
        SCENARIO,
        &["-t", transport, "-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&run, "register", &server);
    let line = server.wait_log("agent logged in", LOG_TIMEOUT);
    assert!(
        line.as_deref().is_some_and(|l| l.contains("agent=ana")),
        "{line:?}\n{}",
        server.log_text()
    );
}

#[test]
fn sipp_agent_registers_with_digest_over_udp() {
    register("u1");
}

#[test]
fn sipp_agent_registers_with_digest_over_tcp() {
    register("t1");
}

#[test]
fn sipp_agent_with_a_wrong_password_gets_403_and_is_not_logged_in() {
    let server = Server::start(&menus_with_sample_agents(str::to_owned), &[]);
    let text = std::fs::read_to_string(common::root().join(SCENARIO)).expect("the scenario");
    assert!(text.contains("password=europe-refunds-1") && text.contains("response=\"200\""));
    let wrong = text
        .replace("password=europe-refunds-1", "password=europe-refunds-2")
        .replace("response=\"200\"", "response=\"403\"");
    let path = temp_dir("sipp-wrong").join("register_wrong.xml");
    std::fs::write(&path, wrong).expect("write the scenario");
    let run = run_sipp(
        server.addr,
        path.to_str().expect("UTF-8 temp path"),
        &["-t", "u1", "-m", "1"],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(
        &run,
        "register with a wrong password, expecting 403",
        &server,
    );
    // The refusal is logged before the 403 leaves, so once it is seen a login would have been too.
    let refused = server.wait_log("code=403", LOG_TIMEOUT);
    assert!(
        refused
            .as_deref()
            .is_some_and(|l| l.contains("register refused")),
        "{refused:?}\n{}",
        server.log_text()
    );
    assert!(
        !server.log_text().contains("agent logged in"),
        "{}",
        server.log_text()
    );
}

/// The UK line is open at this time (a Friday evening, Paris time).
const UK_OPEN: &str = "2026-11-27T19:00:00+01:00";
const UK_NUMBER: &str = "08000289999";

/// SIPp as the agent `ana`, running in the background until its one call is over and it unregistered.
struct SippAgent {
    child: Option<Child>,
    dir: PathBuf,
}

impl SippAgent {
    /// Starts `agent.xml` + `agent_call.xml` as ana for one call over `transport` (`u1`, `t1`); with
    /// `agent_hangs_up` ana sends BYE 2 s after answering, else she waits for ours.
    fn start(server: &Server, transport: &str, agent_hangs_up: bool) -> SippAgent {
        let dir = temp_dir("sipp-agent");
        let root = common::root();
        let mut cmd = Command::new(sipp());
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(root.join("examples/sipp/agent.xml"))
            .arg("-oocsf")
            .arg(root.join("examples/sipp/agent_call.xml"))
            .arg(server.addr.to_string())
            .args(["-i", "127.0.0.1", "-t", transport, "-m", "1"])
            .args(["-s", "ana", "-ap", "europe-refunds-1"])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args(["-nostdin", "-trace_err", "-trace_logs"])
            // SIPp's own bound: the agent fails rather than waiting forever for a call.
            .args(["-timeout", "60s", "-timeout_error"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // After -sf and -oocsf: the variables are declared by those scenarios.
        cmd.args(["-set", "calls", "1"]);
        if agent_hangs_up {
            cmd.args(["-set", "talk_ms", "2000"]);
        }
        let child = cmd.spawn().expect("spawn sipp");
        SippAgent {
            child: Some(child),
            dir,
        }
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
                    "the SIPp agent did not finish within {timeout:?}:\n{}",
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

/// Who ends the bridged call.
#[derive(Clone, Copy, PartialEq)]
enum HangUp {
    Caller,
    Agent,
}

/// The caller scenario: as shipped it hangs up after 10 s on the line; when the caller is to hang up
/// first the test shortens that to 4 s (ana answers within milliseconds of the `#`).
fn caller_scenario(name: &str, hang_up: HangUp) -> String {
    const FILE: &str = "examples/sipp/caller_uk_refunds.xml";
    if hang_up == HangUp::Agent {
        return FILE.to_owned();
    }
    let text = std::fs::read_to_string(common::root().join(FILE)).expect("the caller scenario");
    let wait = "<recv request=\"BYE\" timeout=\"10000\"";
    assert!(text.contains(wait), "{FILE} changed: update this test");
    let path = temp_dir(name).join("caller.xml");
    std::fs::write(
        &path,
        text.replace(wait, "<recv request=\"BYE\" timeout=\"4000\""),
    )
    .expect("write the scenario");
    path.display().to_string()
}

/// A SIPp caller on the UK number reaches the SIPp agent ana: both SIPps succeed, ana's INVITE carried
/// the caller's context, the bridge relayed ana's audio, and the CDR says ana answered.
fn caller_reaches_sipp_agent(name: &str, transport: &str, hang_up: HangUp) {
    let server = Server::start(
        &menus_with_sample_agents(str::to_owned),
        &["--pretend-time", UK_OPEN],
    );
    let mut agent = SippAgent::start(&server, transport, hang_up == HangUp::Agent);
    let login = server.wait_log("agent logged in", LOG_TIMEOUT);
    assert!(
        login.as_deref().is_some_and(|l| l.contains("agent=ana")),
        "{login:?}\n--- agent ---\n{}\n--- server ---\n{}",
        agent.logs(),
        server.log_text()
    );
    let cid = sipp_call_id_args(name);
    let caller = run_sipp(
        server.addr,
        &caller_scenario(name, hang_up),
        &["-s", UK_NUMBER, "-m", "1", &cid[0], &cid[1]],
        SIPP_TIMEOUT,
    );
    assert_sipp_ok(&caller, "caller", &server);
    let agent_run = agent.finish(SIPP_TIMEOUT);
    assert_sipp_ok(&agent_run, "agent (answer one call, unregister)", &server);
    // The agent scenario logs what it found in our INVITE (its checks fail the call if one is missing).
    assert!(
        agent_run.output.contains(
            "agent INVITE queue=europe.refunds region=europe language=en order=12345678 \
             pai=<sip:sipp@127.0.0.1>"
        ),
        "{}",
        agent_run.output
    );
    let cdr = server
        .wait_cdrs(1, LOG_TIMEOUT)
        .into_iter()
        .find(|c| c["call_id"].as_str().is_some_and(|id| id.starts_with(name)))
        .unwrap_or_else(|| panic!("no CDR for {name}:\n{}", server.log_text()));
    let ctx = format!("{name}: CDR {cdr:#}");
    assert_eq!(cdr["final_status"], 200, "{ctx}");
    assert_eq!(cdr["route"], "europe.refunds", "{ctx}");
    assert_eq!(cdr["variables"], json!({"order_id": "12345678"}), "{ctx}");
    assert_eq!(cdr["queue"], "europe.refunds", "{ctx}");
    assert_eq!(cdr["agent"], "ana", "{ctx}");
    assert_eq!(cdr["queue_result"], "answered", "{ctx}");
    assert!(cdr["queue_wait_ms"].is_u64(), "{ctx}");
    assert!(cdr["talk_ms"].as_u64().is_some_and(|t| t > 0), "{ctx}");
    let reason = match hang_up {
        HangUp::Caller => "caller-bye",
        HangUp::Agent => "agent-bye",
    };
    assert_eq!(cdr["end_reason"], reason, "{ctx}");
    // ana's 2 s or more of PCMA went through the bridge toward the caller (b: the agent side).
    let bridge = server
        .wait_log("bridge ended", LOG_TIMEOUT)
        .unwrap_or_else(|| panic!("no bridge summary:\n{}", server.log_text()));
    let to_caller: u64 = bridge
        .split("b_to_a=RelayStats { relayed: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no b_to_a count in {bridge}"));
    assert!(to_caller >= 50, "{to_caller} packets relayed: {bridge}");
    assert!(
        server.wait_log("agent logged out", LOG_TIMEOUT).is_some(),
        "{}",
        server.log_text()
    );
}

#[test]
fn sipp_caller_reaches_sipp_agent_over_udp_and_hangs_up() {
    caller_reaches_sipp_agent("agent-udp-caller-bye", "u1", HangUp::Caller);
}

#[test]
fn sipp_caller_reaches_sipp_agent_over_udp_and_the_agent_hangs_up() {
    caller_reaches_sipp_agent("agent-udp-agent-bye", "u1", HangUp::Agent);
}

#[test]
fn sipp_caller_reaches_sipp_agent_over_tcp_and_hangs_up() {
    caller_reaches_sipp_agent("agent-tcp-caller-bye", "t1", HangUp::Caller);
}

#[test]
fn sipp_caller_reaches_sipp_agent_over_tcp_and_the_agent_hangs_up() {
    caller_reaches_sipp_agent("agent-tcp-agent-bye", "t1", HangUp::Agent);
}
