//! Command-line tests of the real `helpline` binary: `check`, `simulate`, `passwd` and `serve`'s start-up
//! (refusing broken menus, the `listening on` line, `--queue-log`). Calls over SIP are in
//! `sip_loopback.rs`, not here.

mod common;

use common::{menus_with_sample_agents, root, run_sipp, temp_dir, Server};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary to completion with a bounded wait; returns exit code and stdout + stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    run_with_stdin(args, None)
}

/// Like [`run`], writing `input` to the binary's stdin (then closing it) when given.
fn run_with_stdin(args: &[&str], input: Option<&str>) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(args)
        .current_dir(root())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helpline");
    if let Some(text) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A command that refuses its arguments exits without reading: a broken pipe is not a failure.
        if let Err(err) = stdin.write_all(text.as_bytes()) {
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write stdin: {err}"
            );
        }
        // Dropping `stdin` closes it.
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("helpline {args:?} did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn prompts() -> String {
    root().join("prompts").display().to_string()
}

/// A copy of `ivr-menus/` with two planted errors: an unknown time zone in `europe.toml` line 5 and an
/// impossible opening time in `oceania.toml`.
fn broken_menus() -> PathBuf {
    let dir = temp_dir("broken-menus");
    common::copy_shipped_menus(&dir);
    replace_once(
        &dir.join("europe.toml"),
        "time_zone = \"Europe/Paris\"",
        "time_zone = \"Europe/Atlantis\"",
    );
    replace_once(
        &dir.join("oceania.toml"),
        "open = \"09:00\"",
        "open = \"09:77\"",
    );
    dir
}

fn replace_once(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert_eq!(text.matches(from).count(), 1, "{from} once in {path:?}");
    std::fs::write(path, text.replace(from, to)).expect("write");
}

/// The line (1-based) of `needle` in a file, to check the reported position.
fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle} not in {path:?}"))
}

/// Asserts the report names both planted errors as `file:line:col: error`.
fn assert_reports_both(dir: &Path, out: &str) {
    let europe = dir.join("europe.toml");
    let oceania = dir.join("oceania.toml");
    let tz_line = line_of(&europe, "Europe/Atlantis");
    let hours_line = line_of(&oceania, "09:77");
    let tz_prefix = format!("{}:{tz_line}:", europe.display());
    let hours_prefix = format!("{}:{hours_line}:", oceania.display());
    for (prefix, what) in [(&tz_prefix, "Atlantis"), (&hours_prefix, "09:77")] {
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix.as_str()) && l.contains(what))
            .unwrap_or_else(|| panic!("no `{prefix}col:` line about {what} in:\n{out}"));
        // file:line:col: — the column is a number followed by a colon.
        let rest = &line[prefix.len()..];
        let (col, after) = rest.split_once(':').expect("col");
        assert!(col.parse::<u32>().is_ok_and(|c| c >= 1), "column in {line}");
        assert!(after.trim_start().starts_with("error"), "{line}");
    }
}

#[test]
fn check_accepts_the_shipped_menus() {
    let menus = root().join("ivr-menus").display().to_string();
    let (code, stdout, stderr) = run(&["check", &menus, "--prompts", &prompts()]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains(": error"), "{stderr}");
}

#[test]
fn check_reports_two_planted_errors_with_positions() {
    let dir = broken_menus();
    let (code, stdout, stderr) =
        run(&["check", &dir.display().to_string(), "--prompts", &prompts()]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_reports_both(&dir, &format!("{stdout}\n{stderr}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_to_start_on_broken_menus() {
    let dir = broken_menus();
    let cdr = dir.join("cdr.jsonl");
    let (code, stdout, stderr) = run(&[
        "serve",
        "--config",
        &dir.display().to_string(),
        "--prompts",
        &prompts(),
        "--listen",
        "127.0.0.1:0",
        "--cdr",
        &cdr.display().to_string(),
        "--no-watch",
    ]);
    let out = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("listening on"), "{out}");
    assert_reports_both(&dir, &out);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn simulate_json_routes_a_refund_with_its_order_number() {
    let (code, stdout, stderr) = run(&[
        "simulate",
        "--dialed",
        "0800 028 9999",
        "--at",
        "2026-11-27T19:00:00+01:00",
        "--keys",
        "2,123456#",
        "--json",
        "--prompts",
        &prompts(),
    ]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("simulate --json printed no JSON ({e}):\n{stdout}"));
    assert_eq!(json["route"], "europe.refunds", "{json:#}");
    assert_eq!(json["summary"]["route"], "europe.refunds", "{json:#}");
    assert_eq!(
        json["summary"]["variables"]["order_id"], "123456",
        "{json:#}"
    );
    assert_eq!(json["ended_nowhere"], false, "{json:#}");
}

#[test]
fn simulate_a_closed_hours_call_ends_nowhere_and_fails() {
    // 03:00 in Paris on a Friday: the European line is closed, the caller hears `closed` and is hung up.
    let (code, stdout, stderr) = run(&[
        "simulate",
        "--dialed",
        "0800 028 9999",
        "--at",
        "2026-11-27T03:00:00+01:00",
        "--prompts",
        &prompts(),
    ]);
    assert_ne!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(code.is_some(), "killed by a signal:\n{stderr}");
    assert!(stdout.contains("ended nowhere"), "stdout:\n{stdout}");
    assert!(stdout.contains("play en/closed"), "stdout:\n{stdout}");
}

#[test]
fn serve_on_port_zero_logs_one_port_for_udp_and_tcp() {
    let server = Server::start(&root().join("tests/data/menus/first-flow"), &["--no-watch"]);
    let line = server
        .wait_log("listening on udp:", Duration::from_secs(5))
        .expect("listening line");
    let rest = line
        .split("listening on ")
        .nth(1)
        .expect("text after listening on");
    let mut words = rest.split_whitespace();
    let udp = words
        .next()
        .and_then(|w| w.strip_prefix("udp:"))
        .expect("udp:");
    let tcp = words
        .next()
        .and_then(|w| w.strip_prefix("tcp:"))
        .expect("tcp:");
    let udp: std::net::SocketAddr = udp.parse().expect("udp address");
    let tcp: std::net::SocketAddr = tcp.parse().expect("tcp address");
    assert_eq!(udp.ip().to_string(), "127.0.0.1", "{line}");
    assert_eq!(tcp.ip().to_string(), "127.0.0.1", "{line}");
    assert_ne!(udp.port(), 0, "{line}");
    assert_eq!(udp.port(), tcp.port(), "{line}");
    // And both really listen: a TCP connect succeeds on that port.
    std::net::TcpStream::connect_timeout(&tcp, Duration::from_secs(5)).expect("tcp connect");
}

// Expected hashes computed outside helpline, as htdigest does:
// `printf 'alice:helpline:correct horse' | md5sum` (and `sha256sum`), same for realm `example.test`.
const HELPLINE_MD5: &str = "b5e76893f4140dd5a5838cad7b58cf3b";
const HELPLINE_SHA256: &str = "a2d853ea78ff06e3647367d773fd19b8903f7b27c9193e486b12881cb3c75e49";
const EXAMPLE_MD5: &str = "fccdf07ee11ba6d92b720cc00f94f8da";
const EXAMPLE_SHA256: &str = "021907bef3dc4c71e831ae264b1543bc2c5e1f6aafbe7b95eb57d53b2e3ae644";

fn hash_lines(md5: &str, sha256: &str) -> String {
    format!("ha1 = \"{md5}\"\nha1_sha256 = \"{sha256}\"\n")
}

#[test]
fn passwd_prints_the_hash_lines_for_the_shipped_realm() {
    // The shipped ivr-menus/ has no `realm`: the default `helpline`.
    for input in ["correct horse\n", "correct horse\r\n", "correct horse"] {
        let (code, stdout, stderr) = run_with_stdin(&["passwd", "alice"], Some(input));
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stdout,
            hash_lines(HELPLINE_MD5, HELPLINE_SHA256),
            "{input:?}"
        );
    }
}

#[test]
fn passwd_takes_the_realm_from_the_config_or_the_command_line() {
    let (code, stdout, stderr) = run_with_stdin(
        &["passwd", "alice", "--realm", "example.test"],
        Some("correct horse\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, hash_lines(EXAMPLE_MD5, EXAMPLE_SHA256));
    let dir = temp_dir("passwd-realm");
    std::fs::write(dir.join("a.toml"), "[menus.x]\ngreeting = [\"x\"]\n").expect("write");
    std::fs::write(
        dir.join("b.toml"),
        "[routing]\nrealm = \"example.test\"\ndepartments = []\n",
    )
    .expect("write");
    let config = dir.display().to_string();
    let (code, stdout, stderr) = run_with_stdin(
        &["passwd", "alice", "--config", &config],
        Some("correct horse\n"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, hash_lines(EXAMPLE_MD5, EXAMPLE_SHA256));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn passwd_refuses_bad_ids_empty_passwords_and_unreadable_configs() {
    let cases: [(&[&str], &str, &str); 3] = [
        (&["passwd", "al ice"], "pw\n", "invalid agent ID `al ice`"),
        (&["passwd", "alice"], "\n", "empty password"),
        (
            &["passwd", "alice", "--config", "/nonexistent/helpline-menus"],
            "pw\n",
            "cannot read the realm",
        ),
    ];
    for (args, input, message) in cases {
        let (code, stdout, stderr) = run_with_stdin(args, Some(input));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn serve_appends_the_queue_log_as_whole_json_lines() {
    let dir = temp_dir("queue-log");
    let path = dir.join("queue.jsonl");
    // An operator's earlier line stays: the log is appended to, never truncated.
    std::fs::write(&path, "{\"earlier\":true}\n").expect("write");
    let log = path.to_string_lossy().into_owned();
    let mut server = Server::start(
        &menus_with_sample_agents(str::to_owned),
        &["--queue-log", &log],
    );
    // ana's phone registers (SIPp, digest): presence logs her in, available.
    let run = run_sipp(
        server.addr,
        "examples/sipp/register_agent.xml",
        &["-t", "u1", "-m", "1"],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "sipp: {}", run.output);
    assert!(
        server
            .wait_log("agent logged in", Duration::from_secs(20))
            .is_some(),
        "{}",
        server.log_text()
    );
    // A clean shutdown writes every line sent to the writer before exiting.
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    let text = std::fs::read_to_string(&path).expect("queue log");
    assert!(text.ends_with('\n'), "every line is whole: {text:?}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(lines[0], serde_json::json!({"earlier": true}));
    let status = lines
        .iter()
        .find(|l| l["event"] == "agent-status")
        .unwrap_or_else(|| panic!("no agent-status line in {text}"));
    assert_eq!(status["agent"], "ana");
    assert_eq!(status["status"], "available");
    assert!(status["queue"].is_null() && status["call_id"].is_null());
    let time = status["time"].as_str().expect("time");
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "RFC 3339 time: {time}"
    );
}
