//! The sample traces in examples/traces/ are what their list (`expected.toml`) says: every file listed
//! exists, is small, and is listed once; every trace file there is listed; each entry's route names a
//! region and department of the shipped menus (or is "" for a call that ends without one) and its `at`
//! is an RFC 3339 time; tshark opens each capture and finds the INVITE to the shipped UK number, the
//! whole dialog, and the caller's keys (RFC 4733 events or SIP INFO); helpline's own trace reader
//! finds the same call, caller and keys. It does not replay them (`helpline replay`'s tests do).
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use helpline::replay::trace::{read_trace, PacketKind, TraceTransport};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    trace: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    file: String,
    route: String,
    at: String,
}

fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/traces")
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(traces_dir().join("expected.toml")).expect("expected.toml");
    toml::from_str(&text).expect("expected.toml has the [[trace]] file/route/at entries")
}

/// Regions and departments of the shipped menus, read from their TOML.
fn shipped_regions_and_departments() -> (BTreeSet<String>, BTreeSet<String>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ivr-menus");
    let (mut regions, mut departments) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(&dir).expect("ivr-menus/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("menu file");
        let value: toml::Value = toml::from_str(&text).expect("menu TOML");
        if let Some(r) = value.get("regions").and_then(|r| r.as_table()) {
            regions.extend(r.keys().cloned());
        }
        if let Some(d) = value
            .get("routing")
            .and_then(|r| r.get("departments"))
            .and_then(|d| d.as_array())
        {
            departments.extend(d.iter().filter_map(|d| d.as_str().map(str::to_owned)));
        }
    }
    (regions, departments)
}

#[test]
fn every_trace_is_listed_once_small_and_has_a_known_route() {
    let expected = expected();
    let (regions, departments) = shipped_regions_and_departments();
    let mut listed = BTreeSet::new();
    for e in &expected.trace {
        assert!(listed.insert(e.file.clone()), "{} listed twice", e.file);
        let path = traces_dir().join(&e.file);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", e.file))
            .len();
        assert!(size > 0 && size < 300 * 1024, "{}: {size} bytes", e.file);
        chrono::DateTime::parse_from_rfc3339(&e.at)
            .unwrap_or_else(|err| panic!("{}: at {:?}: {err}", e.file, e.at));
        if !e.route.is_empty() {
            let (region, department) = e.route.split_once('.').unwrap_or_else(|| {
                panic!("{}: route {:?} is not REGION.DEPARTMENT", e.file, e.route)
            });
            assert!(
                regions.contains(region),
                "{}: unknown region {region}",
                e.file
            );
            assert!(
                departments.contains(department),
                "{}: unknown department {department}",
                e.file
            );
        }
    }
    for entry in std::fs::read_dir(traces_dir()).expect("examples/traces/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != "expected.toml" {
            assert!(listed.contains(&name), "{name} is not in expected.toml");
        }
    }
    // At least one capture that helpline did not write (the issue's foreign trace).
    assert!(
        expected
            .trace
            .iter()
            .any(|e| e.file.starts_with("sipp-uas-") && e.file.ends_with(".pcapng")),
        "no foreign capture listed"
    );
}

/// tshark's view of a capture: the `fields` of each packet matching `filter`, space-separated.
fn tshark(file: &str, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(traces_dir().join(file))
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs (CI installs it)");
    assert!(
        out.status.success(),
        "tshark -r {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            l.split('\t')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The keys of a capture's RFC 4733 events: each event is sent as packets without the end bit, then
/// three with it; a key is an end packet that follows a packet without the end bit on its stream. (The
/// sip-tester captures all carry one timestamp, so timestamps cannot tell presses apart.)
fn rfc4733_keys(file: &str) -> String {
    let fields = [
        "ip.src",
        "udp.srcport",
        "rtpevent.end_of_event",
        "rtpevent.event_id",
    ];
    let mut ended: std::collections::HashMap<String, bool> = Default::default();
    let mut keys = String::new();
    for line in tshark(file, "rtpevent", &fields) {
        let f: Vec<&str> = line.split(' ').collect();
        let [src, port, end, id] = f[..] else {
            panic!("{file}: tshark line {line:?}");
        };
        let end = end == "1";
        let was_ended = ended.insert(format!("{src}:{port}"), end).unwrap_or(true);
        if end && !was_ended {
            keys.push(match id.parse::<u8>() {
                Ok(d @ 0..=9) => char::from(b'0' + d),
                Ok(10) => '*',
                Ok(11) => '#',
                _ => '?',
            });
        }
    }
    keys
}

/// The keys of a capture's SIP INFO requests (`Signal=` of application/dtmf-relay bodies).
fn info_keys(file: &str) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(traces_dir().join(file))
        .args(["-Y", "sip.Method == \"INFO\"", "-T", "pdml"])
        .output()
        .expect("tshark runs");
    let pdml = String::from_utf8_lossy(&out.stdout);
    let signal = regex::Regex::new(r#"show="Signal=([0-9*#])\\r\\n""#).expect("a valid regex");
    signal
        .captures_iter(&pdml)
        .map(|c| c[1].to_string())
        .collect()
}

/// The keys each capture's caller pressed, and how (the capture's own account, not helpline's).
fn expected_keys(file: &str) -> (&'static str, &'static str) {
    match file {
        "sipp-uas-refunds-udp.pcapng" | "helpline-refunds.pcap" => ("rfc4733", "212345678#"),
        "sipp-uas-orders-tcp.pcapng" => ("rfc4733", "120261127#"),
        "sipp-uas-info-refunds-udp.pcapng" => ("info", "212345678#"),
        "helpline-8888.pcap" => ("rfc4733", "8888"),
        "helpline-invalid-retry.pcap" => ("rfc4733", "73"),
        "helpline-after-hours.pcap" => ("rfc4733", ""),
        other => panic!("{other}: add the keys its caller pressed to expected_keys"),
    }
}

#[test]
fn tshark_sees_the_dialog_and_the_keys_of_each_capture() {
    for e in expected().trace {
        if !(e.file.ends_with(".pcap") || e.file.ends_with(".pcapng")) {
            continue;
        }
        let sip = tshark(
            &e.file,
            "sip",
            &[
                "sip.Method",
                "sip.Status-Code",
                "sip.CSeq.method",
                "sip.r-uri.user",
            ],
        );
        for want in [
            "INVITE INVITE 08000289999",
            "200 INVITE",
            "ACK ACK 08000289999",
            "200 BYE",
        ] {
            assert!(
                sip.iter().any(|l| l == want),
                "{}: no {want:?} in {sip:?}",
                e.file
            );
        }
        let (method, keys) = expected_keys(&e.file);
        let seen = match method {
            "info" => info_keys(&e.file),
            _ => rfc4733_keys(&e.file),
        };
        assert_eq!(seen, keys, "{}: keys by {method}", e.file);
    }
}

/// The SIPp message log holds the same call as its capture: the INVITE to the UK number and the keys
/// as INFO bodies, in SIPp's `-trace_msg` framing.
#[test]
fn the_sipp_message_log_has_the_call_and_its_info_keys() {
    let log = std::fs::read_to_string(traces_dir().join("sipp-uas-info-refunds.msg.log"))
        .expect("the message log");
    assert!(
        log.contains("UDP message sent"),
        "not a SIPp -trace_msg log"
    );
    assert!(
        log.contains("INVITE sip:08000289999@"),
        "no INVITE to the UK number"
    );
    let keys: String = log
        .lines()
        .filter_map(|l| l.strip_prefix("Signal="))
        .map(str::trim)
        .collect();
    assert_eq!(keys, "212345678#");
}

/// The keys in RTP packets the caller sent (RFC 4733 payloads: a key per event whose end bit follows
/// packets without it, as in [`rfc4733_keys`]) and in SIP INFO requests it sent.
fn keys_read_by_helpline(file: &str) -> (String, String, TraceTransport) {
    let bytes = std::fs::read(traces_dir().join(file)).expect("trace file");
    let trace = read_trace(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        trace.calls.len(),
        1,
        "{file}: {:?}",
        trace.calls.iter().map(|c| &c.call_id).collect::<Vec<_>>()
    );
    let call = &trace.calls[0];
    assert!(call.leg_of.is_none(), "{file}");
    let (mut rtp, mut info) = (String::new(), String::new());
    let mut ended = true;
    for p in call
        .packets
        .iter()
        .filter(|p| p.from.ip() == call.caller.ip())
    {
        match &p.kind {
            // Event payloads (RFC 4733 2.3): event, E|R|volume, duration. The SIP side of a SIPp
            // caller and its RTP playback share the IP, not the port.
            PacketKind::Rtp(b) if b.len() >= 16 && b[1] & 0x7f == 101 && p.from != call.server => {
                let end = b[13] & 0x80 != 0;
                if end && !ended {
                    rtp.push(match b[12] {
                        d @ 0..=9 => char::from(b'0' + d),
                        10 => '*',
                        11 => '#',
                        _ => '?',
                    });
                }
                ended = end;
            }
            PacketKind::Sip(m) if m.starts_with(b"INFO ") && p.from == call.caller => {
                let text = String::from_utf8_lossy(m);
                info.extend(
                    text.lines()
                        .filter_map(|l| l.strip_prefix("Signal="))
                        .flat_map(|v| v.trim().chars()),
                );
            }
            _ => {}
        }
    }
    (rtp, info, call.transport)
}

#[test]
fn helplines_trace_reader_finds_the_caller_and_its_keys_in_each_trace() {
    for e in expected().trace {
        // The SIPp message log waits for the log reader (src/replay/trace/sipp_log.rs is a placeholder).
        if !(e.file.ends_with(".pcap") || e.file.ends_with(".pcapng")) {
            continue;
        }
        let (method, keys) = expected_keys(&e.file);
        let (rtp, info, transport) = keys_read_by_helpline(&e.file);
        let seen = if method == "info" { info } else { rtp };
        assert_eq!(seen, keys, "{}: keys by {method}", e.file);
        let tcp = e.file.contains("-tcp");
        assert_eq!(
            transport == TraceTransport::Tcp,
            tcp,
            "{}: {transport:?}",
            e.file
        );
    }
}
