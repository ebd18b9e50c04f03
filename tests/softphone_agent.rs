//! A Debian softphone as an agent, against the real `helpline` binary: baresip 1.0 (no sound card: a
//! 440 Hz sine as microphone, `aubridge` as speaker) registers as the sample agent `ana` over UDP or
//! TCP with `answermode=auto`, a SIPp caller on the UK number (`examples/sipp/caller_uk_refunds.xml`)
//! presses 2 and types an order number, baresip answers our INVITE, its audio is relayed to the caller,
//! and the caller hangs up; the CDR says ana answered in `europe.refunds`.
//!
//! baresip 1.0 (libre 1.1) refuses a `401` that offers any algorithm besides MD5, so these menus set
//! `[routing] auth_algorithms = ["MD5"]`, as ivr-menus/README.md tells sites with such phones to.
//! The tests fail (never skip) when baresip or SIPp is missing: `scripts/test` installs both.
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    free_udp_port, menus_with_sample_agents, run_sipp, sipp_call_id_args, temp_dir, Server,
};
use serde_json::json;

const BARESIP: &str = "/usr/bin/baresip";
const LOG_TIMEOUT: Duration = Duration::from_secs(20);
const SIPP_TIMEOUT: Duration = Duration::from_secs(60);
/// The UK line is open at this time (a Friday evening, Paris time).
const UK_OPEN: &str = "2026-11-27T19:00:00+01:00";
const UK_NUMBER: &str = "08000289999";

/// The shipped menus and sample agents, with the MD5-only challenge baresip 1.0 needs.
fn menus_for_baresip() -> PathBuf {
    let dir = menus_with_sample_agents(str::to_owned);
    let routing = dir.join("00-routing.toml");
    let text = std::fs::read_to_string(&routing).expect("00-routing.toml");
    assert!(text.contains("[routing]\n"), "{text}");
    let text = text.replacen("[routing]\n", "[routing]\nauth_algorithms = [\"MD5\"]\n", 1);
    std::fs::write(&routing, text).expect("write 00-routing.toml");
    dir
}

/// baresip registered as ana, ended (by its PID) when dropped.
struct Baresip {
    child: Child,
    dir: PathBuf,
}

impl Baresip {
    /// Writes a config directory (modules that need no sound card, SIP on a free loopback port) with
    /// ana's account over `transport` and starts baresip on it.
    fn start(server: &Server, transport: &str) -> Baresip {
        assert!(
            Path::new(BARESIP).exists(),
            "baresip is required (apt-get install baresip-core); scripts/test installs it"
        );
        let dir = temp_dir("baresip");
        let port = free_udp_port();
        let config = format!(
            "poll_method epoll\n\
             net_interface 127.0.0.1\n\
             sip_listen 127.0.0.1:{port}\n\
             audio_source ausine,440\n\
             ausrc_srate 48000\n\
             ausrc_channels 2\n\
             audio_player aubridge,speaker\n\
             audio_alert aubridge,speaker\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module ausine.so\n\
             module aubridge.so\n\
             module_app account.so\n\
             module_app menu.so\n"
        );
        std::fs::write(dir.join("config"), config).expect("write baresip config");
        let account = format!(
            "<sip:ana@{};transport={transport}>;auth_pass=europe-refunds-1;answermode=auto;regint=600\n",
            server.addr
        );
        std::fs::write(dir.join("accounts"), account).expect("write baresip accounts");
        let child = Command::new(BARESIP)
            .arg("-f")
            .arg(&dir)
            // Its own bound, should the test's kill never come.
            .args(["-t", "120"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn baresip");
        Baresip { child, dir }
    }

    /// Ends baresip and returns what it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut out);
        }
        format!("baresip in {}:\n{out}", self.dir.display())
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped caller scenario with its time on the line shortened from 10 s to 4 s (baresip answers
/// at once), after which the caller hangs up.
fn caller_scenario(name: &str) -> String {
    const FILE: &str = "examples/sipp/caller_uk_refunds.xml";
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

fn baresip_answers_a_sipp_caller(name: &str, transport: &str) {
    let server = Server::start(&menus_for_baresip(), &["--pretend-time", UK_OPEN]);
    let phone = Baresip::start(&server, transport);
    let Some(login) = server.wait_log("agent logged in", LOG_TIMEOUT) else {
        panic!(
            "baresip did not register\n{}\n--- server ---\n{}",
            phone.stop(),
            server.log_text()
        );
    };
    assert!(login.contains("agent=ana"), "{login}");
    let cid = sipp_call_id_args(name);
    let caller = run_sipp(
        server.addr,
        &caller_scenario(name),
        &["-s", UK_NUMBER, "-m", "1", &cid[0], &cid[1]],
        SIPP_TIMEOUT,
    );
    let cdr = server
        .wait_cdrs(1, LOG_TIMEOUT)
        .into_iter()
        .find(|c| c["call_id"].as_str().is_some_and(|id| id.starts_with(name)));
    let bridge = server.wait_log("bridge ended", Duration::from_secs(5));
    let phone_out = phone.stop();
    let ctx = format!(
        "{name}: CDR {cdr:#?}\n--- sipp ---\n{}\n--- {phone_out}\n--- server ---\n{}",
        caller.output,
        server.log_text()
    );
    assert!(caller.status.success(), "caller failed: {ctx}");
    // baresip prints each registration's transport: the account's, not a fallback.
    let registered = format!("{{0/{}/v4}} 200 OK", transport.to_uppercase());
    assert!(phone_out.contains(&registered), "no `{registered}`: {ctx}");
    let cdr = cdr.unwrap_or_else(|| panic!("no CDR: {ctx}"));
    assert_eq!(cdr["final_status"], 200, "{ctx}");
    assert_eq!(cdr["route"], "europe.refunds", "{ctx}");
    assert_eq!(cdr["variables"], json!({"order_id": "12345678"}), "{ctx}");
    assert_eq!(cdr["queue"], "europe.refunds", "{ctx}");
    assert_eq!(cdr["agent"], "ana", "{ctx}");
    assert_eq!(cdr["queue_result"], "answered", "{ctx}");
    assert!(cdr["talk_ms"].as_u64().is_some_and(|t| t > 0), "{ctx}");
    assert_eq!(cdr["end_reason"], "caller-bye", "{ctx}");
    // baresip's sine reached the caller's leg through the bridge (b: the agent side, 20 ms packets).
    let bridge = bridge.unwrap_or_else(|| panic!("no bridge summary: {ctx}"));
    let to_caller: u64 = bridge
        .split("b_to_a=RelayStats { relayed: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no b_to_a count in {bridge}"));
    assert!(
        to_caller >= 50,
        "{to_caller} packets relayed: {bridge}\n{ctx}"
    );
}

#[test]
fn baresip_registers_as_an_agent_over_udp_and_answers_a_sipp_caller() {
    baresip_answers_a_sipp_caller("baresip-udp", "udp");
}

#[test]
fn baresip_registers_as_an_agent_over_tcp_and_answers_a_sipp_caller() {
    baresip_answers_a_sipp_caller("baresip-tcp", "tcp");
}
