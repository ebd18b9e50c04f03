//! The tokio shell: binds the SIP sockets, starts the media engine, the CDR and queue-log writers and
//! the menu reloader, the capture writer (`--trace-dir`), reopens the record files on SIGUSR1 (logrotate),
//! and drives the signalling core until shutdown: read one input → one `handle_*` →
//! carry out every output → sleep until the earliest timeout, on the thread that owns the SIP sockets'
//! I/O driver; the HTTP endpoints, the reloader, the settings feed and the TCP acceptor run on the
//! auxiliary runtime `cli` hands in. Every call decision is made in the sans-IO `call` layer.
pub mod capture;
pub mod core;
pub mod jsonl;
pub mod live;
pub mod media_engine;
pub mod media_outbox;
pub mod reload;
pub mod settings;
pub mod snapshot;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::call::{Calls, CallsConfig, WallClock};
use crate::config::ServerConfig;
use crate::ivr::MenuSet;
use crate::prompts::PromptStore;
use crate::server::core::Core;
use crate::server::media_engine::{MediaEngine, MediaEngineConfig};
use crate::sip::endpoint::{Peer, Transport};
use crate::telemetry::http as telemetry_http;
use crate::telemetry::http::{FileHealth, HttpState, Query, Readiness, QUERY_QUEUE};
use crate::telemetry::metrics::{CoreMetrics, Metrics};
use crate::telemetry::supervisor::{LivePage, Supervision};
use crate::transport::tcp::{accept_loop, TcpConnections};
use crate::transport::udp::SipUdpSocket;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A socket could not be bound.
    #[error("cannot bind {what} {addr}")]
    Bind {
        /// What was being bound.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Port 0 was asked for and no port was free on both UDP and TCP.
    #[error("no port free on both udp and tcp at {0}")]
    NoCommonPort(IpAddr),
    /// The media engine could not start.
    #[error("cannot start the media engine")]
    Media(#[source] std::io::Error),
    /// The capture writer thread could not start.
    #[error("cannot start the capture writer")]
    Capture(#[source] std::io::Error),
    /// A CDR or queue log writer thread could not start.
    #[error("cannot start a record writer")]
    Writer(#[source] std::io::Error),
}

/// Most SIP datagrams handled per wakeup of the core loop (the rest wait for the next turn).
const UDP_BURST: usize = 16;

/// Binds the SIP UDP socket (large receive buffer, per-datagram local addresses: see `transport::udp`).
fn bind_udp(addr: SocketAddr) -> Result<SipUdpSocket, ServeError> {
    SipUdpSocket::bind(addr).map_err(|source| ServeError::Bind {
        what: "udp",
        addr,
        source,
    })
}

/// Binds UDP and TCP on the same port; port 0 picks one that both can bind.
async fn bind(listen: SocketAddr) -> Result<(SipUdpSocket, TcpListener), ServeError> {
    if listen.port() != 0 {
        let udp = bind_udp(listen)?;
        let tcp = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                what: "tcp",
                addr: listen,
                source,
            })?;
        return Ok((udp, tcp));
    }
    // Bounded: a handful of tries at ports the OS hands out for UDP.
    for _ in 0..50 {
        let udp = bind_udp(listen)?;
        let port = udp.local_addr().port();
        if let Ok(tcp) = TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            return Ok((udp, tcp));
        }
    }
    Err(ServeError::NoCommonPort(listen.ip()))
}

/// Runs the server until SIGTERM/SIGINT and the drain that follows.
pub async fn run(
    cfg: ServerConfig,
    menus: Arc<MenuSet>,
    prompts: PromptStore,
    aux: tokio::runtime::Handle,
) -> Result<(), ServeError> {
    // A no-op when `cli` has fixed it already (before logging started).
    crate::clock::start(cfg.pretend_time);
    let metrics = Arc::new(Metrics::new());
    let spool = cfg.cdr_spool;
    let cdr_health = cfg
        .cdr
        .clone()
        .map(|p| Arc::new(FileHealth::new(p, "cdr", spool)));
    let queue_log_health = cfg
        .queue_log
        .clone()
        .map(|p| Arc::new(FileHealth::new(p, "queue log", spool)));
    let files = cdr_health
        .iter()
        .chain(&queue_log_health)
        .cloned()
        .collect();
    let ready = Arc::new(Readiness::new(files));
    let (query_tx, mut query_rx) = mpsc::channel::<Query>(QUERY_QUEUE);
    // Bound first, so that a load balancer sees "not ready" (not "refused") while the rest comes up.
    let http_listener = match cfg.http {
        Some(addr) => {
            Some(
                telemetry_http::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind {
                        what: "http",
                        addr,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let http_local = http_listener.as_ref().and_then(|l| l.local_addr().ok());

    let (udp, tcp) = bind(cfg.listen).await?;
    ready.sip_bound.store(true, Ordering::Relaxed);
    let udp = Arc::new(udp);
    let local = udp.local_addr();
    let tcp_local = tcp.local_addr().unwrap_or(cfg.listen);
    // The address our Via carries: --advertise-ip, else the listen address, else loopback. Contact and
    // SDP name --advertise-ip or the local address each request arrived on (`Peer::local`), see `call`.
    let advertise = cfg
        .advertise_ip
        .or((!local.ip().is_unspecified()).then(|| local.ip()));
    let sip_local = SocketAddr::new(
        advertise.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        local.port(),
    );

    // Both ways bounded (see `media_engine`): events by `MEDIA_EVENT_QUEUE`, commands by a queue
    // sized from `--max-calls` (a few commands per call at once; new calls get 503 at half full).
    let (media_tx, mut media_rx) = media_engine::event_channel();
    let max_calls = cfg.admission.max_calls;
    let media = MediaEngine::start(
        MediaEngineConfig {
            bind_ip: local.ip(),
            rtcp_interval: cfg.rtcp_interval,
            command_queue: media_engine::DEFAULT_COMMAND_QUEUE.max(max_calls.saturating_mul(16)),
            threads: cfg.media_threads,
            scheduling: media_engine::MediaScheduling {
                fifo_priority: cfg.media_rt_priority,
                cpus: cfg.media_cpus,
            },
        },
        media_tx,
    )
    .map_err(ServeError::Media)?;
    ready.media_started.store(true, Ordering::Relaxed);
    let upkeep = aux.spawn(upkeep(metrics.clone()));

    let (menus_tx, mut menus_rx) = watch::channel(menus.clone());
    let (live_tx, live_rx) = watch::channel(Arc::new(LivePage::default()));
    let live_on = http_listener.is_some();
    let http_task = http_listener.map(|listener| {
        let state = HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            core: query_tx.clone(),
            media: media.send_stats(),
            supervision: Arc::new(Supervision::new(menus_rx.clone(), live_rx)),
        };
        aux.spawn(telemetry_http::serve(listener, state))
    });
    // SIGHUP is taken over here, before the server says anything: registered inside the reloader's
    // task on the auxiliary runtime, a SIGHUP sent as soon as `menus live` was logged could arrive
    // first, and its default action ends the process.
    let hangup = || tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let menus_hup = hangup();
    let settings_hup = cfg.settings.as_ref().and_then(|_| hangup());
    tracing::info!(version = %menus_rx.borrow().version(), "menus live");
    let reloader = aux.spawn(reload::run(
        cfg.menus_dir.clone(),
        cfg.prompts_dir.clone(),
        prompts.clone(),
        menus_tx,
        cfg.watch_menus,
        Some(metrics.reload_counters()),
        menus_hup,
    ));

    let options = jsonl::WriterOptions {
        spool,
        fsync: cfg.cdr_fsync,
        ..jsonl::WriterOptions::default()
    };
    let cdr_writer = match &cdr_health {
        Some(health) => Some(
            jsonl::Writer::start(health.clone(), "CDR", options, Some(metrics.cdr_counters()))
                .map_err(ServeError::Writer)?,
        ),
        None => None,
    };
    let queue_log_writer = match &queue_log_health {
        Some(health) => Some(
            jsonl::Writer::start(health.clone(), "queue log", options, None)
                .map_err(ServeError::Writer)?,
        ),
        None => None,
    };

    let mut tcp_limits = cfg.tcp.clone();
    tcp_limits.allow.extend(cfg.guard.allow.iter().cloned());
    let conns = TcpConnections::new(tcp_limits, metrics.transport_stats());
    // Bounded: a full queue answers a new INVITE `503` and drops the rest (see `transport::tcp`).
    let (tcp_tx, mut tcp_rx) = mpsc::channel(crate::transport::tcp::INBOUND_QUEUE);
    let acceptor = aux.spawn(accept_loop(tcp, tcp_tx, conns.clone()));

    let mut drain = cfg.drain;
    let (settings_tx, mut settings_rx) =
        mpsc::channel::<settings::LiveUpdate>(settings::UPDATE_QUEUE);
    let settings_task = cfg
        .settings
        .clone()
        .map(|source| aux.spawn(settings::run(source, settings_tx, settings_hup)));
    let calls_cfg = calls_config(&cfg, sip_local);
    let capture = match &cfg.trace_dir {
        Some(dir) => Some(
            capture::CaptureWriter::start(dir.clone(), calls_cfg.wall)
                .map_err(ServeError::Capture)?,
        ),
        None => None,
    };
    let mut calls = Calls::new(calls_cfg, menus.clone(), prompts, crate::clock::seed());
    calls.set_service_level(cfg.service_level);
    if queue_log_writer.is_some() {
        calls.enable_queue_log();
    }
    let cdr_tx = cdr_writer.as_ref().map(jsonl::Writer::sender);
    let mut core = Core::new(calls, udp.clone(), conns, media.clone(), cdr_tx);
    core.enable_telemetry(CoreMetrics::new(metrics.clone(), menus_rx.borrow().clone()));
    if live_on {
        core.enable_live(live::LivePublisher::new(live_tx));
    }
    let mut live_tick = tokio::time::interval(live::PUBLISH_EVERY);
    live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ready.menus_loaded.store(true, Ordering::Relaxed);
    if let Some(writer) = &queue_log_writer {
        core.set_queue_log(writer.sender());
    }
    if let Some(writer) = &capture {
        core.set_capture(writer.sink());
    }

    for h in cdr_health.iter().chain(&queue_log_health) {
        // Opened by now (or failed): /health/ready is settled before the `listening on` line.
        h.wait_settled(Duration::from_secs(2)).await;
    }
    match http_local {
        Some(http) => tracing::info!("listening on udp:{local} tcp:{tcp_local} http:{http}"),
        None => tracing::info!("listening on udp:{local} tcp:{tcp_local}"),
    }

    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt());
    let mut reopen = signal(tokio::signal::unix::SignalKind::user_defined1());
    let writers: Vec<&jsonl::Writer> = cdr_writer.iter().chain(&queue_log_writer).collect();
    let mut buf = vec![0u8; 65_536];
    // Twice a second: the TCP policy's deadlines are seconds long (`--tcp-first-message-secs` …).
    let mut tcp_sweep = tokio::time::interval(Duration::from_millis(500));
    tcp_sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut hangup_deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = core.poll_timeout().map(tokio::time::Instant::from_std);
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            received = udp.recv(&mut buf) => {
                let mut received = received;
                // A burst already queued is taken in this one wakeup, bounded so the media events
                // and timers wait at most UDP_BURST datagrams; its media commands, records and log
                // lines leave together.
                media.hold();
                writers.iter().for_each(|w| w.hold());
                let held_lines = crate::telemetry::logs::hold_lines();
                for turn in 1..=UDP_BURST {
                    let Ok(r) = received else { break };
                    // `r.dst`: the address the peer sent to, not the wildcard the socket is bound to.
                    let peer = Peer { transport: Transport::Udp, addr: r.from, local: r.dst };
                    let now = crate::clock::now();
                    core.handle_udp(now, peer, &buf[..r.len]).await;
                    if turn == UDP_BURST {
                        break;
                    }
                    received = udp.try_recv_now(&mut buf);
                }
                drop(held_lines);
                writers.iter().for_each(|w| w.release());
                media.release();
            }
            Some(inbound) = tcp_rx.recv() => {
                core.handle_tcp(crate::clock::now(), inbound).await;
            }
            Some((id, event)) = media_rx.recv() => {
                core.handle_media(crate::clock::now(), id, event).await;
            }
            Some(query) = query_rx.recv() => core.answer(crate::clock::now(), query).await,
            _ = tcp_sweep.tick() => core.sweep_tcp(crate::clock::now()),
            _ = live_tick.tick(), if live_on => core.tick_live(crate::clock::now()),
            Ok(()) = menus_rx.changed() => {
                let menus = menus_rx.borrow_and_update().clone();
                core.set_menus(crate::clock::now(), menus).await;
            }
            Some((live, new_drain)) = settings_rx.recv() => {
                drain = new_drain;
                core.set_live(live);
            }
            _ = tokio::time::sleep_until(next.unwrap_or(far)) => {
                core.handle_timeout(crate::clock::now()).await;
            }
            _ = recv_signal(&mut terminate), if drain_deadline.is_none() => {
                ready.draining.store(true, Ordering::Relaxed);
                tracing::info!(calls = core.call_count(), "SIGTERM: refusing new calls, draining");
                core.handle_drain(crate::clock::now()).await;
                drain_deadline = Some(tokio::time::Instant::now() + drain);
            }
            _ = recv_signal(&mut interrupt), if drain_deadline.is_none() => {
                ready.draining.store(true, Ordering::Relaxed);
                tracing::info!(calls = core.call_count(), "SIGINT: refusing new calls, draining");
                core.handle_drain(crate::clock::now()).await;
                drain_deadline = Some(tokio::time::Instant::now() + drain);
            }
            _ = recv_signal(&mut reopen) => {
                // logrotate renamed the files (deploy/logrotate/helpline): new records go to new ones.
                tracing::info!("SIGUSR1: reopening the record files");
                for writer in cdr_writer.iter().chain(&queue_log_writer) {
                    writer.reopen();
                }
            }
            _ = sleep_opt(drain_deadline), if hangup_deadline.is_none() => {
                tracing::info!(calls = core.call_count(), "drain time over: hanging up");
                core.handle_hangup_all(crate::clock::now()).await;
                // The BYEs get a few seconds for their answers; Timer F would take 32 s.
                hangup_deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3));
            }
            _ = sleep_opt(hangup_deadline) => break,
        }
        if drain_deadline.is_some() && core.call_count() == 0 {
            break;
        }
    }
    tracing::info!("shutting down");
    acceptor.abort();
    reloader.abort();
    if let Some(task) = settings_task {
        task.abort();
    }
    upkeep.abort();
    if let Some(task) = http_task {
        task.abort();
    }
    // Calls whose BYE got no answer in time still get their CDR line.
    core.finish_all(crate::clock::now()).await;
    drop(core);
    // Every CDR and queue log record is written (or, if the file still refuses, logged) before exit:
    // each writer ends once the core's senders are gone.
    for writer in cdr_writer.into_iter().chain(queue_log_writer) {
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    }
    // The media thread ends when the last handle is dropped.
    drop(media);
    if let Some(writer) = capture {
        // Every capture file is complete before exit.
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
    }
    Ok(())
}

/// What the call layer needs from the server configuration. The wall clock is read once, here: the call
/// layer maps every instant onto it (`--pretend-time` shifts it).
fn calls_config(cfg: &ServerConfig, sip_local: SocketAddr) -> CallsConfig {
    let instant = crate::clock::now();
    // The server's clock (`--pretend-time` included), the one the log lines are stamped with.
    let wall = crate::clock::wall_at(instant);
    CallsConfig {
        timers: cfg.timers,
        rtp_ports: cfg.rtp_ports,
        rtp_timeout: cfg.rtp_timeout,
        first_prompt_delay: cfg.first_prompt_delay,
        max_ivr: cfg.max_ivr,
        ring: cfg.ring,
        advertise_ip: cfg.advertise_ip,
        wall: WallClock { instant, wall },
        local: sip_local,
        // `--server-header` sets this once the CLI carries it; the default names no version.
        server_header: cfg.server_header.clone(),
        capture: cfg.trace_dir.is_some(),
        guard: cfg.guard.clone(),
        admission: cfg.admission,
    }
}

/// Moves histogram samples into their buckets every few seconds, scraped or not (bounded memory).
async fn upkeep(metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.upkeep();
    }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}
