//! Feature codes from an agent's own phone: an INVITE to `*50` (go on break) or `*51` (back, available),
//! digest-authenticated with the registrar's realm and nonces (the phone answers the `401` with
//! credentials, as it does for REGISTER), then answered with a short confirmation prompt and released
//! with BYE; presence changes at the answer. The agent is the authenticated username, never From.
//!
//! It does not walk the menus (those are for callers dialling the helpline's numbers), keep presence
//! (`agent::presence` does) or check digests itself (`agent::registrar` does).
use std::time::Instant;

use crate::agent::presence::{AgentInput, AgentStatus};
use crate::agent::AgentId;
use crate::call::cdr::Cdr;
use crate::call::{CallKey, Calls};
use crate::dialog::uas::IncomingCall;
use crate::ivr::compile::FEATURE_PROMPTS;
use crate::ivr::IvrSession;
use crate::sip::endpoint::{Peer, TxId};
use crate::sip::Reply;

/// A dialed star code: `*` then digits (as phones send them, e.g. `sip:*50@helpline`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FeatureCode {
    /// `*50`: on break, no new callers offered.
    Break,
    /// `*51`: back from break, available for calls.
    Back,
    /// Any other star code.
    Unknown(String),
}

impl FeatureCode {
    /// The feature code `dialed` is, when it has a star code's shape.
    pub(crate) fn parse(dialed: &str) -> Option<FeatureCode> {
        let digits = dialed.strip_prefix('*')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(match digits {
            "50" => FeatureCode::Break,
            "51" => FeatureCode::Back,
            _ => FeatureCode::Unknown(dialed.to_owned()),
        })
    }

    /// The presence input and the confirmation prompt of a known code.
    fn effect(&self, agent: AgentId) -> Option<(AgentInput<CallKey>, &'static str)> {
        let [on_break, available] = FEATURE_PROMPTS;
        match self {
            FeatureCode::Break => Some((AgentInput::Break(agent), on_break)),
            FeatureCode::Back => Some((AgentInput::Back(agent), available)),
            FeatureCode::Unknown(_) => None,
        }
    }
}

impl Calls {
    /// An INVITE to a star code: authenticate, then answer and confirm, or refuse.
    pub(crate) fn on_feature_code(
        &mut self,
        now: Instant,
        tx: TxId,
        peer: Peer,
        incoming: IncomingCall,
        code: FeatureCode,
        mut cdr: Cdr,
    ) {
        // The same challenge, nonce and refusal as a REGISTER: an unknown user and a known one with a
        // wrong password cannot be told apart. Challenges are not recorded as calls (nor are REGISTERs).
        let agent = match self
            .agents
            .registrar
            .authorize(now, incoming.invite(), peer.addr.ip())
        {
            Ok(agent) => agent,
            Err(reply) => {
                if reply.code() != 401 {
                    tracing::info!(code = reply.code(), dialed = %cdr.dialed, "feature code refused");
                }
                let response = incoming.reject(&reply);
                return self.respond(now, tx, response);
            }
        };
        cdr.agent = Some(agent.to_string());
        let Some((input, prompt)) = code.effect(agent.clone()) else {
            // Asterisk answers a dialled extension its dialplan lacks with `404 Not Found`, and agents'
            // phones show that as "not found": what call-centre agents coming from Asterisk expect.
            tracing::info!(%agent, dialed = %cdr.dialed, "not a feature code: 404");
            return self.reject_new(now, tx, incoming, Reply::NotFound, cdr);
        };
        let logged_in = self
            .agents
            .presence
            .get(&agent)
            .is_some_and(|a| a.status() != AgentStatus::LoggedOut);
        if !logged_in {
            // Authenticated, but no phone of theirs is registered: presence has nothing to change.
            tracing::info!(%agent, "feature code from an agent who is not logged in: 480");
            return self.reject_new(now, tx, incoming, Reply::TemporarilyUnavailable, cdr);
        }
        let trying = incoming.trying();
        self.respond(now, tx, trying);
        let lang = self.feature_language(&agent, prompt);
        let ivr = IvrSession::announcement(
            self.menus.clone(),
            &lang,
            vec![prompt.to_owned()],
            "feature",
        );
        if !self.admit(now, tx, peer, incoming, ivr, cdr) {
            return; // bad SDP or no port: refused, and presence is left as it was
        }
        tracing::info!(%agent, ?code, "agent feature code");
        if let Err(e) = self.agents.presence.handle(now, input) {
            tracing::warn!(error = %e, "presence refused a feature code");
        }
        // Back from break: a waiting caller may be offered to the agent now.
        self.run_queues(now);
    }

    /// The agent's first language that has the prompt, else English.
    fn feature_language(&self, agent: &AgentId, prompt: &str) -> String {
        self.agents
            .presence
            .get(agent)
            .and_then(|a| {
                a.languages()
                    .iter()
                    .find(|l| self.prompts.get(l, prompt).is_some())
                    .cloned()
            })
            .unwrap_or_else(|| "en".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::FeatureCode;

    #[test]
    fn star_codes_parse_and_other_numbers_do_not() {
        assert_eq!(FeatureCode::parse("*50"), Some(FeatureCode::Break));
        assert_eq!(FeatureCode::parse("*51"), Some(FeatureCode::Back));
        assert_eq!(
            FeatureCode::parse("*59"),
            Some(FeatureCode::Unknown("*59".into()))
        );
        for not_a_code in ["50", "*", "*5a", "08000289999", "+448000289999", ""] {
            assert_eq!(FeatureCode::parse(not_a_code), None, "{not_a_code}");
        }
    }
}
