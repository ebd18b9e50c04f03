//! What the call layer says to capture (`CallsConfig::capture`, `serve --trace-dir`), on the simulated
//! clock: a captured call's start and file stem, every SIP message of the caller's and the agent's legs
//! in both directions with their addresses, its media sessions and its end; and `trace = false` on a
//! region or a number capturing nothing. Writing the pcap is the shell's (tests/capture.rs).
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::sim::agent::{agent_phone, answers_after, refunds_caller, ANA};
use common::sim::{load_menus, sample_agent_menus, SimNet, DE, GB};
use helpline::call::{CaptureEvent, CaptureId};
use helpline::ivr::MenuSet;

/// One captured SIP message, reduced to what the assertions read: its capture, its first line, its
/// Call-ID, from and to.
#[derive(Debug)]
struct Seen {
    id: CaptureId,
    line: String,
    call_id: String,
    from: SocketAddr,
    to: SocketAddr,
}

fn sip(events: &[CaptureEvent]) -> Vec<Seen> {
    events
        .iter()
        .filter_map(|e| match e {
            CaptureEvent::Sip(s) => {
                let text = String::from_utf8_lossy(&s.bytes);
                let call_id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Call-ID: "))
                    .expect("every message helpline and the phones send has a Call-ID")
                    .to_owned();
                Some(Seen {
                    id: s.id,
                    line: text.lines().next().unwrap_or_default().to_owned(),
                    call_id,
                    from: s.from,
                    to: s.to,
                })
            }
            _ => None,
        })
        .collect()
}

/// The first words of each message of one Call-ID, e.g. `INVITE` or `SIP/2.0 200` (the method a
/// response answers is left out: the order shows it).
fn lines_of(seen: &[Seen], call_id: &str) -> Vec<String> {
    seen.iter()
        .filter(|s| s.call_id == call_id)
        .map(|s| {
            let mut words = s.line.split(' ');
            let first = words.next().unwrap_or_default();
            if first == "SIP/2.0" {
                format!("{first} {}", words.next().unwrap_or_default())
            } else {
                first.to_owned()
            }
        })
        .collect()
}

#[test]
fn a_routed_call_captures_the_caller_and_agent_legs_both_ways_then_ends() {
    let mut net = SimNet::with_menus(sample_agent_menus())
        .config(|c| c.capture = true)
        .build();
    let agent_addr: SocketAddr = "127.0.0.1:41000".parse().expect("literal");
    let ana = agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(Duration::from_secs(2), "127.0.0.1:41000"),
    );
    // The agent's REGISTERs belong to no call: nothing was captured for them.
    assert_eq!(net.captures, []);
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(Duration::from_secs(5));
    net.phone(p).bye(c);
    net.run_until_idle(Duration::from_secs(60));
    let caller_id = net.cdr(p, c).call_id.clone();
    let _ = ana;

    let Some(CaptureEvent::Start { id, stem, .. }) = net.captures.first().cloned() else {
        panic!("the capture starts first: {:#?}", net.captures);
    };
    // `open_hours()` is Wednesday 2026-11-25 10:00 in Paris (09:00Z); the caller dialled at once.
    let expected_id: String = caller_id
        .chars()
        .map(|ch| if ch == '@' { '_' } else { ch })
        .collect();
    assert_eq!(stem, format!("20261125T090000Z-{expected_id}"));
    assert_eq!(
        net.captures.last(),
        Some(&CaptureEvent::End { id }),
        "the capture ends last"
    );
    let medias: Vec<_> = net
        .captures
        .iter()
        .filter_map(|e| match e {
            CaptureEvent::Media { id: m, media, .. } if *m == id => Some(*media),
            _ => None,
        })
        .collect();
    assert_eq!(medias.len(), 2, "the caller's and the agent's sessions");

    let seen = sip(&net.captures);
    assert!(seen.iter().all(|s| s.id == id), "one capture: {seen:#?}");
    let caller_addr: SocketAddr = "127.0.0.1:40000".parse().expect("literal");
    let caller = lines_of(&seen, &caller_id);
    assert_eq!(
        caller,
        [
            "INVITE",
            "SIP/2.0 100",
            "SIP/2.0 200",
            "ACK",
            "BYE",
            "SIP/2.0 200"
        ],
        "{seen:#?}"
    );
    let first = &seen[0];
    assert_eq!((first.from, first.to), (caller_addr, net.local));
    let agent_ids: Vec<&str> = seen
        .iter()
        .filter(|s| s.call_id != caller_id)
        .map(|s| s.call_id.as_str())
        .collect();
    let agent_id = *agent_ids.first().expect("the agent leg is captured");
    assert!(agent_ids.iter().all(|a| *a == agent_id), "{agent_ids:?}");
    assert_eq!(
        lines_of(&seen, agent_id),
        [
            "INVITE",
            "SIP/2.0 180",
            "SIP/2.0 200",
            "ACK",
            "BYE",
            "SIP/2.0 200"
        ],
        "{seen:#?}"
    );
    let agent_invite = seen
        .iter()
        .find(|s| s.call_id == agent_id)
        .expect("found above");
    assert_eq!(
        (agent_invite.from, agent_invite.to),
        (net.local, agent_addr)
    );
}

/// The shipped menus plus the sample agents, with `edit` applied to `europe.toml`.
fn europe_edited(edit: impl Fn(&str) -> String) -> Arc<MenuSet> {
    let dir = common::menus_with_sample_agents(str::to_owned);
    let path = dir.join("europe.toml");
    let text = std::fs::read_to_string(&path).expect("europe.toml was copied");
    std::fs::write(&path, edit(&text)).expect("write europe.toml");
    load_menus(dir.to_str().expect("UTF-8 temp path"))
}

/// Which of a GB and a DE call are captured (each answered and hung up).
fn captured(menus: Arc<MenuSet>) -> (bool, bool) {
    let mut net = SimNet::with_menus(menus)
        .config(|c| c.capture = true)
        .build();
    let mut result = Vec::new();
    for (addr, number) in [("127.0.0.1:40000", GB), ("127.0.0.1:40010", DE)] {
        let before = net.captures.len();
        let p = net.udp_phone(addr);
        let offer = net.offer(p);
        let c = net.phone(p).invite(number, Some(&offer));
        net.drive();
        net.phone(p).ack(c, None);
        net.advance(Duration::from_secs(1));
        net.phone(p).bye(c);
        net.run_until_idle(Duration::from_secs(60));
        assert_eq!(net.cdr(p, c).final_status, 200);
        result.push(net.captures.len() > before);
    }
    (result[0], result[1])
}

#[test]
fn trace_false_on_a_region_or_a_number_captures_nothing_of_those_calls() {
    let region_off = |t: &str| t.replace("[regions.europe]\n", "[regions.europe]\ntrace = false\n");
    let gb_number = "number = \"0800 028 9999\"\n";
    let de_number = "number = \"0800 183 9999\"\n";
    assert_eq!(captured(europe_edited(str::to_owned)), (true, true));
    assert_eq!(captured(europe_edited(region_off)), (false, false));
    // A number's own setting wins over its region's.
    let de_only = |t: &str| region_off(t).replace(de_number, &format!("{de_number}trace = true\n"));
    assert_eq!(captured(europe_edited(de_only)), (false, true));
    let gb_off = |t: &str| t.replace(gb_number, &format!("{gb_number}trace = false\n"));
    assert_eq!(captured(europe_edited(gb_off)), (false, true));
}

#[test]
fn without_capture_on_nothing_is_captured() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let (p, c) = refunds_caller(&mut net, "127.0.0.1:40000");
    net.phone(p).bye(c);
    net.run_until_idle(Duration::from_secs(60));
    assert_eq!(net.cdr(p, c).final_status, 200);
    assert_eq!(net.captures, []);
}
