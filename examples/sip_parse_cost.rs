//! What one SIP message costs the codec: a SIPp-style INVITE parsed and its 200 built and serialised,
//! best of 30 rounds (`cargo run --release --example sip_parse_cost`). A measuring tool, not a test.
use std::time::Instant;

use helpline::sip::message::{parse_datagram, Response, SipMessage};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The INVITE SIPp's built-in `uac` scenario sends.
const INVITE: &str = "INVITE sip:08000000001@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:45000;branch=z9hG4bK-12345-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:45000>;tag=12345SIPpTag001\r\n\
To: <sip:08000000001@127.0.0.1:5060>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:45000\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const ROUNDS: usize = 30;
const PER_ROUND: u32 = 50_000;

fn main() {
    let mut best = f64::MAX;
    let mut bytes = 0usize;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            match parse_datagram(INVITE.as_bytes()) {
                Ok(SipMessage::Request(invite)) => {
                    bytes += Response::for_request(&invite, 200, "OK").to_bytes().len();
                }
                other => panic!("the sample INVITE no longer parses as a request: {other:?}"),
            }
        }
        best = best.min(started.elapsed().as_nanos() as f64 / f64::from(PER_ROUND));
    }
    println!(
        "best of {ROUNDS} rounds: {best:.0} ns per INVITE parsed and 200 built ({bytes} bytes written)"
    );
}
