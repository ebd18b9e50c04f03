//! `serve --http`: `/metrics`, `/health/live`, `/health/ready`, `GET /calls/{call-id}` and the
//! supervisor view (`supervisor`: `/`, `/api/live`, `/events`, …) (axum, on the server's runtime). Handlers read atomics and the metrics recorder, or ask the signalling core
//! through a bounded channel with a timeout; they never hold anything the core needs per message.
//! It decides nothing about calls and writes no files.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::server::media_engine::SendStats;
use crate::telemetry::metrics::{CoreSnapshot, Metrics};

/// How long a handler waits for the core (queue + answer) before giving up with 503.
pub const CORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the readiness check's write test of the CDR file may take.
const CDR_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Queries that may wait for the core at once; more get 503 at once.
pub const QUERY_QUEUE: usize = 64;

/// What a handler asks the signalling core.
#[derive(Debug)]
pub enum Query {
    /// The registry's counters and gauges.
    Snapshot(oneshot::Sender<CoreSnapshot>),
    /// The CDR line of a recent finished call, by SIP Call-ID.
    Cdr(String, oneshot::Sender<Option<Arc<str>>>),
    /// The supervisor view's page now.
    Live(oneshot::Sender<Arc<crate::telemetry::supervisor::LivePage>>),
    /// A supervisor's break or back for an agent, and whether presence took it.
    Supervisor(
        crate::call::SupervisorCommand,
        oneshot::Sender<Result<(), crate::agent::presence::AgentError>>,
    ),
}

/// The state of a file a JSON-lines writer appends to.
#[derive(Debug)]
pub struct FileHealth {
    /// The file.
    pub path: PathBuf,
    state: AtomicU8,
    /// Woken when the writer first reports (opened or failed).
    settled: tokio::sync::Notify,
}

const OPENING: u8 = 0;
const OPEN: u8 = 1;
const FAILED: u8 = 2;

impl FileHealth {
    /// A file not opened yet.
    pub fn new(path: PathBuf) -> FileHealth {
        FileHealth {
            path,
            state: AtomicU8::new(OPENING),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// The writer has it open and its last write worked.
    pub fn set_ok(&self) {
        self.state.store(OPEN, Ordering::Relaxed);
        self.settled.notify_one();
    }

    /// The file could not be opened, or a write failed.
    pub fn set_failed(&self) {
        self.state.store(FAILED, Ordering::Relaxed);
        self.settled.notify_one();
    }

    /// Waits (at most `limit`) until the writer has tried to open the file, so that readiness is
    /// known when the server says it is listening.
    pub async fn wait_settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.state.load(Ordering::Relaxed) == OPENING {
            if tokio::time::timeout_at(deadline, self.settled.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Why the file is not writable, if it is not: the writer's own state, then (the writer thinks all
    /// is well) a test open for appending — without creating it: a deleted file means the writer's
    /// lines go nowhere any more.
    async fn problem(&self) -> Option<String> {
        let path = self.path.display();
        match self.state.load(Ordering::Relaxed) {
            OPENING => return Some(format!("cdr file {path} not open yet")),
            FAILED => return Some(format!("cdr file {path} not writable")),
            _ => {}
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.append(true);
        match tokio::time::timeout(CDR_CHECK_TIMEOUT, options.open(&self.path)).await {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(format!("cdr file {path} not writable: {err}")),
            Err(_) => Some(format!("cdr file {path} did not open within 1 s")),
        }
    }
}

/// What `/health/ready` checks; set by the shell as the server comes up and goes down.
#[derive(Debug, Default)]
pub struct Readiness {
    /// SIP UDP and TCP sockets are bound.
    pub sip_bound: AtomicBool,
    /// The media engine runs.
    pub media_started: AtomicBool,
    /// Menus and prompts are loaded and live.
    pub menus_loaded: AtomicBool,
    /// SIGTERM/SIGINT came: calls finish, new ones are refused.
    pub draining: AtomicBool,
    /// The `--cdr` file, when there is one.
    pub cdr: Option<Arc<FileHealth>>,
}

impl Readiness {
    /// Nothing up yet; `cdr` is the CDR file's state when `--cdr` is given.
    pub fn new(cdr: Option<Arc<FileHealth>>) -> Readiness {
        Readiness {
            cdr,
            ..Readiness::default()
        }
    }

    /// Every reason not to send calls here (empty: ready).
    pub async fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.sip_bound.load(Ordering::Relaxed) {
            out.push("sip sockets not bound".to_owned());
        }
        if !self.media_started.load(Ordering::Relaxed) {
            out.push("media engine not started".to_owned());
        }
        if !self.menus_loaded.load(Ordering::Relaxed) {
            out.push("menus and prompts not loaded".to_owned());
        }
        if self.draining.load(Ordering::Relaxed) {
            out.push("draining: shutting down, calls in progress finish".to_owned());
        }
        if let Some(cdr) = &self.cdr {
            out.extend(cdr.problem().await);
        }
        out
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct HttpState {
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The readiness flags.
    pub ready: Arc<Readiness>,
    /// The way to the signalling core.
    pub core: mpsc::Sender<Query>,
    /// The media engine's counters.
    pub media: Arc<SendStats>,
    /// The supervisor view's sessions and snapshot channel.
    pub supervision: Arc<crate::telemetry::supervisor::Supervision>,
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .route("/calls/{call_id}", get(call))
        .merge(crate::telemetry::supervisor::routes())
        .with_state(state)
}

/// Serves `router` on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState) {
    // The peer's address: the supervisor login throttle counts failures per source.
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(%err, "http server stopped");
    }
}

/// Binds the HTTP listener (port 0 picks a free one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Asks the core; `None` when it is busy, gone or slower than [`CORE_TIMEOUT`].
async fn ask<T>(
    core: &mpsc::Sender<Query>,
    make: impl FnOnce(oneshot::Sender<T>) -> Query,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    core.try_send(make(tx)).ok()?;
    tokio::time::timeout(CORE_TIMEOUT, rx).await.ok()?.ok()
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(snapshot) = ask(&state.core, Query::Snapshot).await else {
        return unavailable("the signalling core did not answer");
    };
    let ready = state.ready.problems().await.is_empty();
    state
        .metrics
        .publish(ready, &snapshot, &state.media.snapshot());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn ready(State(state): State<HttpState>) -> Response {
    let problems = state.ready.problems().await;
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        unavailable(&problems.join("\n"))
    }
}

async fn call(State(state): State<HttpState>, Path(call_id): Path<String>) -> Response {
    match ask(&state.core, |tx| Query::Cdr(call_id, tx)).await {
        Some(Some(line)) => (
            [(header::CONTENT_TYPE, "application/json")],
            line.to_string(),
        )
            .into_response(),
        Some(None) => (
            StatusCode::NOT_FOUND,
            "no recent finished call has this Call-ID\n",
        )
            .into_response(),
        None => unavailable("the signalling core did not answer"),
    }
}
