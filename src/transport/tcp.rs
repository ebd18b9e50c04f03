//! SIP over TCP: the accept loop and one reader/writer pair per connection; messages are framed by
//! Content-Length and handed to the core as whole messages. It does not parse SIP beyond framing.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::framing::StreamFramer;

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

/// Writers of the open connections, by connection number; the core sends through it.
#[derive(Clone, Default)]
pub struct TcpConnections {
    // Sharded map: touched once per SIP message over TCP and per connection open/close (never per RTP
    // packet) by the core and the connection tasks at once.
    writers: Arc<DashMap<u64, mpsc::UnboundedSender<Arc<[u8]>>>>,
}

impl TcpConnections {
    /// Queues bytes on a connection; false when it is gone (the peer closed it).
    pub fn send(&self, conn: u64, bytes: Arc<[u8]>) -> bool {
        self.writers
            .get(&conn)
            .is_some_and(|w| w.send(bytes).is_ok())
    }

    fn insert(&self, conn: u64, tx: mpsc::UnboundedSender<Arc<[u8]>>) {
        self.writers.insert(conn, tx);
    }

    fn remove(&self, conn: u64) {
        self.writers.remove(&conn);
    }
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Accepts connections forever, spawning a reader and a writer for each.
pub async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::UnboundedSender<TcpInbound>,
    conns: TcpConnections,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(err) => {
                tracing::warn!(%err, "tcp accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue; // the connection is already gone
        };
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let (mut reader, mut writer) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<[u8]>>();
        conns.insert(conn, tx);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let inbound = inbound.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let mut framer = StreamFramer::new();
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
                            if inbound
                                .send(TcpInbound {
                                    conn,
                                    peer,
                                    local,
                                    bytes,
                                })
                                .is_err()
                            {
                                break 'read;
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            // A stream that cannot be framed cannot be resynchronised: close it.
                            tracing::debug!(%peer, %err, "closing tcp connection");
                            break 'read;
                        }
                    }
                }
            }
            conns.remove(conn);
        });
    }
}
