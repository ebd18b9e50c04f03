//! Live replay, the thin tokio shell around [`ReplayCaller`]: binds our SIP (UDP, or a TCP connection
//! when the traced call was TCP) and RTP sockets, feeds the caller packets and timeouts, sends what it
//! says, then fetches the server's record of the new Call-ID (its CDR file or `GET /calls/{call-id}`).
//! No SIP or RTP logic lives here.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::replay::caller::{CallerConfig, Carry, ReplayCaller};
use crate::replay::offline::Outcome;
use crate::replay::report::CallRecord;
use crate::replay::script::Script;
use crate::replay::trace::TraceTransport;
use crate::transport::framing::StreamFramer;

/// How long to wait for the server's record after the call ended.
pub const RECORD_WAIT: Duration = Duration::from_secs(10);

/// Where the server's record of a call is read.
#[derive(Clone, Debug)]
pub enum RecordSource {
    /// The CDR file the server appends to (`serve --cdr`).
    Cdr(PathBuf),
    /// The server's HTTP endpoint (`serve --http`): `GET /calls/{call-id}`.
    Http(SocketAddr),
    /// None: the report has no route.
    None,
}

/// What a live replay talks to.
#[derive(Clone, Debug)]
pub struct LiveSetup {
    /// The server's SIP address.
    pub target: SocketAddr,
    /// Our address (default: loopback of the target's family).
    pub bind: Option<IpAddr>,
    /// Where the route is read.
    pub record: RecordSource,
    /// Seed of the caller.
    pub seed: u64,
}

/// Why a live replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// A socket could not be bound or connected.
    #[error("cannot reach {what}")]
    Socket {
        /// What.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn sock_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LiveError {
    let what = what.into();
    move |source| LiveError::Socket { what, source }
}

enum Sip {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamFramer),
}

/// Replays one call against the server at `setup.target`, in real time.
pub async fn replay(script: &Script, setup: &LiveSetup) -> Result<Outcome, LiveError> {
    let ip = setup.bind.unwrap_or(if setup.target.is_ipv6() {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    });
    let rtp = UdpSocket::bind((ip, 0))
        .await
        .map_err(sock_err("an rtp port"))?;
    let local_rtp = rtp.local_addr().map_err(sock_err("an rtp port"))?;
    let (mut sip, local_sip) = match script.transport {
        TraceTransport::Udp => {
            let s = UdpSocket::bind((ip, 0))
                .await
                .map_err(sock_err("a sip port"))?;
            let a = s.local_addr().map_err(sock_err("a sip port"))?;
            (Sip::Udp(s), a)
        }
        TraceTransport::Tcp => {
            let s = TcpStream::connect(setup.target)
                .await
                .map_err(sock_err(format!("{} over tcp", setup.target)))?;
            let a = s.local_addr().map_err(sock_err("a tcp connection"))?;
            (Sip::Tcp(s, StreamFramer::new()), a)
        }
    };
    let mut caller = ReplayCaller::new(
        CallerConfig {
            target: setup.target,
            local_sip,
            local_rtp,
            transport: script.transport,
            t1: Duration::from_millis(500),
            seed: setup.seed,
        },
        script.clone(),
    );
    caller.start(Instant::now());
    drive(&mut caller, &mut sip, &rtp).await;
    let record = fetch_record(&setup.record, caller.call_id()).await;
    Ok(Outcome {
        caller: caller.report(),
        record,
    })
}

/// The run loop: send what the caller has, then wait for a packet or its next timeout.
async fn drive(caller: &mut ReplayCaller, sip: &mut Sip, rtp: &UdpSocket) {
    let mut sip_buf = vec![0u8; 65536];
    let mut rtp_buf = vec![0u8; 2048];
    loop {
        while let Some(t) = caller.poll_transmit() {
            let sent = match (t.carry, &mut *sip) {
                (Carry::Rtp, _) => rtp.send_to(&t.bytes, t.to).await.map(|_| ()),
                (Carry::Sip, Sip::Udp(s)) => s.send_to(&t.bytes, t.to).await.map(|_| ()),
                (Carry::Sip, Sip::Tcp(s, _)) => s.write_all(&t.bytes).await,
            };
            if let Err(err) = sent {
                tracing::debug!(%err, to = %t.to, "replay: send failed");
            }
        }
        if caller.is_done() {
            return;
        }
        let Some(deadline) = caller.poll_timeout() else {
            return;
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            _ = sleep => caller.handle_timeout(Instant::now()),
            r = rtp.recv_from(&mut rtp_buf) => {
                if let Ok((n, from)) = r {
                    caller.handle_rtp(Instant::now(), from, &rtp_buf[..n]);
                }
            }
            r = recv_sip(sip, &mut sip_buf) => match r {
                Some(messages) => {
                    for (from, m) in messages {
                        caller.handle_sip(Instant::now(), from, &m);
                    }
                }
                None => {
                    // The TCP connection closed: nothing more can arrive; let the timers finish.
                    let at = caller.poll_timeout().unwrap_or_else(Instant::now);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    caller.handle_timeout(Instant::now());
                }
            },
        }
    }
}

/// The next SIP message(s): one datagram, or whatever the stream framed; `None` when the connection
/// closed.
async fn recv_sip(sip: &mut Sip, buf: &mut [u8]) -> Option<Vec<(SocketAddr, Vec<u8>)>> {
    match sip {
        Sip::Udp(s) => match s.recv_from(buf).await {
            Ok((n, from)) => Some(vec![(from, buf[..n].to_vec())]),
            Err(err) => {
                tracing::debug!(%err, "replay: sip receive failed");
                Some(Vec::new())
            }
        },
        Sip::Tcp(s, framer) => {
            let peer = s.peer_addr().ok()?;
            let n = s.read(buf).await.ok()?;
            if n == 0 {
                return None;
            }
            framer.push(&buf[..n]);
            let mut out = Vec::new();
            while let Ok(Some(m)) = framer.next_message() {
                out.push((peer, m));
            }
            Some(out)
        }
    }
}

/// Waits (bounded by [`RECORD_WAIT`]) for the server's record of `call_id`.
pub async fn fetch_record(source: &RecordSource, call_id: &str) -> Option<CallRecord> {
    let until = tokio::time::Instant::now() + RECORD_WAIT;
    loop {
        let found = match source {
            RecordSource::None => return None,
            RecordSource::Cdr(path) => read_cdr(path, call_id).await,
            RecordSource::Http(addr) => http_record(*addr, call_id).await,
        };
        if found.is_some() {
            return found;
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_cdr(path: &std::path::Path, call_id: &str) -> Option<CallRecord> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| CallRecord::from_json(&v))
        .find(|r| r.call_id == call_id)
}

/// Percent-encodes a Call-ID for a URL path segment (RFC 3986 unreserved characters stay).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /calls/{call-id}`: the record, `None` on 404 (not yet written, or unknown) or any error.
async fn http_record(addr: SocketAddr, call_id: &str) -> Option<CallRecord> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let stream = TcpStream::connect(addr).await.ok()?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(format!("/calls/{}", encode_segment(call_id)))
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    CallRecord::from_json(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_percent_encoded_as_one_path_segment() {
        assert_eq!(
            encode_segment("replay-00ab@127.0.0.1"),
            "replay-00ab%40127.0.0.1"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
