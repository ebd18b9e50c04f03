//! SIP over TCP: the accept loop and one reader/writer pair per connection; messages are framed by
//! Content-Length and handed to the core as whole messages. It does not parse SIP beyond framing
//! (except to answer an INVITE the full core queue cannot take with a `503`, and an RFC 5626 §4.4.1
//! double-CRLF ping with a CRLF pong; on UDP RFC 5626 keeps flows alive with STUN, which helpline does
//! not answer: UDP is left as it is).
//!
//! Resource bounds (the decisions are [`ConnTable`]'s, sans-IO): connections are capped in total and
//! per source, a connection that sends no complete message within the first-message deadline or stays
//! idle (no message, no CRLF keep-alive, no binding, no dialog) past the idle timeout is closed by
//! [`TcpConnections::sweep`], messages are bounded in size, each connection's write queue is bounded (a
//! peer that does not read is disconnected), and `accept` errors (EMFILE) back off instead of spinning.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

use super::framing::StreamFramer;
use super::tcp_policy::{ConnTable, TcpLimits};
use super::TransportStats;

/// One framed message from a TCP connection.
#[derive(Debug)]
pub struct TcpInbound {
    /// The connection it arrived on.
    pub conn: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Our end of the connection (the address the peer connected to).
    pub local: SocketAddr,
    /// One whole SIP message.
    pub bytes: Vec<u8>,
}

/// Messages waiting to be written on one connection; a peer that lets this many pile up is not
/// reading and is disconnected.
const WRITE_QUEUE: usize = 256;

/// Messages from every connection waiting for the core (see `server`): beyond it an INVITE is refused
/// with `503` and anything else dropped, counted.
pub const INBOUND_QUEUE: usize = 4096;

/// `Retry-After` of the `503` for an INVITE the full core queue could not take.
const OVERLOAD_RETRY_AFTER: u32 = 5;

struct ConnHandle {
    tx: mpsc::Sender<Arc<[u8]>>,
    close: Arc<Notify>,
}

struct Inner {
    writers: DashMap<u64, ConnHandle>,
    table: Mutex<ConnTable>,
    stats: Arc<TransportStats>,
}

/// The open connections (their writers and the policy's table), by connection number; the core sends
/// through it and sweeps it.
#[derive(Clone)]
pub struct TcpConnections {
    inner: Arc<Inner>,
}

impl Default for TcpConnections {
    fn default() -> Self {
        TcpConnections::new(TcpLimits::default(), Arc::default())
    }
}

impl TcpConnections {
    /// No connections yet; refusals, closes and drops are counted in `stats`.
    pub fn new(limits: TcpLimits, stats: Arc<TransportStats>) -> TcpConnections {
        TcpConnections {
            inner: Arc::new(Inner {
                // Sharded map: touched once per SIP message over TCP and per connection open/close
                // (never per RTP packet) by the core and the connection tasks at once.
                writers: DashMap::new(),
                table: Mutex::new(ConnTable::new(limits)),
                stats,
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, ConnTable> {
        // A poisoned lock means a panic while holding it: the table itself is still consistent enough
        // to go on (every method leaves it whole between statements).
        self.inner
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counters.
    pub fn stats(&self) -> &TransportStats {
        &self.inner.stats
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues bytes on a connection; false when it is gone (the peer closed it) or was closed now
    /// because its write queue is full (the peer does not read).
    pub fn send(&self, conn: u64, bytes: Arc<[u8]>) -> bool {
        let full = match self.inner.writers.get(&conn) {
            None => return false,
            Some(w) => match w.tx.try_send(bytes) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(_)) => true,
            },
        };
        if full {
            tracing::debug!(conn, "tcp write queue full: closing the connection");
            self.inner
                .stats
                .write_queue_full
                .fetch_add(1, Ordering::Relaxed);
            self.close(conn);
        }
        false
    }

    /// Closes the connections the policy finds expired at `now`; `in_use` says whether a binding or a
    /// dialog rides on a connection. Returns how many were closed.
    pub fn sweep(&self, now: Instant, in_use: impl FnMut(u64) -> bool) -> usize {
        let expired = self.table().expired(now, in_use);
        for &(conn, why) in &expired {
            tracing::debug!(conn, reason = why.as_str(), "closing tcp connection");
            self.inner.stats.count(why);
            self.close(conn);
        }
        expired.len()
    }

    fn close(&self, conn: u64) {
        if let Some((_, h)) = self.inner.writers.remove(&conn) {
            h.close.notify_one();
        }
        self.table().on_closed(conn);
    }

    fn max_message_bytes(&self) -> usize {
        self.table().limits().max_message_bytes
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// How long the accept loop rests after an `accept` error (EMFILE, ENFILE, ENOBUFS): doubling from the
/// first to the last while errors go on, so a process out of descriptors does not spin.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// Accepts connections forever, spawning a reader and a writer for each one the policy admits.
pub async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<TcpInbound>,
    conns: TcpConnections,
) {
    let mut backoff: Option<Duration> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(err) => {
                let wait = match backoff {
                    None => {
                        // Logged once per run of errors, not once per failed accept.
                        tracing::warn!(%err, "tcp accept failed: backing off until it succeeds");
                        ACCEPT_BACKOFF.0
                    }
                    Some(d) => (d * 2).min(ACCEPT_BACKOFF.1),
                };
                conns
                    .inner
                    .stats
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                backoff = Some(wait);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if backoff.take().is_some() {
            tracing::info!("tcp accept works again");
        }
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        if let Err(why) = conns.table().admit(crate::clock::now(), conn, peer.ip()) {
            // Dropping the stream closes it; the count says why.
            tracing::debug!(%peer, reason = why.as_str(), "tcp connection refused");
            conns.inner.stats.count(why);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            conns.table().on_closed(conn);
            continue; // the connection is already gone
        };
        let (reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(WRITE_QUEUE);
        let close = Arc::new(Notify::new());
        conns.inner.writers.insert(
            conn,
            ConnHandle {
                tx: tx.clone(),
                close: close.clone(),
            },
        );
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let reading = Reading {
            conn,
            peer,
            local,
            inbound: inbound.clone(),
            conns: conns.clone(),
            reply: tx,
        };
        tokio::spawn(async move {
            tokio::select! {
                () = reading.run(reader) => {}
                () = close.notified() => {}
            }
        });
    }
}

/// One connection's reader.
struct Reading {
    conn: u64,
    peer: SocketAddr,
    local: SocketAddr,
    inbound: mpsc::Sender<TcpInbound>,
    conns: TcpConnections,
    /// The connection's own write queue, for the `503` of an INVITE the core queue could not take.
    reply: mpsc::Sender<Arc<[u8]>>,
}

impl Reading {
    async fn run(self, mut reader: tokio::net::tcp::OwnedReadHalf) {
        let mut framer = StreamFramer::with_limit(self.conns.max_message_bytes());
        let mut buf = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_message() {
                    Ok(Some(bytes)) => {
                        self.conns
                            .table()
                            .on_message(crate::clock::now(), self.conn);
                        if !self.hand_over(bytes) {
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(err) => {
                        // A stream that cannot be framed (or a message over the size limit) cannot be
                        // resynchronised: close it.
                        tracing::debug!(peer = %self.peer, %err, "closing tcp connection");
                        self.conns
                            .inner
                            .stats
                            .unframeable
                            .fetch_add(1, Ordering::Relaxed);
                        break 'read;
                    }
                }
            }
            if framer.take_keepalive() {
                self.conns
                    .table()
                    .on_keepalive(crate::clock::now(), self.conn);
            }
            if framer.take_pings() > 0 {
                // RFC 5626 §4.4.1: a pong for the ping. One per read however many pings it held, on
                // the bounded write queue (full: no pong, the peer's next ping is answered).
                let _ = self.reply.try_send(Arc::from(&b"\r\n"[..]));
            }
        }
        self.conns.close(self.conn);
    }

    /// Queues one message for the core; false when the core is gone. A full queue refuses an INVITE
    /// with `503` + Retry-After and drops anything else (counted either way), so the queue stays
    /// bounded however fast connections send.
    fn hand_over(&self, bytes: Vec<u8>) -> bool {
        let msg = TcpInbound {
            conn: self.conn,
            peer: self.peer,
            local: self.local,
            bytes,
        };
        match self.inbound.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let stats = self.conns.stats();
                match overload_answer(&msg.bytes) {
                    Some(answer) => {
                        stats.overload_503.fetch_add(1, Ordering::Relaxed);
                        let _ = self.reply.try_send(Arc::from(answer));
                    }
                    None => {
                        stats.overload_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                true
            }
        }
    }
}

/// The stateless `503` + Retry-After for a new INVITE the core has no room for (`None` for anything
/// else, which is dropped: the peer retransmits or gives up).
pub fn overload_answer(bytes: &[u8]) -> Option<Vec<u8>> {
    use crate::sip::message::{parse_stream_message, Method, SipMessage};
    let SipMessage::Request(request) = parse_stream_message(bytes).ok()? else {
        return None;
    };
    if request.method != Method::Invite || request.to().tag().is_some() {
        return None;
    }
    let reply = crate::sip::Reply::ServiceUnavailable {
        retry_after: OVERLOAD_RETRY_AFTER,
    };
    Some(reply.to_response(&request, None).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_invite_gets_503_with_retry_after_anything_else_nothing() {
        let invite = b"INVITE sip:1@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK1\r\n\
            From: <sip:a@192.0.2.2>;tag=1\r\nTo: <sip:1@192.0.2.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let answer = overload_answer(invite).expect("an INVITE is answered");
        let text = String::from_utf8(answer).expect("ascii");
        assert!(text.starts_with("SIP/2.0 503 "), "{text}");
        assert!(text.contains("Retry-After: 5\r\n"), "{text}");
        assert!(text.contains("Call-ID: c1\r\n"), "{text}");
        let bye = String::from_utf8_lossy(invite)
            .replace("INVITE sip", "BYE sip")
            .replace("1 INVITE", "2 BYE");
        assert_eq!(overload_answer(bye.as_bytes()), None);
        let reinvite = String::from_utf8_lossy(invite)
            .replace("To: <sip:1@192.0.2.1>", "To: <sip:1@192.0.2.1>;tag=x");
        assert_eq!(overload_answer(reinvite.as_bytes()), None);
        assert_eq!(overload_answer(b"garbage"), None);
    }
}
