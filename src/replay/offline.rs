//! Offline replay: one scripted call through helpline's real call layer (`call::Calls`: SIP, dialogs,
//! IVR engine) and a real `media::MediaSession` per media session it opens, all in-process on a
//! simulated clock that jumps to the earliest deadline. No sockets, files or clock reads: the menus,
//! prompts, wall time and the base instant come in as arguments.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::call::{Calls, CallsConfig, Cdr, MediaCommand, MediaId, WallClock};
use crate::ivr::MenuSet;
use crate::media::session::MediaSession;
use crate::prompts::PromptStore;
use crate::replay::caller::{CallerConfig, CallerReport, Carry, ReplayCaller};
use crate::replay::report::CallRecord;
use crate::replay::script::Script;
use crate::replay::trace::TraceTransport;
use crate::sip::endpoint::{Peer, Transport};

/// Simulated time after which an offline replay stops, whatever is still going on.
const MAX_SIMULATED: Duration = Duration::from_secs(3 * 3600);

/// What an offline replay runs against.
#[derive(Clone)]
pub struct OfflineSetup {
    /// The compiled menus.
    pub menus: Arc<MenuSet>,
    /// The prompts (their lengths decide when each prompt ends).
    pub prompts: PromptStore,
    /// Wall time of the call's start (opening hours, CDR times).
    pub wall: DateTime<Utc>,
    /// Seed of the caller and of the call layer.
    pub seed: u64,
}

/// The result of one replayed call.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What the replaying caller saw.
    pub caller: CallerReport,
    /// The server's record of the call, when one was found.
    pub record: Option<CallRecord>,
}

/// helpline's address in the simulation, and the caller's.
fn addresses(v6: bool) -> (SocketAddr, SocketAddr, SocketAddr) {
    let parse = |s: &str| s.parse::<SocketAddr>().expect("literal address");
    if v6 {
        (
            parse("[::1]:5060"),
            parse("[::2]:5062"),
            parse("[::2]:40000"),
        )
    } else {
        (
            parse("127.0.0.1:5060"),
            parse("127.0.0.2:5062"),
            parse("127.0.0.2:40000"),
        )
    }
}

/// Sessions the call layer opened, by id and by RTP port.
#[derive(Default)]
struct Media {
    sessions: HashMap<MediaId, MediaSession>,
    ports: HashMap<u16, MediaId>,
}

impl Media {
    fn carry_out(&mut self, now: Instant, command: MediaCommand) {
        match command {
            MediaCommand::Open { id, port, cfg } => {
                self.sessions
                    .entry(id)
                    .or_insert_with(|| MediaSession::new(now, cfg));
                self.ports.insert(port, id);
            }
            MediaCommand::Configure { id, cfg } => match self.sessions.get_mut(&id) {
                Some(s) => s.update_remote(now, &cfg),
                None => {
                    self.sessions.insert(id, MediaSession::new(now, cfg));
                }
            },
            MediaCommand::Play { id, prompt } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.play(now, prompt);
                }
            }
            MediaCommand::Stop { id } => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.stop_playout(now);
                }
            }
            MediaCommand::Close { id } => {
                self.sessions.remove(&id);
                self.ports.retain(|_, v| *v != id);
            }
            // No agent answers offline, so there is nothing to bridge.
            MediaCommand::Bridge { .. } => {}
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.poll_timeout())
            .min()
    }
}

/// Replays `script` offline; `base` is the simulated clock's origin (any instant: it is only added to).
pub fn replay(script: &Script, setup: &OfflineSetup, base: Instant) -> Outcome {
    let (server, caller_sip, caller_rtp) = addresses(script.server.is_ipv6());
    let mut cfg = CallsConfig::new(
        server,
        WallClock {
            instant: base,
            wall: setup.wall,
        },
    );
    cfg.rtp_ports = (20000, 20999);
    let mut calls = Calls::new(cfg, setup.menus.clone(), setup.prompts.clone(), setup.seed);
    let transport = match script.transport {
        TraceTransport::Udp => Transport::Udp,
        TraceTransport::Tcp => Transport::Tcp(1),
    };
    let peer = Peer {
        transport,
        addr: caller_sip,
        local: server,
    };
    let mut caller = ReplayCaller::new(
        CallerConfig {
            target: server,
            local_sip: caller_sip,
            local_rtp: caller_rtp,
            transport: script.transport,
            t1: Duration::from_millis(500),
            seed: setup.seed,
        },
        script.clone(),
    );
    let mut media = Media::default();
    let mut cdrs: Vec<Cdr> = Vec::new();
    let mut now = base;
    caller.start(now);
    let mut buf = vec![0u8; 2048];
    loop {
        // Deliver everything every party has to say until nobody says anything more.
        loop {
            let mut moved = false;
            while let Some(t) = caller.poll_transmit() {
                moved = true;
                match t.carry {
                    Carry::Sip => calls.handle_sip(now, peer, &t.bytes),
                    Carry::Rtp => {
                        if let Some(s) = media
                            .ports
                            .get(&t.to.port())
                            .and_then(|id| media.sessions.get_mut(id))
                        {
                            s.handle_rtp(now, caller_rtp, &t.bytes);
                        }
                    }
                }
            }
            while let Some(cmd) = calls.poll_media() {
                moved = true;
                media.carry_out(now, cmd);
            }
            while let Some(t) = calls.poll_transmit() {
                moved = true;
                if t.to.addr == caller_sip {
                    caller.handle_sip(now, server, &t.bytes);
                }
            }
            let mut events = Vec::new();
            for (id, s) in media.sessions.iter_mut() {
                while let Some((dst, n)) = s.poll_transmit(now, &mut buf) {
                    if dst == caller_rtp {
                        caller.handle_rtp(now, dst, &buf[..n]);
                    }
                }
                while let Some(e) = s.poll_event() {
                    events.push((*id, e));
                }
            }
            for (id, e) in events {
                moved = true;
                calls.handle_media(now, id, e);
            }
            while let Some(cdr) = calls.poll_cdr() {
                moved = true;
                cdrs.push(cdr);
            }
            if !moved {
                break;
            }
        }
        let ours = |c: &Cdr| c.call_id == caller.call_id();
        if caller.is_done() && (calls.call_count() == 0 || cdrs.iter().any(ours)) {
            break;
        }
        let next = [
            caller.poll_timeout(),
            calls.poll_timeout(),
            media.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            break;
        };
        if next > base + MAX_SIMULATED {
            break;
        }
        now = now.max(next);
        caller.handle_timeout(now);
        calls.handle_timeout(now);
        for s in media.sessions.values_mut() {
            s.handle_timeout(now);
        }
    }
    calls.finish_all(now);
    while let Some(cdr) = calls.poll_cdr() {
        cdrs.push(cdr);
    }
    let record = cdrs
        .iter()
        .find(|c| c.call_id == caller.call_id())
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| CallRecord::from_json(&v));
    Outcome {
        caller: caller.report(),
        record,
    }
}
