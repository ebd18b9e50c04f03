//! RTCP against the real binary (RFC 3550 §6): a test caller with RTP and RTP+1 on loopback receives
//! helpline's sender reports (SSRC of the RTP it hears, packet counts matching what it received, SDES
//! CNAME, a block about the caller's stream with the caller's own loss), sends a sender report of its
//! own with a known loss and jitter, sees helpline echo it (LSR), and finds those numbers, helpline's
//! count of the caller's loss and a round trip in the CDR's `rtcp`; the hang-up brings helpline's BYE.
//! The packets are parsed here by hand, not with helpline's own `media::rtcp`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{rtp_packet, sdp_offer, Server, Ua};

const WAIT: Duration = Duration::from_secs(10);
const OUR_SSRC: u32 = 0x0C0F_FEE0;
/// The NTP timestamp of our sender report; helpline must echo its middle 32 bits as LSR.
const OUR_NTP: u64 = 0x1234_5678_9ABC_DEF0;

/// A caller's RTP/RTCP socket pair on an even port and the next one.
fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let port = common::free_media_port();
        if let (Ok(rtp), Ok(rtcp)) = (
            UdpSocket::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port + 1)),
        ) {
            return (rtp, rtcp);
        }
    }
    panic!("no RTP/RTCP port pair on 127.0.0.1");
}

/// One RTCP packet of a compound: type, count field, body after the header.
struct Part {
    pt: u8,
    count: u8,
    body: Vec<u8>,
}

/// Splits a compound by its length fields; panics (the test fails) on a malformed one.
fn split(datagram: &[u8]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "truncated rtcp header in {datagram:02x?}");
        assert_eq!(rest[0] >> 6, 2, "rtcp version");
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        assert!(len <= rest.len(), "rtcp length past the datagram");
        parts.push(Part {
            pt: rest[1],
            count: rest[0] & 0x1F,
            body: rest[4..len].to_vec(),
        });
        rest = &rest[len..];
    }
    parts
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A sender report as the caller reads it.
#[derive(Debug)]
struct Sr {
    ssrc: u32,
    ntp: u64,
    packets: u32,
    octets: u32,
    /// (ssrc, cumulative lost, highest seq, lsr) of each block.
    blocks: Vec<(u32, i32, u32, u32)>,
    cname: Option<String>,
    bye: bool,
    at: Instant,
}

fn parse_sr(datagram: &[u8], at: Instant) -> Option<Sr> {
    let parts = split(datagram);
    let first = parts.first()?;
    if first.pt != 200 {
        return None;
    }
    let b = &first.body;
    let blocks = (0..usize::from(first.count))
        .map(|i| {
            let o = 24 + 24 * i;
            let lost = i32::from_be_bytes([b[o + 5], b[o + 6], b[o + 7], 0]) >> 8;
            (be32(b, o), lost, be32(b, o + 8), be32(b, o + 16))
        })
        .collect();
    let cname = parts.iter().find(|p| p.pt == 202).and_then(|p| {
        // One chunk: SSRC, then items (type, length, text); CNAME is type 1.
        (p.body.get(4) == Some(&1)).then(|| {
            let n = usize::from(p.body[5]);
            String::from_utf8_lossy(&p.body[6..6 + n]).into_owned()
        })
    });
    Some(Sr {
        ssrc: be32(b, 0),
        ntp: (u64::from(be32(b, 4)) << 32) | u64::from(be32(b, 8)),
        packets: be32(b, 16),
        octets: be32(b, 20),
        blocks,
        cname,
        bye: parts.iter().any(|p| p.pt == 203),
        at,
    })
}

/// The caller's side of the call: counts helpline's RTP, reads its RTCP.
struct Caller {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    server_rtp: SocketAddr,
    heard: u32,
    heard_ssrc: Option<u32>,
}

impl Caller {
    /// Reads every RTP packet already waiting.
    fn drain_rtp(&mut self) {
        self.rtp.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
            if n >= 12 {
                self.heard += 1;
                let ssrc = be32(&buf, 8);
                assert_eq!(*self.heard_ssrc.get_or_insert(ssrc), ssrc, "one stream");
            }
        }
    }

    /// Sends our RTP packets `seqs` (20 ms of μ-law silence each, paced) and reads what comes meanwhile.
    fn send_rtp(&mut self, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let ts = 8000 + 160 * u32::from(seq);
            let p = rtp_packet(0, false, seq, ts, OUR_SSRC, &[0xFF; 160]);
            self.rtp.send_to(&p, self.server_rtp).expect("send rtp");
            std::thread::sleep(Duration::from_millis(20));
            self.drain_rtp();
        }
    }

    /// The next RTCP datagram from helpline that satisfies `want`, reading RTP as it goes.
    fn next_report(&mut self, want: impl Fn(&Sr) -> bool) -> Sr {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 1500];
        self.rtcp
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.rtcp.recv_from(&mut buf) {
                assert_eq!(from.port(), self.server_rtp.port() + 1, "from RTP+1");
                let at = Instant::now();
                self.drain_rtp();
                if let Some(sr) = parse_sr(&buf[..n], at).filter(|sr| want(sr)) {
                    return sr;
                }
            } else {
                self.drain_rtp();
            }
        }
        panic!("no matching RTCP report from helpline within {WAIT:?}");
    }
}

/// Our SR: 3 packets sent, one block about helpline's stream (fraction 1/8, 7 lost, jitter 160
/// units = 20 ms at 8 kHz, LSR of its SR, DLSR since we got it), then SDES CNAME.
fn our_sr(theirs: &Sr, highest_seq: u32) -> Vec<u8> {
    let mut p = vec![0x81, 200, 0, 12];
    p.extend_from_slice(&OUR_SSRC.to_be_bytes());
    p.extend_from_slice(&OUR_NTP.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x1F, 0x40, 0, 0, 0, 3, 0, 0, 1, 0xE0]);
    p.extend_from_slice(&theirs.ssrc.to_be_bytes());
    p.extend_from_slice(&[32, 0, 0, 7]);
    p.extend_from_slice(&highest_seq.to_be_bytes());
    p.extend_from_slice(&160u32.to_be_bytes());
    p.extend_from_slice(&((theirs.ntp >> 16) as u32).to_be_bytes());
    let dlsr = (theirs.at.elapsed().as_secs_f64() * 65536.0) as u32;
    p.extend_from_slice(&dlsr.to_be_bytes());
    p.extend_from_slice(&[0x81, 202, 0, 2]);
    p.extend_from_slice(&OUR_SSRC.to_be_bytes());
    p.extend_from_slice(&[1, 1, b't', 0]);
    assert_eq!(p.len(), 4 * 13 + 12);
    p
}

#[test]
fn rtcp_reports_reach_a_test_caller_and_its_reports_show_up_in_the_cdr() {
    let server = Server::start(
        &common::root().join("tests/data/menus/first-flow"),
        &["--rtcp-interval-ms", "200", "--http", "127.0.0.1:0"],
    );
    let (rtp, rtcp) = bind_pair();
    let port = rtp.local_addr().expect("addr").port();
    let mut ua = Ua::udp(server.addr);
    let mut call = ua.invite(
        "08000000001",
        &sdp_offer(port, "0 101", "a=rtpmap:101 telephone-event/8000\r\n"),
    );
    let ok = ua.expect_response(200, WAIT);
    call.to_tag = ok.to_tag().expect("to tag");
    let server_port = ok.sdp_audio_port().expect("m=audio in the answer");
    ua.ack(&call, "");
    let mut caller = Caller {
        rtp,
        rtcp,
        server_rtp: SocketAddr::from(([127, 0, 0, 1], server_port)),
        heard: 0,
        heard_ssrc: None,
    };

    // 20 packets with 2 missing (seq 5 and 6): helpline must count exactly those 2 as lost.
    let sent: Vec<u16> = (0..22).filter(|s| *s != 5 && *s != 6).collect();
    caller.send_rtp(sent.iter().copied());
    // A report taken after our last packet arrived (200 ms interval, so within ~300 ms).
    let stopped = Instant::now() + Duration::from_millis(60);
    let sr = caller.next_report(|sr| sr.at > stopped && !sr.blocks.is_empty());
    assert_eq!(
        Some(sr.ssrc),
        caller.heard_ssrc,
        "the SR's SSRC is the RTP stream's"
    );
    assert!(
        sr.cname.as_deref().is_some_and(|c| !c.is_empty()),
        "SDES CNAME"
    );
    // Everything the SR counts was sent before it; loopback loses nothing, and the RTP read after the
    // SR arrived covers what was in flight.
    assert!(
        sr.packets > 0 && sr.packets <= caller.heard,
        "{} vs {}",
        sr.packets,
        caller.heard
    );
    assert!(
        caller.heard - sr.packets <= 10,
        "{} vs {}",
        sr.packets,
        caller.heard
    );
    assert_eq!(sr.octets, 160 * sr.packets, "G.711 20 ms frames");
    let (block_ssrc, lost, highest, _) = sr.blocks[0];
    assert_eq!((block_ssrc, lost, highest), (OUR_SSRC, 2, 21));

    caller
        .rtcp
        .send_to(
            &our_sr(&sr, 0x1_0000 + 55),
            SocketAddr::from(([127, 0, 0, 1], server_port + 1)),
        )
        .expect("send rtcp");
    // helpline's next report echoes our SR: it has read it.
    let lsr = (OUR_NTP >> 16) as u32;
    caller.next_report(|sr| sr.blocks.iter().any(|b| b.0 == OUR_SSRC && b.3 == lsr));

    ua.in_dialog(&mut call, "BYE", "", "");
    ua.expect_response(200, WAIT);
    let bye = caller.next_report(|sr| sr.bye);
    assert_eq!(
        Some(bye.ssrc),
        caller.heard_ssrc,
        "BYE from the same source"
    );

    let cdr = server.cdr_for(&call.call_id, WAIT);
    let legs = cdr["rtcp"]
        .as_array()
        .unwrap_or_else(|| panic!("no rtcp in {cdr}"));
    assert_eq!(legs.len(), 1, "{cdr}");
    let leg = &legs[0];
    assert_eq!(leg["leg"], "caller");
    assert_eq!(leg["packets_received"], sent.len() as u64, "{leg}");
    assert_eq!(leg["lost"], 2, "{leg}");
    assert_eq!(leg["remote_lost"], 7, "{leg}");
    assert_eq!(leg["remote_jitter_ms"], 20.0, "{leg}");
    let rtt = leg["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rtt in {leg}"));
    assert!((0.0..200.0).contains(&rtt), "{leg}");
    let jitter = leg["jitter_ms"].as_f64().expect("jitter_ms");
    assert!(
        (0.0..20.0).contains(&jitter),
        "paced by sleeps on loopback: {leg}"
    );
    assert!(
        leg["packets_sent"].as_u64() >= Some(u64::from(sr.packets)),
        "{leg}"
    );
    assert!(leg["reports_sent"].as_u64() >= Some(2), "{leg}");
    assert_eq!(
        (
            leg["reports_received"].as_u64(),
            leg["reports_malformed"].as_u64()
        ),
        (Some(1), Some(0)),
        "{leg}"
    );
    assert_metrics(&server);
}

/// `/metrics` after the call: the loss both ways is exactly the CDR's, and jitter was observed both
/// ways (the counters move before the CDR is written: both come from the same RTCP statistics).
fn assert_metrics(server: &Server) {
    let (_, body) = common::http_get(server.http_addr(), "/metrics");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    let sample = |name: &str, dir: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("direction") == Some(dir))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no {name}{{direction={dir}}} in\n{body}"))
    };
    use prometheus_parse::Value;
    for (dir, lost) in [("in", 2.0), ("out", 7.0)] {
        match sample("helpline_rtp_lost_packets_total", dir) {
            Value::Counter(v) => assert_eq!(v, lost, "lost {dir}"),
            other => panic!("lost {dir}: {other:?}"),
        }
        match sample("helpline_rtp_jitter_seconds", dir) {
            Value::Histogram(buckets) => {
                let all = buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count);
                assert!(all >= 1.0, "jitter {dir} observed: {buckets:?}");
                if dir == "out" {
                    // The caller reported 20 ms: no observation below 0.01 s.
                    let below = buckets
                        .iter()
                        .find(|b| b.less_than == 0.01)
                        .map_or(0.0, |b| b.count);
                    assert_eq!(below, 0.0, "{buckets:?}");
                }
            }
            other => panic!("jitter {dir}: {other:?}"),
        }
    }
}
