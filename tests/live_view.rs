//! The supervisor view's snapshot (`Calls::live_view`) and its break/back (`Calls::handle_supervisor`)
//! on the simulated clock (tests/common/sim.rs: the real call layer, scripted phones): a caller's
//! waiting time, language, order number and ringing agent, the agent's state and time in it, where the
//! call is, today's answered count and service level, and a supervisor's break keeping the next caller
//! from the agent as `*50` does.
mod common;

use std::time::Duration;

use common::sim::agent::{agent_phone, answers_after, invites, refunds_caller, ANA};
use common::sim::{sample_agent_menus, SimNet};
use helpline::agent::presence::{AgentError, AgentState, AgentStatus};
use helpline::agent::AgentId;
use helpline::call::live::{LiveAgent, LiveQueue};
use helpline::call::{LiveView, SupervisorCommand};

const REFUNDS: &str = "europe.refunds";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn queue<'a>(view: &'a LiveView, name: &str) -> &'a LiveQueue {
    view.queues
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no queue {name} in {view:#?}"))
}

fn agent<'a>(view: &'a LiveView, id: &str) -> &'a LiveAgent {
    view.agents
        .iter()
        .find(|a| a.id == id)
        .unwrap_or_else(|| panic!("no agent {id} in {view:#?}"))
}

#[test]
fn a_waiting_caller_then_the_answer_as_the_supervisor_sees_them() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(5), "127.0.0.1:41000"),
    );
    let before = net.calls.live_view(net.now);
    assert_eq!(agent(&before, "ana").status, AgentStatus::Available);
    assert_eq!(agent(&before, "ana").name, "Ana Moreau");
    assert!(queue(&before, REFUNDS).waiting.is_empty());
    assert_eq!(queue(&before, REFUNDS).service_level, None);
    assert!(before
        .regions
        .iter()
        .any(|r| r.name == "europe" && r.time_zone == "Europe/Paris"));

    let (_p, _c) = refunds_caller(&mut net, "127.0.0.1:40000");
    let routed = net.now;
    assert_eq!(invites(&mut net, ana).len(), 1);
    net.advance(secs(3));
    let view = net.calls.live_view(net.now);
    let q = queue(&view, REFUNDS);
    assert_eq!(q.region, "europe");
    assert_eq!(q.waiting.len(), 1, "{q:#?}");
    let w = &q.waiting[0];
    assert_eq!(w.waiting_ms, 3000, "3 s on the simulated clock");
    assert_eq!(q.longest_wait_ms, 3000);
    assert_eq!(w.language, "en");
    assert_eq!(w.order.as_deref(), Some("123456"));
    assert_eq!(w.ringing, ["ana"]);
    let a = agent(&view, "ana");
    assert_eq!(a.state, AgentState::Offered);
    assert_eq!(a.since_ms, Some(3000));
    assert_eq!(a.caller.as_deref(), Some(w.call_id.as_str()));
    let call = view
        .calls
        .iter()
        .find(|c| c.call_id == w.call_id)
        .expect("the call");
    assert_eq!(call.place, format!("queue:{REFUNDS}"));
    assert_eq!(call.region, "europe");

    // Ana answers 5 s after the offer; a second later the supervisor sees her talking.
    net.run_until(routed + secs(6));
    let view = net.calls.live_view(net.now);
    let q = queue(&view, REFUNDS);
    assert!(q.waiting.is_empty());
    assert_eq!((q.answered, q.abandoned, q.answered_within), (1, 0, 1));
    assert_eq!(q.service_level, Some(1.0));
    let a = agent(&view, "ana");
    assert_eq!(a.state, AgentState::InCall);
    assert_eq!(a.since_ms, Some(1000));
    assert_eq!(a.calls_today, 1);
    let call = &view.calls[0];
    assert_eq!(call.place, "agent:ana");
    assert_eq!(call.order.as_deref(), Some("123456"));
    let json = serde_json::to_value(&view).expect("serialises");
    assert_eq!(
        json["calls"][0]["where"], "agent:ana",
        "the interface name is `where`"
    );
    assert_eq!(json["agents"][0]["status"], "available");
}

#[test]
fn a_supervisor_break_keeps_the_next_caller_from_the_agent_and_back_lets_them_through() {
    let mut net = SimNet::with_menus(sample_agent_menus()).build();
    let ana = agent_phone(
        &mut net,
        "127.0.0.1:41000",
        ANA,
        answers_after(secs(1), "127.0.0.1:41000"),
    );
    let now = net.now;
    net.calls
        .handle_supervisor(now, SupervisorCommand::Break(AgentId::from("ana")))
        .expect("ana is logged in");
    net.drive();
    let view = net.calls.live_view(net.now);
    assert_eq!(agent(&view, "ana").status, AgentStatus::OnBreak);
    assert_eq!(agent(&view, "ana").since_ms, Some(0));

    // On break, as after *50: the queue has nobody available, so the caller is not offered to ana.
    let _ = refunds_caller(&mut net, "127.0.0.1:40000");
    net.advance(secs(2));
    assert!(invites(&mut net, ana).is_empty());

    let now = net.now;
    net.calls
        .handle_supervisor(now, SupervisorCommand::Back(AgentId::from("ana")))
        .expect("ana is logged in");
    assert_eq!(
        net.calls
            .handle_supervisor(now, SupervisorCommand::Break(AgentId::from("nobody"))),
        Err(AgentError::UnknownAgent(AgentId::from("nobody")))
    );
    net.drive();
    assert_eq!(
        agent(&net.calls.live_view(net.now), "ana").status,
        AgentStatus::Available
    );
    // The next caller reaches her.
    let _ = refunds_caller(&mut net, "127.0.0.1:40002");
    net.advance(secs(2));
    assert_eq!(invites(&mut net, ana).len(), 1);
}
