//! Issue 13's HTTP side against the real binary (`serve --http 127.0.0.1:0`): `/metrics` parses as
//! Prometheus text (with the `prometheus-parse` crate) and its counters move with real SIPp calls;
//! `/health/ready` turns 503 while draining and when the CDR file is not writable; `/calls/{call-id}`
//! returns a finished call's CDR line and 404 otherwise; every metric the shipped dashboard and alert
//! rules query is one `/metrics` exports; README names every metric.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{run_sipp, sdp_offer, Server, Ua};
use helpline::telemetry::metrics::{MetricKind, ALL};
use prometheus_parse::{Scrape, Value};

const WAIT: Duration = Duration::from_secs(15);

fn first_flow() -> PathBuf {
    common::root().join("tests/data/menus/first-flow")
}

fn scrape(addr: SocketAddr) -> (String, Scrape) {
    let (status, body) = common::http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    let parsed = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics is Prometheus text");
    (body, parsed)
}

/// The sum of the counter or gauge samples of `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a counter or gauge"),
        })
        .sum()
}

/// The observation count of histogram `name` (its `+Inf` bucket).
fn observations(s: &Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match &x.value {
            Value::Histogram(b) => b
                .iter()
                .find(|c| c.less_than.is_infinite())
                .map_or(0.0, |c| c.count),
            _ => panic!("{name} is not a histogram"),
        })
        .sum()
}

fn sipp_dtmf_call(server: &Server, call_id_prefix: &str) {
    let cid = common::sipp_call_id_args(call_id_prefix);
    let args = ["-m", "1", "-s", "08000000001", &cid[0], &cid[1]];
    let run = run_sipp(
        server.addr,
        "examples/sipp/dtmf_2833_5.xml",
        &args,
        Duration::from_secs(40),
    );
    assert!(
        run.status.success(),
        "sipp failed: {}\n{}\nserver log:\n{}",
        run.status,
        run.output,
        server.log_text()
    );
}

#[test]
fn metrics_parse_and_move_with_real_sipp_calls() {
    let server = Server::start(&first_flow(), &["--http", "127.0.0.1:0"]);
    let http = server.http_addr();
    let (text, before) = scrape(http);
    // Every family is helpline's and described in the one table of names.
    let names: BTreeSet<&str> = ALL.iter().map(|d| d.name).collect();
    for doc in before.docs.keys() {
        assert!(names.contains(doc.as_str()), "{doc} is not in ALL:\n{text}");
    }
    assert!(before
        .samples
        .iter()
        .all(|s| s.metric.starts_with("helpline_")));
    assert_eq!(value(&before, "helpline_calls_total", &[]), 0.0);

    sipp_dtmf_call(&server, "m1");
    sipp_dtmf_call(&server, "m2");
    server.wait_cdrs(2, WAIT);
    let (text, after) = scrape(http);
    let calls = [
        ("region", "test"),
        ("dialed", "+448000000001"),
        ("end_reason", "server-bye"),
        ("route", "none"),
    ];
    assert_eq!(value(&after, "helpline_calls_total", &calls), 2.0, "{text}");
    let inv = [("direction", "in"), ("method", "INVITE")];
    assert_eq!(value(&after, "helpline_sip_requests_total", &inv), 2.0);
    let ack = [("direction", "in"), ("method", "ACK")];
    assert_eq!(value(&after, "helpline_sip_requests_total", &ack), 2.0);
    let bye = [("direction", "out"), ("method", "BYE")];
    assert_eq!(value(&after, "helpline_sip_requests_total", &bye), 2.0);
    let ok = [("direction", "out"), ("method", "INVITE"), ("code", "200")];
    assert_eq!(value(&after, "helpline_sip_responses_total", &ok), 2.0);
    let rfc = [("method", "rfc4733")];
    assert_eq!(
        value(&after, "helpline_dtmf_keys_total", &rfc),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(&after, "helpline_dtmf_keys_total", &[("method", "info")]),
        0.0
    );
    assert_eq!(value(&after, "helpline_active_calls", &[]), 0.0);
    assert_eq!(
        value(&after, "helpline_cdr_records_written_total", &[]),
        2.0
    );
    assert_eq!(observations(&after, "helpline_invite_answer_seconds"), 2.0);
    // One key each, followed by the confirmation prompt.
    assert_eq!(observations(&after, "helpline_key_action_seconds"), 2.0);
    // The media engine's counters: SIPp sent the key's RTP, helpline the prompts.
    assert!(value(&after, "helpline_rtp_packets_total", &[("direction", "in")]) > 0.0);
    let out = value(
        &after,
        "helpline_rtp_packets_total",
        &[("direction", "out")],
    );
    let bytes = value(&after, "helpline_rtp_bytes_total", &[("direction", "out")]);
    assert!(out > 50.0, "{text}");
    // PCMU 20 ms: 160 bytes of audio and a 12-byte header per packet.
    assert_eq!(bytes, out * 172.0, "{text}");
    assert_eq!(value(&after, "helpline_ready", &[]), 1.0);
    // IVR analytics: each caller entered the welcome menu and chose 5 there; no one left it otherwise.
    let menu = |event| [("menu", "welcome"), ("event", event)];
    let events = "helpline_ivr_menu_events_total";
    // The series exist at 0 before any call (the menus name them), so rate() sees the first one.
    assert!(
        before.samples.iter().any(|x| x.metric == events
            && x.labels.get("menu") == Some("welcome")
            && x.labels.get("event") == Some("hangup")),
        "no zero series for the welcome menu before a call"
    );
    assert_eq!(value(&before, events, &menu("entered")), 0.0);
    assert_eq!(value(&after, events, &menu("entered")), 2.0, "{text}");
    for event in [
        "invalid",
        "timeout",
        "max_failures",
        "max_timeouts",
        "hangup",
    ] {
        assert_eq!(value(&after, events, &menu(event)), 0.0, "{event}: {text}");
    }
    let key5 = [("menu", "welcome"), ("key", "5")];
    assert_eq!(
        value(&after, "helpline_ivr_menu_keys_total", &key5),
        2.0,
        "{text}"
    );
}

#[test]
fn a_number_no_menu_lists_is_counted_as_unknown() {
    let server = Server::start(
        &common::root().join("ivr-menus"),
        &["--http", "127.0.0.1:0"],
    );
    let http = server.http_addr();
    let mut ua = Ua::udp(server.addr);
    for user in ["0999111", "0999222"] {
        ua.invite(user, &sdp_offer(40_000, "0", ""));
        ua.expect_response(404, WAIT);
    }
    server.wait_cdrs(2, WAIT);
    let (text, s) = scrape(http);
    let unknown = [("dialed", "unknown"), ("region", "none"), ("route", "none")];
    assert_eq!(value(&s, "helpline_calls_total", &unknown), 2.0, "{text}");
    assert!(
        !text.contains("0999111") && !text.contains("0999222"),
        "{text}"
    );
    let refused = [("direction", "out"), ("method", "INVITE"), ("code", "404")];
    assert!(value(&s, "helpline_sip_responses_total", &refused) >= 2.0);
}

#[test]
fn ready_is_503_while_draining_with_a_call_in_progress() {
    let mut server = Server::start(
        &first_flow(),
        &["--http", "127.0.0.1:0", "--drain-secs", "3"],
    );
    let http = server.http_addr();
    assert_eq!(
        common::http_get(http, "/health/ready"),
        (200, "ready\n".to_string())
    );
    let mut ua = Ua::udp(server.addr);
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let port = rtp.local_addr().expect("rtp addr").port();
    let mut call = ua.invite("08000000001", &sdp_offer(port, "0", ""));
    let ok = ua.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("a To tag");
    ua.ack(&call, "");

    server.signal("TERM");
    server
        .wait_log("refusing new calls, draining", WAIT)
        .expect("the drain starts");
    let (status, body) = common::http_get(http, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert_eq!(common::http_get(http, "/health/live").0, 200);
    let (_, s) = scrape(http);
    assert_eq!(value(&s, "helpline_ready", &[]), 0.0);
    assert_eq!(value(&s, "helpline_active_calls", &[]), 1.0);

    // The call ends, the process exits.
    ua.in_dialog(&mut call, "BYE", "", "");
    ua.expect_response(200, WAIT);
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ready_is_503_when_the_cdr_file_cannot_be_written() {
    // Replaced by a directory while running: the writer's file is gone and the path takes no lines.
    let server = Server::start(&first_flow(), &["--http", "127.0.0.1:0"]);
    let http = server.http_addr();
    // The writer has opened the file before the listening line.
    assert_eq!(
        common::http_get(http, "/health/ready"),
        (200, "ready\n".to_string())
    );
    std::fs::remove_file(&server.cdr).expect("remove the CDR file");
    let (status, body) = common::http_get(http, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cdr file") && body.contains("not writable"),
        "{body}"
    );
    std::fs::create_dir(&server.cdr).expect("a directory in its place");
    let (status, body) = common::http_get(http, "/health/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cdr file"), "{body}");
}

#[test]
fn ready_is_503_when_the_cdr_path_is_unwritable_from_the_start() {
    let dir = common::temp_dir("http-cdr");
    let cdr = dir.join("no-such-dir").join("cdr.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["serve", "--config"])
        .arg(first_flow())
        .arg("--prompts")
        .arg(common::root().join("prompts"))
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--rtp-ports", "30000-39999", "--cdr"])
        .arg(&cdr)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helpline");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = common::parse_http_addr(&common::strip_ansi(&line)) {
                let _ = tx.send(addr);
            }
        }
    });
    let http = rx.recv_timeout(Duration::from_secs(20));
    // The writer has tried (and failed) to open the file before the listening line.
    let result = http.map(|http| common::http_get(http, "/health/ready"));
    let _ = child.kill();
    let _ = child.wait();
    let (status, body) = result.expect("the server printed its http address");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not writable"), "{body}");
}

#[test]
fn calls_endpoint_returns_the_cdr_of_a_finished_call_and_404_otherwise() {
    let server = Server::start(&first_flow(), &["--http", "127.0.0.1:0"]);
    let http = server.http_addr();
    sipp_dtmf_call(&server, "ring/slash");
    let cdrs = server.wait_cdrs(1, WAIT);
    let call_id = cdrs[0]["call_id"].as_str().expect("a Call-ID").to_string();
    assert!(call_id.starts_with("ring/slash-") && call_id.contains('@'));
    let encoded = call_id.replace('/', "%2F").replace('@', "%40");
    let (status, body) = common::http_get(http, &format!("/calls/{encoded}"));
    assert_eq!(status, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(served, cdrs[0], "the same record as the --cdr file's line");
    let line = std::fs::read_to_string(&server.cdr).expect("the CDR file");
    assert_eq!(body.trim(), line.trim(), "byte for byte the written line");

    assert_eq!(
        common::http_get(http, "/calls/no-such-call%40nowhere").0,
        404
    );

    // A call still in progress is not there yet.
    let mut ua = Ua::udp(server.addr);
    let mut call = ua.invite("08000000001", &sdp_offer(40_002, "0", ""));
    let ok = ua.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("a To tag");
    ua.ack(&call, "");
    let live = call.call_id.replace('@', "%40");
    assert_eq!(common::http_get(http, &format!("/calls/{live}")).0, 404);
    ua.in_dialog(&mut call, "BYE", "", "");
    ua.expect_response(200, WAIT);
    server.wait_cdrs(2, WAIT);
    let (status, body) = common::http_get(http, &format!("/calls/{live}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("caller-bye"), "{body}");
}

/// Every `helpline_*` name in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let re = regex::Regex::new(r"helpline_[a-z0-9_]+").expect("a valid regex");
    into.extend(re.find_iter(expr).map(|m| m.as_str().to_string()));
}

fn exprs_in_json(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs_in_json(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs_in_json(v, out)),
        _ => {}
    }
}

#[test]
fn every_metric_the_deploy_files_query_is_exported() {
    let root = common::root();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/helpline-dashboard.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    exprs_in_json(&dashboard, &mut exprs);
    let panels = dashboard["panels"].as_array().expect("panels").len();
    assert!(exprs.len() >= panels, "every panel has a query");

    let rules: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).expect("the rules"),
    )
    .expect("the rules are YAML");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            alerts.insert(rule["alert"].as_str().expect("an alert name").to_string());
            exprs.push(rule["expr"].as_str().expect("an expr").to_string());
        }
    }
    for a in [
        "HelplineNotReady",
        "HelplineCallsRoutedNowhere",
        "HelplineCdrSpoolNotEmpty",
        "HelplineRtpLossHigh",
    ] {
        assert!(alerts.contains(a), "alert {a} missing: {alerts:?}");
    }
    let scrape_cfg: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml")).expect("config"),
    )
    .expect("the scrape config is YAML");
    assert_eq!(scrape_cfg["scrape_configs"][0]["metrics_path"], "/metrics");

    let mut queried = BTreeSet::new();
    for e in &exprs {
        assert!(
            e.contains("helpline_"),
            "a query on no helpline metric: {e}"
        );
        metric_names(e, &mut queried);
    }

    // What a live server exports: the shipped menus with the sample agents (so queues exist), after
    // one call (so the per-call families have a series).
    let menus = common::menus_with_sample_agents(|a| a.to_string());
    let server = Server::start(&menus, &["--http", "127.0.0.1:0"]);
    let http = server.http_addr();
    let mut ua = Ua::udp(server.addr);
    ua.invite("0999111", &sdp_offer(40_004, "0", ""));
    ua.expect_response(404, WAIT);
    server.wait_cdrs(1, WAIT);
    let (text, _) = scrape(http);
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let missing: Vec<&String> = queried.iter().filter(|q| !exported.contains(*q)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{text}"
    );
}

#[test]
fn readme_names_every_metric() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    for def in ALL {
        assert!(def.name.starts_with("helpline_"), "{}", def.name);
        assert!(
            readme.contains(def.name),
            "README does not list {}",
            def.name
        );
        if def.kind == MetricKind::Counter {
            assert!(def.name.ends_with("_total"), "{}", def.name);
        }
    }
    for path in [
        "/metrics",
        "/health/live",
        "/health/ready",
        "/calls/{call-id}",
        "--http",
    ] {
        assert!(readme.contains(path), "README does not document {path}");
    }
}

#[test]
fn menu_reloads_and_the_live_version_show_on_metrics() {
    let dir = common::temp_dir("http-menus");
    let flow = dir.join("flow.toml");
    let text = std::fs::read_to_string(first_flow().join("flow.toml")).expect("the flow");
    std::fs::write(&flow, &text).expect("copy the flow");
    let server = Server::start(&dir, &["--http", "127.0.0.1:0", "--no-watch"]);
    let http = server.http_addr();
    let (_, s) = scrape(http);
    let live = |s: &Scrape| -> Vec<String> {
        s.samples
            .iter()
            .filter(|x| x.metric == "helpline_menu_info" && x.value == Value::Gauge(1.0))
            .filter_map(|x| x.labels.get("version").map(str::to_string))
            .collect()
    };
    let first = live(&s);
    assert_eq!(first.len(), 1, "one live version");

    std::fs::write(&flow, "this is not toml [").expect("break the flow");
    server.signal("HUP");
    server
        .wait_log("menu reload refused", WAIT)
        .expect("refused");
    let (_, s) = scrape(http);
    assert_eq!(
        value(&s, "helpline_menu_reloads_total", &[("result", "refused")]),
        1.0
    );
    assert_eq!(live(&s), first, "the live set stays");

    std::fs::write(&flow, format!("{text}\n# edited\n")).expect("fix the flow");
    server.signal("HUP");
    server.wait_log("menus reloaded", WAIT).expect("reloaded");
    // The core learns of the new set through its own channel: wait for the scrape to show it.
    let deadline = std::time::Instant::now() + WAIT;
    let s = loop {
        let (_, s) = scrape(http);
        if live(&s) != first || std::time::Instant::now() >= deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        value(&s, "helpline_menu_reloads_total", &[("result", "ok")]),
        1.0
    );
    let now = live(&s);
    assert_eq!(now.len(), 1, "one live version: {now:?}");
    assert_ne!(now, first, "the new version is live");
    assert_eq!(
        value(&s, "helpline_menu_info", &[("version", &first[0])]),
        0.0
    );
}
