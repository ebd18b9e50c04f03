//! Routed callers and the agents they are offered to: a `route` puts the caller in [`Queues`]; an offer
//! rings every registered contact of the agent with an INVITE of ours (a UAC leg each, the caller's
//! context in `X-Helpline-*` headers, the caller's number in From and P-Asserted-Identity, an SDP offer
//! on a port of the agent side's own, sent once the shell has bound that port: a busy one is replaced
//! first, and if none binds the offer fails); the first 2xx is ACKed and the two media sessions bridged, the
//! other contacts get CANCEL; refusals, failures and the ring timeout go back to presence and the queue
//! moves on. Either side's BYE ends the other. The run order of presence and queues is `queue`'s.
//!
//! A 200 without a usable SDP answer is ACKed and BYE'd and counts as that contact failing. An RTP
//! timeout on the agent side of a bridged call ends the call on both sides.
//!
//! Ring-all: the queue gives one offer per free agent for the same caller, and every one of them
//! rings (`QueuedCall::ringing` is the set); the first answer wins and every other leg gets CANCEL
//! (presence frees those agents at once). A 2xx from an agent no longer in the set — cancelled,
//! withdrawn, timed out — is ACKed and BYE'd; that agent is already idle.
//!
//! Leaving a line: every exit is recorded in the CDR's `queues_tried`; an overflow or a `max_wait`
//! timeout moves the caller into the overflow queue (not tried yet, with their priority) or plays the
//! overflow prompts and releases them (see `move_on`).
//!
//! What the caller hears: the caller's leg is already answered (the IVR ran), so a 180/183 from the
//! agent cannot be relayed as SIP; instead the caller hears the end of the menu's prompts, then
//! `connecting` as they join the line, then the queue's music looped (with position and wait
//! announcements from `Queues::poll_announce` spoken over it), in-band ringback while an agent's
//! phone rings (the IVR side plays them, see `IvrCall::set_agent_ringing`), and nothing of ours once
//! bridged.
//!
//! It does not choose agents (the queue does), keep presence (`agent::presence`), build the INVITE,
//! ACK or bridge itself (`uac_leg` does, for transfer legs too) or relay RTP (the media engine does, on
//! [`crate::call::MediaCommand::Bridge`]); legs that outlive their call are `late_legs`'.
use std::collections::BTreeSet;
use std::time::Instant;

use crate::agent::presence::{AgentEvent, AgentInput, OfferOutcome, RejectReason};
use crate::agent::{AgentId, QueueName};
use crate::call::cdr::EndReason;
use crate::call::cdr::QueueTried;
use crate::call::leg::{Leg, LegId, LegKind, UacLeg, UacState};
use crate::call::state::{media_config_from, AgentMedia, QueuedCall};
use crate::call::uac_leg::{ack_2xx, answer_uac_in_dialog, send_uac_bye};
use crate::call::{CallKey, Calls, MediaCommand};
use crate::media::session::MediaEvent;
use crate::queue::{Join, Offer, OverflowTarget, QueueEvent, QueueExit, QueueResult, WhenNoAgents};
use crate::sdp::{self, MediaCaps};
use crate::sip::endpoint::TxId;
use crate::sip::message::Method;
use crate::sip::message::{Request, Response};
use crate::sip::Reply;

/// How an agent's refusal counts for presence.
fn reject_reason(code: u16) -> RejectReason {
    match code {
        486 | 600 => RejectReason::Busy,
        603 => RejectReason::Declined,
        408 | 480 | 487 => RejectReason::NoAnswer,
        _ => RejectReason::Failed,
    }
}

impl Calls {
    /// The IVR routed the caller to `queue` at `priority`: into its line (which may overflow them at
    /// once, see `on_left_queue`). A queue nobody serving it is logged in for, that would let the caller
    /// wait without end (`when_no_agents = "wait"` and no `max_wait`), releases them after the last
    /// prompt with `queue_result` `no-agents`, as before queues could overflow.
    pub(crate) fn route_to_queue(
        &mut self,
        now: Instant,
        key: CallKey,
        queue: &str,
        priority: i32,
    ) {
        let name = QueueName::from(queue);
        let config = self.agents.queues.config_ref(&name);
        let endless = config.when_no_agents == WhenNoAgents::Wait && config.max_wait.is_none();
        let nobody = self.agents.presence.available_for(&name) == 0;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.ivr.cdr_mut().queue = Some(name.to_string());
        if nobody && endless {
            tracing::info!(call_id = %call.call_id, %name, "no agent logged in for the queue: releasing");
            let cdr = call.ivr.cdr_mut();
            cdr.queue_result = Some(QueueResult::NoAgents);
            cdr.queue_wait_ms = Some(0);
            cdr.queues_tried.push(QueueTried {
                queue: name.to_string(),
                result: QueueResult::NoAgents,
            });
            call.ivr.release_after_prompts();
            return self.after_call(now, key);
        }
        call.queued = Some(Box::new(QueuedCall {
            ringing: BTreeSet::new(),
            answered: None,
            talk_end: None,
            media: None,
            agent_sip_at: None,
            next_leg: 1,
            joined: false,
        }));
        self.join_queue(now, key, name, priority);
        self.after_call(now, key);
        self.run_queues(now);
    }

    /// Puts the caller in `queue`'s line (the first line they join plays `connecting`); the caller
    /// hears that queue's music. A caller turned away on joining gets a `Left` event instead.
    fn join_queue(&mut self, now: Instant, key: CallKey, queue: QueueName, priority: i32) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let (language, _) = call.ivr.context();
        let music = self.agents.queues.config_ref(&queue).music.clone();
        let join = Join { language, priority };
        let crate::call::agents::AgentSide {
            presence, queues, ..
        } = &mut self.agents;
        match queues.enqueue_with(now, presence, key, queue, join) {
            Ok(Some(position)) => {
                tracing::info!(position, "caller joined the queue");
                let first = call
                    .queued
                    .as_mut()
                    .is_some_and(|q| !std::mem::replace(&mut q.joined, true));
                if first {
                    call.ivr.enter_queue();
                }
                // After `connecting`, which the music waits for.
                call.ivr.set_hold_music(music);
            }
            Ok(None) => {} // turned away at once: the Left event says where to
            Err(e) => tracing::warn!(error = %e, "routed call already queued"),
        }
    }

    /// The run order of `queue`'s module doc: presence events to the queues, queue events (and
    /// announcements), offers, until nothing moves.
    pub(crate) fn run_queues(&mut self, now: Instant) {
        loop {
            while let Some(event) = self.agents.presence.poll_event() {
                self.live.agent_event(now, &event);
                let crate::call::agents::AgentSide {
                    presence, queues, ..
                } = &mut self.agents;
                queues.handle_agent_event_with(now, presence, &event);
                if let AgentEvent::OfferEnded {
                    agent,
                    call,
                    outcome: OfferOutcome::Withdrawn,
                } = &event
                {
                    self.cancel_agent(now, *call, agent);
                }
            }
            while let Some(event) = self.agents.queues.poll_event() {
                match event {
                    QueueEvent::RingTimeout { call, agent } => {
                        tracing::info!(%agent, "agent did not answer in time: next agent");
                        self.cancel_agent(now, call, &agent);
                    }
                    QueueEvent::Left(exit) => self.on_left_queue(now, exit),
                }
            }
            while let Some(announce) = self.agents.queues.poll_announce() {
                if let Some(call) = self.calls.get_mut(&announce.call) {
                    call.ivr
                        .announce(announce.position, announce.estimated_wait);
                    self.after_call(now, announce.call);
                }
            }
            self.drain_queue_log();
            let crate::call::agents::AgentSide {
                presence, queues, ..
            } = &mut self.agents;
            match queues.poll_offer(now, presence) {
                Some(offer) => self.ring(now, offer),
                None => break,
            }
        }
    }

    /// A caller out of the line: the CDR learns how (and `queues_tried` one more queue); agents still
    /// ringing are cancelled; an overflow or timeout moves the caller on.
    fn on_left_queue(&mut self, now: Instant, exit: QueueExit<CallKey>) {
        self.live.left(&exit);
        let Some(call) = self.calls.get_mut(&exit.call) else {
            return;
        };
        let cdr = call.ivr.cdr_mut();
        cdr.queue = Some(exit.queue.to_string());
        let before = cdr.queue_wait_ms.unwrap_or(0);
        cdr.queue_wait_ms = Some(before.saturating_add(exit.queue_wait_ms()));
        cdr.queue_result = Some(exit.result);
        cdr.queues_tried.push(QueueTried {
            queue: exit.queue.to_string(),
            result: exit.result,
        });
        for agent in &exit.ringing_all {
            self.cancel_agent(now, exit.call, agent);
        }
        if matches!(exit.result, QueueResult::Overflow | QueueResult::Timeout) {
            self.move_on(now, exit);
        }
    }

    /// An overflowing or timed-out caller goes where the queue says: into another queue not tried yet
    /// (with their priority), or hears the prompts given and is released; a queue already tried (two
    /// queues overflowing into each other) or no target releases them as a caller without agents.
    fn move_on(&mut self, now: Instant, exit: QueueExit<CallKey>) {
        let key = exit.call;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let tried: Vec<String> = call
            .ivr
            .cdr_mut()
            .queues_tried
            .iter()
            .map(|t| t.queue.clone())
            .collect();
        match exit.overflow_to {
            Some(OverflowTarget::Queue(next)) if !tried.iter().any(|t| t == next.as_str()) => {
                tracing::info!(from = %exit.queue, to = %next, result = exit.result.as_str(), "caller moves on to the overflow queue");
                self.join_queue(now, key, next, exit.priority);
            }
            Some(OverflowTarget::HangUp { prompts }) => {
                tracing::info!(queue = %exit.queue, result = exit.result.as_str(), "caller released after the overflow prompts");
                call.ivr.release_with_prompts(&prompts);
            }
            target => {
                tracing::info!(queue = %exit.queue, ?target, result = exit.result.as_str(), "caller released: nowhere left to go");
                call.ivr.release_with_prompts(&[]);
            }
        }
        self.after_call(now, key);
    }

    /// Rings every registered contact of the offer's agent. When the agent side's session is new, the
    /// INVITEs wait (`rings_waiting_for_port`) until the shell has bound its port: one found busy is
    /// replaced before any phone is offered it (as the caller's 200 waits for the caller's port).
    fn ring(&mut self, now: Instant, offer: Offer<CallKey>) {
        let key = offer.call;
        let bindings = self.agents.registrar.bindings(now, &offer.agent);
        let fresh = self
            .calls
            .get(&key)
            .and_then(|c| c.queued.as_ref())
            .is_some_and(|q| q.media.is_none());
        let media = self.agent_media(now, key);
        let ctx = media.and_then(|m| self.uac_context(key, Some(&offer.queue), &m));
        let Some(ctx) = ctx else {
            return self.offer_failed(now, key, &offer.agent, RejectReason::Failed);
        };
        if bindings.is_empty() {
            return self.offer_failed(now, key, &offer.agent, RejectReason::Failed);
        }
        let Some(queued) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) else {
            return;
        };
        queued.ringing.insert(offer.agent.clone());
        if fresh {
            self.rings_waiting_for_port.push_back((now, offer));
            return;
        }
        let mut contacts = 0;
        for binding in bindings {
            let Some(queued) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) else {
                return;
            };
            let leg_id = LegId(queued.next_leg);
            queued.next_leg += 1;
            let peer = binding.source;
            let Some(sent) = self.send_uac_invite(now, key, leg_id, peer, &binding.contact, &ctx)
            else {
                continue;
            };
            contacts += 1;
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            call.legs.push(Leg {
                id: leg_id,
                kind: LegKind::Agent(UacLeg {
                    agent: offer.agent.clone(),
                    invite: sent.invite,
                    invite_tx: sent.tx,
                    peer,
                    contact: sent.contact,
                    state: UacState::Calling { provisional: false },
                    bye_tx: None,
                }),
            });
        }
        tracing::info!(agent = %offer.agent, queue = %offer.queue, contacts, "ringing agent");
    }

    /// Sends the INVITEs of rings that waited for their side's port, once the shell has carried out
    /// that port's `Open` (it is no longer in `media_out`); an offer withdrawn meanwhile is dropped.
    pub(crate) fn ring_when_bound(&mut self) {
        for _ in 0..self.rings_waiting_for_port.len() {
            let Some((at, offer)) = self.rings_waiting_for_port.pop_front() else {
                return;
            };
            let queued = self.calls.get(&offer.call).and_then(|c| c.queued.as_ref());
            let Some(queued) = queued.filter(|q| q.ringing.contains(&offer.agent)) else {
                continue;
            };
            let Some(side) = queued.media.as_ref().map(|m| m.id) else {
                continue;
            };
            let unbound = self
                .media_out
                .iter()
                .any(|c| matches!(c, MediaCommand::Open { id, .. } if *id == side));
            if unbound {
                self.rings_waiting_for_port.push_back((at, offer));
            } else {
                self.ring(at, offer);
            }
        }
    }

    /// The agent side's port could not be bound. Before any INVITE named it, the side moves to
    /// another port (a few tries); otherwise the agents ringing with it are cancelled and their
    /// offers fail, so the queue offers the caller again on a new port. An answered agent's side
    /// cannot move: that call ends.
    pub(crate) fn on_agent_side_bind_failed(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(old) = call.queued.as_mut().and_then(|q| q.media.take()) else {
            return;
        };
        self.by_media.remove(&old.id);
        let answered = call.queued.as_ref().is_some_and(|q| q.answered.is_some());
        let invited = call
            .legs
            .iter()
            .any(|l| matches!(l.kind, LegKind::Agent(_)));
        if answered {
            tracing::warn!(
                port = old.port,
                "agent side's rtp port lost: releasing the call"
            );
            return self.hangup(now, key, EndReason::Error);
        }
        let waiting = self
            .rings_waiting_for_port
            .iter()
            .any(|(_, o)| o.call == key);
        if let Some(media) = (!invited && waiting)
            .then(|| self.reopen_side_media(now, key, &old))
            .flatten()
        {
            if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
                q.media = Some(media);
            }
            return;
        }
        tracing::warn!(
            port = old.port,
            "agent side's rtp port could not be bound: offers fail"
        );
        self.rings_waiting_for_port.retain(|(_, o)| o.call != key);
        let ringing: Vec<AgentId> = self
            .calls
            .get(&key)
            .and_then(|c| c.queued.as_ref())
            .map(|q| q.ringing.iter().cloned().collect())
            .unwrap_or_default();
        self.cancel_agent_legs(now, key);
        for agent in ringing {
            self.offer_failed(now, key, &agent, RejectReason::Failed);
        }
    }

    /// The agent side's media session (opened on the first offer, kept for the next ones); `None` when
    /// no port is free.
    fn agent_media(&mut self, now: Instant, key: CallKey) -> Option<AgentMedia> {
        let call = self.calls.get(&key)?;
        if let Some(m) = call.queued.as_ref()?.media.as_ref() {
            return Some(m.clone());
        }
        let media = self.open_side_media(now, key)?;
        let call = self.calls.get_mut(&key)?;
        call.queued.as_mut()?.media = Some(media.clone());
        Some(media)
    }

    /// Whether the caller hears ringback: an agent's phone rings with them, or no longer does.
    fn set_ringback(&mut self, now: Instant, key: CallKey, ringing: bool) {
        if let Some(call) = self.calls.get_mut(&key) {
            call.ivr.set_agent_ringing(ringing);
            self.after_call(now, key);
        }
    }

    /// Tells presence the offer did not become a call (the queue then tries the next agent).
    fn offer_failed(&mut self, now: Instant, key: CallKey, agent: &AgentId, why: RejectReason) {
        let nobody_rings = self
            .calls
            .get_mut(&key)
            .and_then(|c| c.queued.as_mut())
            .is_none_or(|q| {
                q.ringing.remove(agent);
                q.ringing.is_empty()
            });
        if nobody_rings {
            self.set_ringback(now, key, false);
        }
        let input = AgentInput::OfferRejected {
            agent: agent.clone(),
            call: key,
            why,
        };
        if let Err(e) = self.agents.presence.handle(now, input) {
            tracing::debug!(error = %e, "offer already ended");
        }
        self.run_queues(now);
    }

    /// CANCELs every agent leg of the call still ringing (the CANCEL waits for a 1xx, RFC 3261 §9.1).
    pub(crate) fn cancel_agent_legs(&mut self, now: Instant, key: CallKey) {
        self.cancel_legs(now, key, None);
    }

    /// CANCELs the legs of one agent of the call (a withdrawn or timed-out offer); the others of a
    /// ring-all go on ringing.
    fn cancel_agent(&mut self, now: Instant, key: CallKey, agent: &AgentId) {
        self.cancel_legs(now, key, Some(agent));
    }

    /// CANCELs the ringing legs of `agent` (every agent: `None`), who no longer ring for the caller.
    fn cancel_legs(&mut self, now: Instant, key: CallKey, agent: Option<&AgentId>) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(q) = call.queued.as_mut() {
            match agent {
                Some(a) => {
                    q.ringing.remove(a);
                }
                None => q.ringing.clear(),
            }
            if q.ringing.is_empty() {
                call.ivr.set_agent_ringing(false);
            }
        }
        let mut cancels = Vec::new();
        for leg in &mut call.legs {
            let LegKind::Agent(uac) = &mut leg.kind else {
                continue;
            };
            if agent.is_some_and(|a| *a != uac.agent) {
                continue;
            }
            if let UacState::Calling { provisional } = uac.state {
                uac.state = UacState::Cancelling { sent: provisional };
                if provisional {
                    cancels.push(uac.invite_tx);
                }
            }
        }
        for tx in cancels {
            self.endpoint.cancel(now, tx);
        }
        self.after_call(now, key);
    }

    /// A response on an agent leg: our BYE's, or our INVITE's.
    pub(crate) fn on_agent_response(
        &mut self,
        now: Instant,
        key: CallKey,
        leg: LegId,
        tx: TxId,
        response: &Response,
    ) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(uac) = call.legs.iter_mut().find(|l| l.id == leg) else {
            return;
        };
        let LegKind::Agent(uac) = &mut uac.kind else {
            return;
        };
        if uac.invite_tx != tx {
            return; // our BYE's answer: nothing waits for it
        }
        match response.code {
            100 => {}
            101..=199 => {
                if let UacState::Calling { provisional } = &mut uac.state {
                    *provisional = true;
                    // The caller's leg is answered: the ringing can only be heard in band.
                    let current = call
                        .queued
                        .as_ref()
                        .is_some_and(|q| q.ringing.contains(&uac.agent));
                    if current {
                        self.set_ringback(now, key, true);
                    }
                } else if let UacState::Cancelling { sent: false } = uac.state {
                    uac.state = UacState::Cancelling { sent: true };
                    self.endpoint.cancel(now, tx);
                }
            }
            200..=299 => self.on_agent_answer(now, key, leg, response),
            code => {
                let was_ringing = uac.is_ringing();
                let agent = uac.agent.clone();
                uac.state = UacState::Terminated;
                self.by_tx.remove(&tx);
                if was_ringing {
                    self.after_agent_leg_failed(now, key, &agent, reject_reason(code));
                }
            }
        }
    }

    /// Timer B on an agent INVITE: that phone is unreachable.
    pub(crate) fn on_agent_timeout(&mut self, now: Instant, key: CallKey, leg: LegId, tx: TxId) {
        let Some(uac) = self.calls.get_mut(&key).and_then(|c| c.agent_leg_mut(leg)) else {
            return;
        };
        if uac.invite_tx != tx {
            return;
        }
        let was_ringing = uac.is_ringing();
        let agent = uac.agent.clone();
        uac.state = UacState::Terminated;
        if was_ringing {
            self.after_agent_leg_failed(now, key, &agent, RejectReason::NoAnswer);
        }
    }

    /// One contact of the ringing agent failed: when none of theirs still rings, the offer failed.
    fn after_agent_leg_failed(
        &mut self,
        now: Instant,
        key: CallKey,
        agent: &AgentId,
        why: RejectReason,
    ) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let still_ringing = call.legs.iter().any(|l| match &l.kind {
            LegKind::Agent(u) => &u.agent == agent && u.is_ringing(),
            LegKind::Caller(_) | LegKind::Transfer(_) => false,
        });
        let current = call
            .queued
            .as_ref()
            .is_some_and(|q| q.ringing.contains(agent));
        if !still_ringing && current {
            tracing::info!(%agent, ?why, "agent did not take the call: next agent");
            self.offer_failed(now, key, agent, why);
        }
    }

    /// A 2xx to an agent INVITE: ACK it (each retransmission too); the first one answering the current
    /// offer wins — bridge, CANCEL the other contacts — and any other is hung up at once.
    fn on_agent_answer(&mut self, now: Instant, key: CallKey, leg: LegId, response: &Response) {
        let user_agent = self.cfg.server_header.clone();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(uac) = call.legs.iter_mut().find(|l| l.id == leg) else {
            return;
        };
        let LegKind::Agent(uac) = &mut uac.kind else {
            return;
        };
        let dialog = ack_2xx(
            &mut self.endpoint,
            &user_agent,
            &uac.invite,
            &uac.contact,
            uac.peer,
            response,
        );
        let agent = uac.agent.clone();
        let wins = uac.is_ringing()
            && call
                .queued
                .as_ref()
                .is_some_and(|q| q.ringing.contains(&agent));
        let again = matches!(uac.state, UacState::Confirmed { .. } | UacState::Ending);
        if !again {
            uac.state = UacState::Confirmed {
                dialog: Box::new(dialog),
            };
        }
        if again {
            return;
        }
        if !wins {
            tracing::info!(%agent, "agent leg answered too late: hanging it up");
            return self.bye_agent_leg(now, key, leg);
        }
        let Some(q) = call.queued.as_mut() else {
            return;
        };
        let Some(media) = q.media.clone() else {
            return;
        };
        if !self.negotiate_side(&media, response) {
            // Bridging would leave both sides in silence: this contact failed, like a 488 from it.
            tracing::warn!(%agent, "agent's 200 carried no usable SDP answer: hanging the leg up");
            self.bye_agent_leg(now, key, leg);
            return self.after_agent_leg_failed(now, key, &agent, RejectReason::Failed);
        }
        let input = AgentInput::Answered {
            agent: agent.clone(),
            call: key,
        };
        if let Err(e) = self.agents.presence.handle(now, input) {
            // The offer was withdrawn or timed out as this 2xx came (its CANCEL raced it): the agent
            // is already idle; this leg is hung up and the caller waits on.
            tracing::info!(%agent, error = %e, "answer raced the end of the offer: hanging the leg up");
            if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
                q.ringing.remove(&agent);
            }
            self.bye_agent_leg(now, key, leg);
            return self.run_queues(now);
        }
        if let Some(q) = self.calls.get_mut(&key).and_then(|c| c.queued.as_mut()) {
            q.answered = Some((agent.clone(), now));
            q.agent_sip_at = Some(now);
        }
        self.bridge_side(key, &media);
        tracing::info!(%agent, "agent answered: bridged");
        // The agent's other contacts, and with ring-all the other agents, stop ringing.
        self.cancel_agent_legs(now, key);
        self.run_queues(now);
    }

    /// An event from the agent side's media session. Only an RTP timeout of a bridged call matters:
    /// the agent's phone is gone (and its SIP silent as long), so the call ends on both sides. Keys
    /// from the agent are theirs to the caller (relayed), not input to the menus.
    pub(crate) fn on_agent_media(&mut self, now: Instant, key: CallKey, event: &MediaEvent) {
        if !matches!(event, MediaEvent::RtpTimeout) {
            return;
        }
        let Some(q) = self.calls.get(&key).and_then(|c| c.queued.as_ref()) else {
            return;
        };
        let (Some((agent, _)), Some(last_sip)) = (&q.answered, q.agent_sip_at) else {
            return; // not bridged: nothing is expected from the agent side yet
        };
        if now.saturating_duration_since(last_sip) < self.cfg.rtp_timeout {
            return;
        }
        tracing::info!(%agent, "no RTP and no SIP from the agent's phone: ending the call");
        self.hangup(now, key, EndReason::RtpTimeout);
    }

    /// BYE on every confirmed agent leg of the call (the call is ending from our side).
    pub(crate) fn bye_agent_legs(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        let confirmed: Vec<LegId> = call
            .legs
            .iter()
            .filter(|l| matches!(&l.kind, LegKind::Agent(u) if matches!(u.state, UacState::Confirmed { .. })))
            .map(|l| l.id)
            .collect();
        for leg in confirmed {
            self.bye_agent_leg(now, key, leg);
        }
    }

    /// Sends BYE on a confirmed agent leg.
    fn bye_agent_leg(&mut self, now: Instant, key: CallKey, leg: LegId) {
        let user_agent = self.cfg.server_header.clone();
        let Some(uac) = self.calls.get_mut(&key).and_then(|c| c.agent_leg_mut(leg)) else {
            return;
        };
        let endpoint = &mut self.endpoint;
        let Some(tx) = send_uac_bye(
            endpoint,
            now,
            &user_agent,
            &mut uac.state,
            &uac.contact,
            uac.peer,
        ) else {
            return;
        };
        uac.bye_tx = Some(tx);
        self.by_tx.insert(tx, (key, leg));
    }

    /// A request from an agent's phone inside its leg's dialog: BYE ends the call (the caller gets BYE);
    /// anything else is answered and changes nothing.
    pub(crate) fn on_agent_in_dialog(
        &mut self,
        now: Instant,
        tx: TxId,
        key: CallKey,
        leg: LegId,
        request: &Request,
    ) {
        let stranger = Reply::CallDoesNotExist.to_response(request, None);
        let Some(call) = self.calls.get_mut(&key) else {
            return self.respond(now, tx, stranger);
        };
        if let Some(q) = call.queued.as_mut() {
            // Any request from the agent's phone proves it is alive (see `on_agent_media`).
            q.agent_sip_at = q.agent_sip_at.map(|_| now);
        }
        let Some(uac) = call.agent_leg_mut(leg) else {
            return self.respond(now, tx, stranger);
        };
        let Some((ok, bye)) = answer_uac_in_dialog(&mut uac.state, request) else {
            return self.respond(now, tx, stranger);
        };
        if matches!(request.method, Method::Invite | Method::Update) {
            let response = self.renegotiate_agent(key, leg, request);
            return self.respond(now, tx, response);
        }
        self.respond(now, tx, ok);
        if bye {
            tracing::info!("agent hung up: ending the caller's leg");
            self.hangup(now, key, EndReason::AgentBye);
        }
    }

    /// A re-INVITE or UPDATE from the agent's phone (hold, resume, a new address or codec): answered
    /// from the agent side's session, which the media engine reconfigures (a bridged leg's hold stops
    /// the audio toward it). A failed offer leaves the session as it was (488, the call goes on); an
    /// INVITE without an offer gets our last one again (the answer in its ACK changes nothing).
    fn renegotiate_agent(&mut self, key: CallKey, leg: LegId, request: &Request) -> Response {
        let stranger = Reply::CallDoesNotExist.to_response(request, None);
        let rtp_timeout = self.cfg.rtp_timeout;
        let Some(call) = self.calls.get_mut(&key) else {
            return stranger;
        };
        let ip = call.media.ip;
        let Some(media) = call.queued.as_mut().and_then(|q| q.media.as_mut()) else {
            return stranger;
        };
        let offer = crate::call::state::sdp_body(request);
        let body = match offer {
            Ok(Some(offer)) => match sdp::negotiate(&offer, &MediaCaps::default()) {
                Ok(plan) => {
                    media.sdp_version += 1;
                    let cfg = media_config_from(&plan.negotiated(), rtp_timeout, media.session_id);
                    self.media_out
                        .push_back(MediaCommand::Configure { id: media.id, cfg });
                    Ok(plan
                        .into_answer(ip, media.port, media.session_id, media.sdp_version)
                        .to_string())
                }
                Err(err) => Err(Reply::NotAcceptableHere {
                    why: err.to_string(),
                }),
            },
            Ok(None) if request.method == Method::Invite => Ok(media.offer.to_string()),
            Ok(None) => Err(Reply::Ok),
            Err(reply) => Err(reply),
        };
        let Some(uac) = call.agent_leg_mut(leg) else {
            return stranger;
        };
        let UacState::Confirmed { dialog } = &uac.state else {
            return stranger;
        };
        let mut response = match body {
            Ok(sdp) => {
                let mut ok = dialog.respond(request, &Reply::Ok);
                ok.headers.push("Content-Type", "application/sdp");
                ok.body = sdp.into_bytes();
                ok
            }
            Err(reply) => dialog.respond(request, &reply),
        };
        response.headers.push("Contact", &uac.contact);
        response
    }

    /// The call is ending: out of the queue (a ringing agent is released and CANCELled), the
    /// answered agent's leg gets BYE, and presence hears the call ended.
    pub(crate) fn leave_queue(&mut self, now: Instant, key: CallKey) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let Some(q) = call.queued.as_ref() else {
            return;
        };
        let answered = q.answered.as_ref().map(|(a, _)| a.clone());
        let confirmed: Vec<LegId> = call
            .legs
            .iter()
            .filter(|l| matches!(&l.kind, LegKind::Agent(u) if matches!(u.state, UacState::Confirmed { .. })))
            .map(|l| l.id)
            .collect();
        let crate::call::agents::AgentSide {
            presence, queues, ..
        } = &mut self.agents;
        queues.remove(now, presence, &key);
        self.run_queues(now);
        self.cancel_agent_legs(now, key);
        for leg in confirmed {
            self.bye_agent_leg(now, key, leg);
        }
        if let Some(agent) = answered {
            let input = AgentInput::CallEnded { agent, call: key };
            if let Err(e) = self.agents.presence.handle(now, input) {
                tracing::debug!(error = %e, "presence: call already ended");
            }
            self.run_queues(now);
        }
    }
}
