//! The TCP connection policy (sans-IO): which new connection is admitted (a cap in total and per source
//! address), and which open connection is to be closed — one that sent no complete SIP message within
//! the first-message deadline (slow loris), or one idle for longer than the idle timeout that carries no
//! registration binding and no dialog. CRLF keep-alives (RFC 5626 §3.5.1) count as activity.
//!
//! It decides only: time is an argument, whether a connection is in use is asked of the caller (the
//! signalling core knows the bindings and dialogs), and the accept loop and the readers do the I/O.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::guard::Cidr;

/// The limits (flags of `serve`).
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Most connections open at once; a connection beyond it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Most connections open at once from one source address (allow-listed sources are not capped).
    pub max_per_source: usize,
    /// A connection with no SIP message, keep-alive, binding or dialog for this long is closed.
    pub idle: Duration,
    /// A connection that has not sent one complete SIP message this long after it opened is closed.
    pub first_message: Duration,
    /// Largest SIP message on a connection; a longer one closes the connection.
    pub max_message_bytes: usize,
    /// Sources never capped (the guard's allow-list).
    pub allow: Vec<Cidr>,
}

impl Default for TcpLimits {
    /// The defaults of `helpline serve`: room for thousands of phones, 64 connections per address
    /// (a NAT of a small office), an idle timeout above the 120 s CRLF keep-alive interval phones use
    /// (RFC 5626 §4.4.1), and 10 s to send the first message.
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 64,
            idle: Duration::from_secs(300),
            first_message: Duration::from_secs(10),
            max_message_bytes: super::framing::MAX_MESSAGE_BYTES,
            allow: Vec::new(),
        }
    }
}

/// Why a connection was refused or closed (the counters' reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Closed {
    /// Refused at accept: the total cap was reached.
    TotalCap,
    /// Refused at accept: its source had its cap of connections.
    SourceCap,
    /// No complete SIP message within the first-message deadline.
    FirstMessage,
    /// Idle past the idle timeout, with no binding and no dialog on it.
    Idle,
}

impl Closed {
    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::TotalCap => "tcp-total-cap",
            Closed::SourceCap => "tcp-source-cap",
            Closed::FirstMessage => "tcp-first-message",
            Closed::Idle => "tcp-idle",
        }
    }
}

#[derive(Debug)]
struct Conn {
    source: IpAddr,
    /// When the first message is due; `None` once one has come.
    first_due: Option<Instant>,
    last_activity: Instant,
}

/// The open connections and what the policy knows of each.
#[derive(Debug)]
pub struct ConnTable {
    limits: TcpLimits,
    conns: HashMap<u64, Conn>,
    per_source: HashMap<IpAddr, usize>,
}

impl ConnTable {
    /// An empty table.
    pub fn new(limits: TcpLimits) -> ConnTable {
        ConnTable {
            limits,
            conns: HashMap::new(),
            per_source: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &TcpLimits {
        &self.limits
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A connection was accepted: admitted (and tracked from `now`) or refused with the reason.
    pub fn admit(&mut self, now: Instant, conn: u64, source: IpAddr) -> Result<(), Closed> {
        let allowed = self.limits.allow.iter().any(|c| c.contains(source));
        if !allowed {
            if self.conns.len() >= self.limits.max_connections {
                return Err(Closed::TotalCap);
            }
            if self.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_per_source {
                return Err(Closed::SourceCap);
            }
        }
        *self.per_source.entry(source).or_default() += 1;
        self.conns.insert(
            conn,
            Conn {
                source,
                first_due: Some(now + self.limits.first_message),
                last_activity: now,
            },
        );
        Ok(())
    }

    /// A complete SIP message arrived on the connection.
    pub fn on_message(&mut self, now: Instant, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.first_due = None;
            c.last_activity = now;
        }
    }

    /// A CRLF keep-alive arrived (RFC 5626 §3.5.1): the connection is alive, but it still owes its
    /// first message if it has sent none (a loris cannot live on keep-alives).
    pub fn on_keepalive(&mut self, now: Instant, conn: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_activity = now;
        }
    }

    /// The connection is gone (either end closed it).
    pub fn on_closed(&mut self, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(n) = self.per_source.get_mut(&c.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&c.source);
            }
        }
    }

    /// The connections to close at `now`, with the reason. `in_use` says whether a registration binding
    /// or a dialog rides on a connection; one that does is not idle (its idle clock restarts).
    /// Removes them from the table.
    pub fn expired(
        &mut self,
        now: Instant,
        mut in_use: impl FnMut(u64) -> bool,
    ) -> Vec<(u64, Closed)> {
        let idle = self.limits.idle;
        let mut out = Vec::new();
        for (&id, c) in &mut self.conns {
            if c.first_due.is_some_and(|due| now >= due) {
                out.push((id, Closed::FirstMessage));
            } else if now.saturating_duration_since(c.last_activity) >= idle {
                if in_use(id) {
                    c.last_activity = now;
                } else {
                    out.push((id, Closed::Idle));
                }
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        for (id, _) in &out {
            self.on_closed(*id);
        }
        out
    }

    /// Connections open from `source`.
    pub fn from_source(&self, source: IpAddr) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TcpLimits {
        TcpLimits {
            max_connections: 4,
            max_per_source: 2,
            idle: Duration::from_secs(60),
            first_message: Duration::from_secs(5),
            max_message_bytes: 1024,
            allow: vec!["10.0.0.0/8".parse().expect("literal cidr")],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal address")
    }

    #[test]
    fn caps_in_total_and_per_source_and_closing_frees_a_place() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(limits());
        assert_eq!(t.admit(t0, 1, ip("192.0.2.1")), Ok(()));
        assert_eq!(t.admit(t0, 2, ip("192.0.2.1")), Ok(()));
        assert_eq!(t.admit(t0, 3, ip("192.0.2.1")), Err(Closed::SourceCap));
        assert_eq!(t.admit(t0, 4, ip("192.0.2.2")), Ok(()));
        assert_eq!(t.admit(t0, 5, ip("192.0.2.3")), Ok(()));
        assert_eq!(t.admit(t0, 6, ip("192.0.2.4")), Err(Closed::TotalCap));
        // Allow-listed sources are never capped, not even by the total.
        assert_eq!(t.admit(t0, 7, ip("10.1.2.3")), Ok(()));
        assert_eq!(t.admit(t0, 8, ip("10.1.2.3")), Ok(()));
        assert_eq!(t.admit(t0, 9, ip("10.1.2.3")), Ok(()));
        t.on_closed(1);
        t.on_closed(1); // twice is harmless
        assert_eq!(t.from_source(ip("192.0.2.1")), 1);
        t.on_closed(7);
        t.on_closed(8);
        t.on_closed(9);
        assert_eq!(t.admit(t0, 10, ip("192.0.2.1")), Ok(()));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn first_message_deadline_keepalives_do_not_count() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(limits());
        t.admit(t0, 1, ip("192.0.2.1")).expect("room");
        t.admit(t0, 2, ip("192.0.2.1")).expect("room");
        t.on_message(t0 + Duration::from_secs(1), 2);
        for s in 1..5 {
            t.on_keepalive(t0 + Duration::from_secs(s), 1);
        }
        let none = |_| false;
        assert_eq!(t.expired(t0 + Duration::from_millis(4999), none), vec![]);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(5), none),
            vec![(1, Closed::FirstMessage)]
        );
        assert_eq!(t.from_source(ip("192.0.2.1")), 1);
    }

    #[test]
    fn idle_unless_in_use_and_keepalives_keep_alive() {
        let t0 = Instant::now();
        let mut t = ConnTable::new(limits());
        for conn in 1..=3 {
            t.admit(t0, conn, ip(&format!("192.0.2.{conn}")))
                .expect("room");
            t.on_message(t0, conn);
        }
        // 1 sends CRLF keep-alives every 30 s; 2 carries a binding; 3 is silent.
        t.on_keepalive(t0 + Duration::from_secs(30), 1);
        t.on_keepalive(t0 + Duration::from_secs(59), 1);
        let in_use = |c| c == 2;
        assert_eq!(t.expired(t0 + Duration::from_secs(59), in_use), vec![]);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(60), in_use),
            vec![(3, Closed::Idle)]
        );
        // 1 keeps sending keep-alives; 2's binding ends: idle a full timeout after it was last in use.
        t.on_keepalive(t0 + Duration::from_secs(100), 1);
        let unused = |_| false;
        assert_eq!(t.expired(t0 + Duration::from_secs(119), unused), vec![]);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(120), unused),
            vec![(2, Closed::Idle)]
        );
        assert_eq!(t.expired(t0 + Duration::from_secs(159), unused), vec![]);
        assert_eq!(
            t.expired(t0 + Duration::from_secs(160), unused),
            vec![(1, Closed::Idle)]
        );
        assert!(t.is_empty());
    }
}
