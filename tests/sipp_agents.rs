//! SIPp agents against the real `helpline` binary: a SIPp phone registers as the sample agent `ana`
//! (`examples/sipp/register_agent.xml`) with digest auth and gets `200`; with a wrong password it gets
//! `403` and the server never logs the agent in. The menus are the shipped `ivr-menus/` plus
//! `examples/agents/agents.toml`. Outcomes are read from SIPp's exit status and the server's log.
mod common;

use std::time::Duration;

use common::{menus_with_sample_agents, run_sipp, temp_dir, Server, SippRun};

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
