//! Scenario tests for the four transaction machines on a simulated clock: each test steps time to the
//! machine's own `poll_timeout()` and records what it transmits and when.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// The common driving surface of the four machines, so one stepping loop serves all tests.
trait Drive {
    fn next_timeout(&self) -> Option<Instant>;
    fn fire(&mut self, now: Instant);
    fn transmit(&mut self) -> Option<Arc<[u8]>>;
}

macro_rules! impl_drive {
    ($($t:ty),*) => {$(
        impl Drive for $t {
            fn next_timeout(&self) -> Option<Instant> {
                self.poll_timeout()
            }
            fn fire(&mut self, now: Instant) {
                self.handle_timeout(now)
            }
            fn transmit(&mut self) -> Option<Arc<[u8]>> {
                self.poll_transmit()
            }
        }
    )*};
}
impl_drive!(ServerInvite, ServerNonInvite, ClientInvite, ClientNonInvite);

fn bytes(s: &str) -> Arc<[u8]> {
    Arc::from(s.as_bytes())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything queued for the transport right now, as text.
fn drain(m: &mut impl Drive) -> Vec<String> {
    std::iter::from_fn(|| m.transmit())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Steps the clock from timeout to timeout up to and including `t0 + until`, returning every transmission
/// as (milliseconds since `t0`, text). Transmissions already queued are reported at the first step.
fn step_until(m: &mut impl Drive, t0: Instant, until: Duration) -> Vec<(u128, String)> {
    let mut sent = Vec::new();
    while let Some(at) = m.next_timeout() {
        if at > t0 + until {
            break;
        }
        m.fire(at);
        for msg in drain(m) {
            sent.push(((at - t0).as_millis(), msg));
        }
    }
    sent
}

fn times(sent: &[(u128, String)]) -> Vec<u128> {
    sent.iter().map(|(t, _)| *t).collect()
}

const UDP: bool = false;
const TCP: bool = true;

// ── ServerInvite: 2xx (RFC 3261 §13.3.1.4, RFC 6026 §7.1) ──

fn accepted(t0: Instant, reliable: bool) -> ServerInvite {
    let mut tx = ServerInvite::new(t0, TimerConfig::default(), reliable);
    tx.handle(t0, ServerInviteInput::TuProvisional(bytes("100")));
    tx.handle(
        t0,
        ServerInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200"),
        },
    );
    assert_eq!(drain(&mut tx), ["100", "200"]);
    assert_eq!(tx.state(), ServerInviteState::Accepted);
    tx
}

#[test]
fn server_2xx_retransmits_t1_doubling_capped_at_t2_then_no_ack_at_64_t1() {
    let t0 = Instant::now();
    let mut tx = accepted(t0, UDP);
    let sent = step_until(&mut tx, t0, Duration::from_secs(31));
    assert_eq!(
        times(&sent),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500]
    );
    assert!(sent.iter().all(|(_, m)| m == "200"));
    assert_eq!(tx.poll_event(), None);

    let rest = step_until(&mut tx, t0, Duration::from_secs(40));
    assert_eq!(times(&rest), [31500], "ten retransmissions in total");
    assert_eq!(tx.poll_event(), Some(ServerInviteEvent::NoAck));
    assert_eq!(tx.poll_event(), None);
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn server_2xx_retransmission_stops_on_ack_and_the_tu_hears_of_it_once() {
    let t0 = Instant::now();
    let mut tx = accepted(t0, UDP);
    assert_eq!(times(&step_until(&mut tx, t0, ms(2000))), [500, 1500]);

    tx.handle(t0 + ms(2000), ServerInviteInput::Ack);
    assert_eq!(tx.poll_event(), Some(ServerInviteEvent::AckReceived));
    tx.handle(t0 + ms(2100), ServerInviteInput::Ack);
    assert_eq!(
        tx.poll_event(),
        None,
        "ACK retransmission is not a new event"
    );
    assert_eq!(tx.state(), ServerInviteState::Accepted);

    // Timer L still holds Accepted open (to absorb INVITE retransmissions) but nothing more is sent.
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    assert!(step_until(&mut tx, t0, Duration::from_secs(40)).is_empty());
    assert_eq!(tx.poll_event(), None, "no NoAck after an ACK");
    assert!(tx.is_terminated());
}

#[test]
fn server_2xx_is_retransmitted_on_reliable_transports_too() {
    // RFC 3261 §13.3.1.4: "independent of whatever transport protocols are used".
    let t0 = Instant::now();
    let mut tx = accepted(t0, TCP);
    assert_eq!(times(&step_until(&mut tx, t0, ms(4000))), [500, 1500, 3500]);
}

#[test]
fn tu_may_resend_the_2xx_in_accepted_and_it_becomes_the_retransmitted_copy() {
    let t0 = Instant::now();
    let mut tx = accepted(t0, UDP);
    tx.handle(
        t0 + ms(100),
        ServerInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200 again"),
        },
    );
    assert_eq!(drain(&mut tx), ["200 again"]);
    assert_eq!(
        step_until(&mut tx, t0, ms(500)),
        [(500, "200 again".to_owned())]
    );
    // A non-2xx cannot follow a 2xx.
    tx.handle(
        t0 + ms(600),
        ServerInviteInput::TuFinal {
            code: 487,
            bytes: bytes("487"),
        },
    );
    assert!(drain(&mut tx).is_empty());
}

// ── ServerInvite: INVITE retransmissions (RFC 3261 §17.2.1, RFC 6026 §7.1) ──

#[test]
fn invite_retransmissions_are_absorbed_in_every_state() {
    let t0 = Instant::now();
    let cfg = TimerConfig::default();

    // Proceeding: nothing to resend before the TU spoke, then the latest provisional.
    let mut tx = ServerInvite::new(t0, cfg, UDP);
    tx.handle(t0, ServerInviteInput::RequestRetransmit);
    assert!(drain(&mut tx).is_empty());
    tx.handle(t0, ServerInviteInput::TuProvisional(bytes("100")));
    tx.handle(t0, ServerInviteInput::TuProvisional(bytes("180")));
    drain(&mut tx);
    tx.handle(t0 + ms(200), ServerInviteInput::RequestRetransmit);
    assert_eq!(drain(&mut tx), ["180"]);

    // Completed: the final response.
    tx.handle(
        t0 + ms(300),
        ServerInviteInput::TuFinal {
            code: 486,
            bytes: bytes("486"),
        },
    );
    drain(&mut tx);
    tx.handle(t0 + ms(400), ServerInviteInput::RequestRetransmit);
    assert_eq!(drain(&mut tx), ["486"]);
    assert_eq!(tx.poll_event(), None);

    // Accepted: nothing extra is sent and the TU hears nothing.
    let mut tx = accepted(t0, UDP);
    tx.handle(t0 + ms(100), ServerInviteInput::RequestRetransmit);
    assert!(drain(&mut tx).is_empty());
    assert_eq!(tx.poll_event(), None);
    assert_eq!(tx.state(), ServerInviteState::Accepted);
}

// ── ServerInvite: non-2xx (RFC 3261 §17.2.1) ──

fn completed(t0: Instant, reliable: bool) -> ServerInvite {
    let mut tx = ServerInvite::new(t0, TimerConfig::default(), reliable);
    tx.handle(
        t0,
        ServerInviteInput::TuFinal {
            code: 486,
            bytes: bytes("486"),
        },
    );
    assert_eq!(drain(&mut tx), ["486"]);
    assert_eq!(tx.state(), ServerInviteState::Completed);
    tx
}

#[test]
fn non_2xx_timer_g_schedule_then_timer_h_times_out() {
    let t0 = Instant::now();
    let mut tx = completed(t0, UDP);
    let sent = step_until(&mut tx, t0, Duration::from_secs(40));
    assert_eq!(
        times(&sent),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(tx.poll_event(), Some(ServerInviteEvent::Timeout));
    assert!(tx.is_terminated());
}

#[test]
fn non_2xx_ack_confirms_then_timer_i_terminates() {
    let t0 = Instant::now();
    let mut tx = completed(t0, UDP);
    assert_eq!(times(&step_until(&mut tx, t0, ms(1000))), [500]);
    tx.handle(t0 + ms(1000), ServerInviteInput::Ack);
    assert_eq!(tx.state(), ServerInviteState::Confirmed);
    assert_eq!(
        tx.poll_event(),
        None,
        "a non-2xx ACK is not passed to the TU"
    );
    tx.handle(t0 + ms(1200), ServerInviteInput::Ack);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(6000)), "Timer I = T4");
    assert!(step_until(&mut tx, t0, ms(5999)).is_empty());
    assert_eq!(tx.state(), ServerInviteState::Confirmed);
    step_until(&mut tx, t0, ms(6000));
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_event(), None);
}

#[test]
fn non_2xx_on_reliable_transport_has_no_timer_g_and_zero_timer_i() {
    let t0 = Instant::now();
    let mut tx = completed(t0, TCP);
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "only H"
    );
    tx.handle(t0 + ms(700), ServerInviteInput::Ack);
    assert_eq!(tx.state(), ServerInviteState::Confirmed);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(700)), "Timer I = 0");
    tx.handle_timeout(t0 + ms(700));
    assert!(tx.is_terminated());
    assert!(drain(&mut tx).is_empty());
}

#[test]
fn non_2xx_on_reliable_transport_still_times_out_without_ack() {
    let t0 = Instant::now();
    let mut tx = completed(t0, TCP);
    assert!(step_until(&mut tx, t0, Duration::from_secs(40)).is_empty());
    assert_eq!(tx.poll_event(), Some(ServerInviteEvent::Timeout));
    assert!(tx.is_terminated());
}

#[test]
fn spurious_timeouts_are_no_ops() {
    let t0 = Instant::now();
    let mut tx = completed(t0, UDP);
    tx.handle_timeout(t0 + ms(200));
    tx.handle_timeout(t0 + ms(499));
    assert!(drain(&mut tx).is_empty());
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
    assert_eq!(tx.state(), ServerInviteState::Completed);
}

#[test]
fn server_invite_transport_error_informs_tu_and_terminates() {
    let t0 = Instant::now();
    let mut tx = ServerInvite::new(t0, TimerConfig::default(), TCP);
    tx.handle(t0, ServerInviteInput::TransportError);
    assert_eq!(tx.poll_event(), Some(ServerInviteEvent::TransportError));
    assert!(tx.is_terminated());
    tx.handle(t0, ServerInviteInput::TuProvisional(bytes("180")));
    assert!(
        drain(&mut tx).is_empty(),
        "nothing is sent after Terminated"
    );
}

// ── CANCEL racing the 200 (RFC 3261 §9.2): two independent transactions glued by the endpoint ──

#[test]
fn cancel_after_200_gets_200_and_leaves_invite_accepted() {
    let t0 = Instant::now();
    let cfg = TimerConfig::default();
    let mut invite = accepted(t0, UDP);

    // The CANCEL has its own key (method CANCEL) and so its own server transaction.
    let invite_key = TransactionKey::server("z9hG4bKa1", "caller.example", "INVITE");
    let cancel_key = TransactionKey::server("z9hG4bKa1", "caller.example", "CANCEL");
    assert_ne!(invite_key, cancel_key);
    let mut cancel = ServerNonInvite::new(t0 + ms(10), cfg, UDP);
    cancel.handle(
        t0 + ms(10),
        ServerNonInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200 cancel"),
        },
    );
    assert_eq!(drain(&mut cancel), ["200 cancel"]);

    // A TU that reacts to the CANCEL with a 487 loses the race: the INVITE was already answered.
    invite.handle(
        t0 + ms(10),
        ServerInviteInput::TuFinal {
            code: 487,
            bytes: bytes("487"),
        },
    );
    assert!(drain(&mut invite).is_empty(), "no 487 after a 200");
    assert_eq!(invite.state(), ServerInviteState::Accepted);
    assert_eq!(times(&step_until(&mut invite, t0, ms(500))), [500]);
}

#[test]
fn cancel_before_final_leads_to_487_and_completed() {
    let t0 = Instant::now();
    let cfg = TimerConfig::default();
    let mut invite = ServerInvite::new(t0, cfg, UDP);
    invite.handle(t0, ServerInviteInput::TuProvisional(bytes("180")));
    drain(&mut invite);

    let mut cancel = ServerNonInvite::new(t0 + ms(50), cfg, UDP);
    cancel.handle(
        t0 + ms(50),
        ServerNonInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200 cancel"),
        },
    );
    assert_eq!(drain(&mut cancel), ["200 cancel"]);
    invite.handle(
        t0 + ms(50),
        ServerInviteInput::TuFinal {
            code: 487,
            bytes: bytes("487"),
        },
    );
    assert_eq!(drain(&mut invite), ["487"]);
    assert_eq!(invite.state(), ServerInviteState::Completed);

    // The answer the TU had in flight now loses: a 200 after the 487 is not sent.
    invite.handle(
        t0 + ms(60),
        ServerInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200"),
        },
    );
    assert!(drain(&mut invite).is_empty());
    invite.handle(t0 + ms(80), ServerInviteInput::Ack);
    assert_eq!(invite.state(), ServerInviteState::Confirmed);
}

// ── ServerNonInvite (RFC 3261 §17.2.2) ──

#[test]
fn server_non_invite_resends_last_response_and_timer_j_terminates() {
    let t0 = Instant::now();
    let mut tx = ServerNonInvite::new(t0, TimerConfig::default(), UDP);
    tx.handle(t0, ServerNonInviteInput::RequestRetransmit);
    assert!(drain(&mut tx).is_empty(), "nothing to resend in Trying");
    tx.handle(t0, ServerNonInviteInput::TuProvisional(bytes("100")));
    assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
    tx.handle(t0 + ms(100), ServerNonInviteInput::RequestRetransmit);
    assert_eq!(drain(&mut tx), ["100", "100"]);
    tx.handle(
        t0 + ms(200),
        ServerNonInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200"),
        },
    );
    tx.handle(
        t0 + ms(300),
        ServerNonInviteInput::TuFinal {
            code: 500,
            bytes: bytes("500"),
        },
    );
    tx.handle(t0 + ms(400), ServerNonInviteInput::RequestRetransmit);
    assert_eq!(drain(&mut tx), ["200", "200"], "second final discarded");
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + ms(200) + Duration::from_secs(32))
    );
    assert!(step_until(&mut tx, t0, Duration::from_secs(40)).is_empty());
    assert!(tx.is_terminated());
}

#[test]
fn server_non_invite_timer_j_is_zero_on_reliable_transport() {
    let t0 = Instant::now();
    let mut tx = ServerNonInvite::new(t0, TimerConfig::default(), TCP);
    tx.handle(
        t0,
        ServerNonInviteInput::TuFinal {
            code: 200,
            bytes: bytes("200"),
        },
    );
    assert_eq!(tx.poll_timeout(), Some(t0));
    tx.handle_timeout(t0);
    assert!(tx.is_terminated());
}

// ── ClientInvite (RFC 3261 §17.1.1, RFC 6026 §7.2) ──

fn calling(t0: Instant, reliable: bool) -> ClientInvite {
    let mut tx = ClientInvite::new(t0, TimerConfig::default(), reliable, bytes("INVITE"));
    assert_eq!(drain(&mut tx), ["INVITE"]);
    tx
}

#[test]
fn client_timer_a_doubles_without_cap_until_timer_b_times_out() {
    let t0 = Instant::now();
    let mut tx = calling(t0, UDP);
    let sent = step_until(&mut tx, t0, Duration::from_secs(40));
    assert_eq!(times(&sent), [500, 1500, 3500, 7500, 15500, 31500]);
    assert!(sent.iter().all(|(_, m)| m == "INVITE"));
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Timeout));
    assert!(tx.is_terminated());
}

#[test]
fn client_reliable_has_no_timer_a_but_timer_b() {
    let t0 = Instant::now();
    let mut tx = calling(t0, TCP);
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
    assert!(step_until(&mut tx, t0, Duration::from_secs(40)).is_empty());
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Timeout));
}

#[test]
fn provisional_stops_timer_a_and_timer_b() {
    let t0 = Instant::now();
    let mut tx = calling(t0, UDP);
    assert_eq!(times(&step_until(&mut tx, t0, ms(1000))), [500]);
    tx.handle(t0 + ms(1000), ClientInviteInput::Response { code: 180 });
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Provisional(180)));
    assert_eq!(tx.state(), ClientInviteState::Proceeding);
    assert_eq!(tx.poll_timeout(), None);
    tx.handle(t0 + ms(2000), ClientInviteInput::Response { code: 183 });
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Provisional(183)));
}

#[test]
fn non_2xx_final_needs_ack_which_is_resent_on_each_retransmitted_final() {
    let t0 = Instant::now();
    let mut tx = calling(t0, UDP);
    tx.handle(t0 + ms(300), ClientInviteInput::Response { code: 486 });
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::Final(486)));
    assert_eq!(tx.poll_event(), Some(ClientInviteEvent::NeedAck(486)));
    assert_eq!(tx.state(), ClientInviteState::Completed);
    tx.set_ack(bytes("ACK"));
    assert_eq!(drain(&mut tx), ["ACK"]);

    tx.handle(t0 + ms(800), ClientInviteInput::Response { code: 486 });
    assert_eq!(drain(&mut tx), ["ACK"]);
    assert_eq!(tx.poll_event(), None, "retransmitted final absorbed");
    tx.set_ack(bytes("ACK twice"));
    assert!(drain(&mut tx).is_empty());

    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + ms(300) + Duration::from_secs(32)),
        "Timer D"
    );
    assert!(step_until(&mut tx, t0, Duration::from_secs(40)).is_empty());
    assert!(tx.is_terminated());
}

#[test]
fn reliable_timer_d_is_zero_and_a_late_ack_is_still_sent_once() {
    let t0 = Instant::now();
    let mut tx = calling(t0, TCP);
    tx.handle(t0 + ms(300), ClientInviteInput::Response { code: 603 });
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(300)));
    tx.handle_timeout(t0 + ms(300));
    assert!(tx.is_terminated());
    tx.set_ack(bytes("ACK"));
    assert_eq!(drain(&mut tx), ["ACK"]);
    tx.set_ack(bytes("ACK"));
    assert!(drain(&mut tx).is_empty());
}

#[test]
fn client_2xx_enters_accepted_and_passes_retransmitted_2xx_until_timer_m() {
    let t0 = Instant::now();
    let mut tx = calling(t0, UDP);
    tx.handle(t0 + ms(200), ClientInviteInput::Response { code: 180 });
    tx.handle(t0 + ms(900), ClientInviteInput::Response { code: 200 });
    let events: Vec<_> = std::iter::from_fn(|| tx.poll_event()).collect();
    assert_eq!(
        events,
        [
            ClientInviteEvent::Provisional(180),
            ClientInviteEvent::Final(200)
        ]
    );
    assert_eq!(tx.state(), ClientInviteState::Accepted);
    tx.handle(t0 + ms(1400), ClientInviteInput::Response { code: 200 });
    assert_eq!(
        tx.poll_event(),
        Some(ClientInviteEvent::Retransmitted2xx(200))
    );
    tx.handle(t0 + ms(1500), ClientInviteInput::Response { code: 486 });
    assert_eq!(tx.poll_event(), None);
    tx.set_ack(bytes("ACK"));
    assert!(
        drain(&mut tx).is_empty(),
        "the 2xx ACK belongs to the TU, not the transaction"
    );
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + ms(900) + Duration::from_secs(32)),
        "Timer M"
    );
    step_until(&mut tx, t0, Duration::from_secs(40));
    assert!(tx.is_terminated());
}

// ── ClientNonInvite (RFC 3261 §17.1.2) ──

#[test]
fn client_non_invite_timer_e_caps_at_t2_until_timer_f() {
    let t0 = Instant::now();
    let mut tx = ClientNonInvite::new(t0, TimerConfig::default(), UDP, bytes("BYE"));
    assert_eq!(drain(&mut tx), ["BYE"]);
    let sent = step_until(&mut tx, t0, Duration::from_secs(40));
    assert_eq!(
        times(&sent),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(tx.poll_event(), Some(ClientNonInviteEvent::Timeout));
    assert!(tx.is_terminated());
}

#[test]
fn client_non_invite_proceeding_retransmits_every_t2_then_final_and_timer_k() {
    let t0 = Instant::now();
    let mut tx = ClientNonInvite::new(t0, TimerConfig::default(), UDP, bytes("OPTIONS"));
    drain(&mut tx);
    assert_eq!(times(&step_until(&mut tx, t0, ms(1000))), [500]);
    tx.handle(t0 + ms(1000), ClientNonInviteInput::Response { code: 100 });
    assert_eq!(
        tx.poll_event(),
        Some(ClientNonInviteEvent::Provisional(100))
    );
    assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
    assert_eq!(
        times(&step_until(&mut tx, t0, ms(10000))),
        [1500, 5500, 9500]
    );

    tx.handle(t0 + ms(10000), ClientNonInviteInput::Response { code: 200 });
    tx.handle(t0 + ms(10100), ClientNonInviteInput::Response { code: 200 });
    assert_eq!(tx.poll_event(), Some(ClientNonInviteEvent::Final(200)));
    assert_eq!(tx.poll_event(), None, "retransmitted final absorbed");
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(15000)), "Timer K = T4");
    assert!(step_until(&mut tx, t0, ms(20000)).is_empty());
    assert!(tx.is_terminated());
}

#[test]
fn client_non_invite_reliable_has_no_timer_e_and_zero_timer_k() {
    let t0 = Instant::now();
    let mut tx = ClientNonInvite::new(t0, TimerConfig::default(), TCP, bytes("BYE"));
    drain(&mut tx);
    assert_eq!(
        tx.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "only F"
    );
    tx.handle(t0 + ms(40), ClientNonInviteInput::Response { code: 200 });
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(40)));
    tx.handle_timeout(t0 + ms(40));
    assert!(tx.is_terminated());
    assert!(drain(&mut tx).is_empty());
}

#[test]
fn timers_follow_configured_t1_t2_t4() {
    let t0 = Instant::now();
    let cfg = TimerConfig {
        t1: ms(100),
        t2: ms(300),
        t4: ms(1000),
    };
    let mut tx = ClientNonInvite::new(t0, cfg, UDP, bytes("BYE"));
    drain(&mut tx);
    let sent = step_until(&mut tx, t0, ms(1500));
    assert_eq!(times(&sent)[..4], [100, 300, 600, 900]);
    assert_eq!(tx.poll_event(), None);
    step_until(&mut tx, t0, ms(6400));
    assert_eq!(
        tx.poll_event(),
        Some(ClientNonInviteEvent::Timeout),
        "F = 64·T1"
    );
}
