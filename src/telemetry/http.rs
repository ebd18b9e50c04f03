//! `serve --http`: `/metrics`, `/health/live`, `/health/ready`, `GET /calls/{call-id}` and the
//! supervisor view (`supervisor`: `/`, `/api/live`, `/events`, …) (axum, on the server's runtime). Handlers read atomics and the metrics recorder, or ask the signalling core
//! through a bounded channel with a timeout; they never hold anything the core needs per message.
//! It decides nothing about calls and writes no files.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
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

/// The state of a file a JSON-lines writer appends to (`server::jsonl`), shared by the writer, the
/// signalling core (is the spool full?) and `/health/ready`: whether it is open, and how many records
/// wait in the writer's spool.
#[derive(Debug)]
pub struct FileHealth {
    /// The file.
    pub path: PathBuf,
    /// What it holds, as readiness reports it ("cdr", "queue log").
    what: &'static str,
    state: AtomicU8,
    /// The writer has had the file open at least once (a failure after that is what the spool is for).
    ever_open: AtomicBool,
    /// Records handed to the writer and not yet in the file: the spool.
    pending: AtomicUsize,
    /// The spool's size: at this many records new calls are refused, past half of it readiness fails.
    limit: usize,
    /// Woken when the writer first reports (opened or failed).
    settled: tokio::sync::Notify,
}

const OPENING: u8 = 0;
const OPEN: u8 = 1;
const FAILED: u8 = 2;

impl FileHealth {
    /// A file not opened yet, whose writer spools up to `limit` records (at least 1).
    pub fn new(path: PathBuf, what: &'static str, limit: usize) -> FileHealth {
        FileHealth {
            path,
            what,
            state: AtomicU8::new(OPENING),
            ever_open: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            limit: limit.max(1),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// The writer has it open and its last write worked.
    pub fn set_ok(&self) {
        self.ever_open.store(true, Ordering::Relaxed);
        self.state.store(OPEN, Ordering::Relaxed);
        self.settled.notify_one();
    }

    /// The file could not be opened, or a write failed.
    pub fn set_failed(&self) {
        self.state.store(FAILED, Ordering::Relaxed);
        self.settled.notify_one();
    }

    /// One more record handed to the writer.
    pub fn add_pending(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// One record is in the file (or, at exit, given up and logged).
    pub fn remove_pending(&self) {
        // Saturating: never below zero even if a caller miscounts.
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Records handed to the writer and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The spool's size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The spool holds its limit: new calls must be refused so that no record is ever dropped.
    pub fn is_full(&self) -> bool {
        self.pending() >= self.limit
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

    /// Why the file is not writable, if it is not: never opened yet, a spool past half its size, then
    /// (the writer thinks all is well) a test open for appending — without creating it: a deleted
    /// file takes no lines until the writer's next record recreates it.
    ///
    /// A write that failed with records still few in the spool is not a reason: they are kept and
    /// retried; a dispatcher is told to send calls elsewhere only once half the spool is used.
    async fn problem(&self) -> Option<String> {
        let (path, what) = (self.path.display(), self.what);
        let pending = self.pending();
        if pending > self.limit / 2 {
            return Some(format!(
                "{what} file {path} not writable: {pending} records wait in the spool (limit {})",
                self.limit
            ));
        }
        match self.state.load(Ordering::Relaxed) {
            OPENING => return Some(format!("{what} file {path} not open yet")),
            FAILED if !self.ever_open.load(Ordering::Relaxed) => {
                return Some(format!("{what} file {path} not writable"))
            }
            _ => {}
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.append(true);
        match tokio::time::timeout(CDR_CHECK_TIMEOUT, options.open(&self.path)).await {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => Some(format!("{what} file {path} not writable: {err}")),
            Err(_) => Some(format!("{what} file {path} did not open within 1 s")),
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
    /// The record files (`--cdr`, `--queue-log`) there are.
    pub files: Vec<Arc<FileHealth>>,
}

impl Readiness {
    /// Nothing up yet; `files` are the record files' states (`--cdr`, `--queue-log`).
    pub fn new(files: Vec<Arc<FileHealth>>) -> Readiness {
        Readiness {
            files,
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
        for file in &self.files {
            out.extend(file.problem().await);
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
