//! A fake media engine for the simulated network: records every media command the call layer issues
//! (Open, Configure, Play, Stop, Close) per session, and runs each session's real
//! `media::MediaSession` on the simulated clock exactly as the media thread does (Open → `new`,
//! Configure → `update_remote`, Play → `play`, Stop → `stop_playout`, Close → drop), so prompts end —
//! or pause on hold — when the real pacing says, and every RTP packet the session would send is counted.
//! An Open can be made to find its port busy (`refuse_opens`), reported as the shell does. No RTP
//! arrives: a test injects what the caller's RTP would cause (first packet, keys, silence), and the
//! session's own `RtpTimeout` (no caller RTP is simulated) is not reported.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use helpline::call::{MediaCommand, MediaId};
use helpline::media::session::{MediaConfig, MediaEvent, MediaSession};

/// What one media session was told and did, in order.
#[derive(Debug)]
pub struct MediaLog {
    /// The session.
    pub id: MediaId,
    /// The RTP port it was opened on.
    pub port: u16,
    /// When it was opened.
    pub opened_at: Instant,
    /// Every configuration, the one it was opened with first.
    pub configs: Vec<(Instant, MediaConfig)>,
    /// Every prompt it was told to play.
    pub plays: Vec<(Instant, String)>,
    /// Every Stop.
    pub stops: Vec<Instant>,
    /// Every prompt that played to its end (as reported to the call layer).
    pub finished: Vec<(Instant, String)>,
    /// Every RTP packet the session sent: when, and where to.
    pub packets: Vec<(Instant, SocketAddr)>,
    /// When it was closed.
    pub closed_at: Option<Instant>,
    session: Option<MediaSession>,
    /// Names of prompts playing (Play not yet followed by Stop, another Play or its end).
    playing: Option<String>,
}

impl MediaLog {
    /// The configuration in force now.
    pub fn config(&self) -> &MediaConfig {
        &self
            .configs
            .last()
            .expect("a session is opened with a configuration")
            .1
    }

    /// Names of the prompts played, in order.
    pub fn played(&self) -> Vec<&str> {
        self.plays.iter().map(|(_, n)| n.as_str()).collect()
    }

    /// The prompt playing now, if any.
    pub fn playing(&self) -> Option<&str> {
        self.playing.as_deref()
    }

    /// RTP packets sent after `from`, up to and including `to`.
    pub fn packets_between(&self, from: Instant, to: Instant) -> usize {
        self.packets
            .iter()
            .filter(|(at, _)| *at > from && *at <= to)
            .count()
    }
}

/// The fake engine: one [`MediaLog`] per session.
#[derive(Default)]
pub struct FakeMedia {
    /// Every session ever opened, by id.
    pub sessions: BTreeMap<MediaId, MediaLog>,
    /// Ids in the order they were opened.
    pub opened: Vec<MediaId>,
    /// Every command in order, as text (`open 20000`, `play welcome` …), with its time.
    pub log: Vec<(Instant, MediaId, String)>,
    /// Every bridge asked for (caller's session, agent's session), with its time.
    pub bridges: Vec<(Instant, MediaId, MediaId)>,
    /// How many of the next Opens find their port busy (reported `BindFailed`, as the shell does).
    pub refuse_opens: usize,
    /// The ports of the Opens refused so, with when.
    pub refused: Vec<(Instant, u16)>,
    /// Events to report, in order.
    events: Vec<(MediaId, MediaEvent)>,
}

impl FakeMedia {
    /// Applies one command from the call layer.
    pub fn handle(&mut self, now: Instant, command: MediaCommand) {
        if let MediaCommand::Bridge { a, b } = command {
            self.live(a, "bridge");
            self.live(b, "bridge");
            // The engine keeps a group on one media thread; a bridge across groups is refused.
            assert_eq!(
                a.group(),
                b.group(),
                "a bridge joins sessions of one call's media group"
            );
            self.log.push((now, a, format!("bridge {a:?} {b:?}")));
            self.bridges.push((now, a, b));
            return;
        }
        let id = match &command {
            MediaCommand::Open { id, .. }
            | MediaCommand::Configure { id, .. }
            | MediaCommand::Play { id, .. }
            | MediaCommand::Stop { id }
            | MediaCommand::Close { id } => *id,
            MediaCommand::Bridge { .. } => unreachable!("handled above"),
        };
        match command {
            MediaCommand::Open { id, port, .. } if self.refuse_opens > 0 => {
                self.refuse_opens -= 1;
                self.log.push((now, id, format!("open {port} refused")));
                self.refused.push((now, port));
                self.events.push((id, MediaEvent::BindFailed { port }));
                return;
            }
            MediaCommand::Open { id, port, cfg } => {
                assert!(
                    !self.sessions.contains_key(&id),
                    "media session {id:?} opened twice"
                );
                self.log.push((now, id, format!("open {port}")));
                self.opened.push(id);
                self.sessions.insert(
                    id,
                    MediaLog {
                        id,
                        port,
                        opened_at: now,
                        session: Some(MediaSession::new(now, cfg.clone())),
                        configs: vec![(now, cfg)],
                        plays: Vec::new(),
                        stops: Vec::new(),
                        finished: Vec::new(),
                        packets: Vec::new(),
                        closed_at: None,
                        playing: None,
                    },
                );
            }
            MediaCommand::Configure { id, cfg } => {
                self.log.push((now, id, format!("configure {cfg:?}")));
                let s = self.live(id, "configure");
                if let Some(session) = s.session.as_mut() {
                    session.update_remote(now, &cfg);
                }
                s.configs.push((now, cfg));
            }
            MediaCommand::Play { id, prompt } => {
                self.log.push((now, id, format!("play {}", prompt.name)));
                let s = self.live(id, "play");
                s.plays.push((now, prompt.name.clone()));
                s.playing = Some(prompt.name.clone());
                if let Some(session) = s.session.as_mut() {
                    session.play(now, prompt);
                }
            }
            MediaCommand::Stop { id } => {
                self.log.push((now, id, "stop".to_owned()));
                let s = self.live(id, "stop");
                s.stops.push(now);
                s.playing = None;
                if let Some(session) = s.session.as_mut() {
                    session.stop_playout(now);
                }
            }
            MediaCommand::Close { id } => {
                self.log.push((now, id, "close".to_owned()));
                let s = self.live(id, "close");
                s.closed_at = Some(now);
                s.playing = None;
                s.session = None;
            }
            MediaCommand::Bridge { .. } => unreachable!("handled above"),
        }
        self.collect(now, id);
    }

    fn live(&mut self, id: MediaId, what: &str) -> &mut MediaLog {
        let s = self
            .sessions
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{what} for media session {id:?} that was never opened"));
        assert!(
            s.closed_at.is_none(),
            "{what} for media session {id:?} after it was closed"
        );
        s
    }

    /// Sends what the session has due and takes its events (as the media thread's `run_due` does).
    fn collect(&mut self, now: Instant, id: MediaId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(session) = s.session.as_mut() else {
            return;
        };
        let mut buf = [0u8; 1500];
        while let Some((dst, _)) = session.poll_transmit(now, &mut buf) {
            s.packets.push((now, dst));
        }
        while let Some(event) = session.poll_event() {
            match event {
                MediaEvent::PromptFinished { ref name } => {
                    s.finished.push((now, name.clone()));
                    if s.playing.as_deref() == Some(name) {
                        s.playing = None;
                    }
                    self.events.push((id, event));
                }
                // No caller RTP is simulated: silence is the test's to inject.
                MediaEvent::RtpTimeout => {}
                other => self.events.push((id, other)),
            }
        }
    }

    /// When the next session wants running (a frame due, a prompt's end).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.session.as_ref()?.poll_timeout())
            .min()
    }

    /// Runs every session that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<MediaId> = self
            .sessions
            .values()
            .filter(|s| {
                s.session
                    .as_ref()
                    .and_then(MediaSession::poll_timeout)
                    .is_some_and(|t| t <= now)
            })
            .map(|s| s.id)
            .collect();
        for id in due {
            if let Some(session) = self.sessions.get_mut(&id).and_then(|s| s.session.as_mut()) {
                session.handle_timeout(now);
            }
            self.collect(now, id);
        }
    }

    /// The next event for the call layer.
    pub fn poll_event(&mut self) -> Option<(MediaId, MediaEvent)> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// The session opened on `port`.
    pub fn by_port(&self, port: u16) -> Option<&MediaLog> {
        self.sessions.values().find(|s| s.port == port)
    }

    /// A session by id.
    pub fn session(&self, id: MediaId) -> &MediaLog {
        self.sessions
            .get(&id)
            .unwrap_or_else(|| panic!("no media session {id:?}"))
    }
}
