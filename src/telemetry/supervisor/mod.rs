//! The supervisor web view on the `--http` port: the login form, the live page at `/` (HTML, CSS and
//! JS embedded in the binary, no build step), `GET /api/live` (the snapshot as JSON), `GET /events`
//! (the same JSON as Server-Sent Events, one per change), break/back for an agent, and logout.
//!
//! Everything but the login form and its stylesheet needs a session cookie (HttpOnly, SameSite=Strict);
//! every state-changing request also needs the session's CSRF token (`X-CSRF-Token` header, or a
//! `csrf` form field) and gets 403 without it. Failed logins are throttled per source address.
//!
//! It decides nothing about calls: the snapshot comes from the call layer through the shell (a watch
//! channel, see `server::live`), and break/back go to the signalling core as commands on the HTTP
//! side's bounded query channel, where they take the `*50`/`*51` transitions.
pub mod auth;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::call::{LiveView, SupervisorCommand};
use crate::ivr::MenuSet;
use crate::telemetry::http::{HttpState, Query};
use crate::telemetry::report::Funnel;
use auth::{Access, Sessions, Throttle};

const COOKIE: &str = "helpline_session";
const PAGE: &str = include_str!("page.html");
const LOGIN: &str = include_str!("login.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
/// Only our own scripts, styles and connections; no framing (clickjacking), no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The hash checked for an unknown name (of a random password nobody knows), so that a wrong name and a
/// wrong password take the same time. Made once, at the first such login.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| auth::hash_password(&auth::random_token()).unwrap_or_default())
        .clone()
}

/// What the live page shows: the call layer's snapshot and today's IVR funnel per region.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LivePage {
    /// Queues, agents, calls (the names are an interface: `queues`, `agents`, `calls`, …).
    #[serde(flatten)]
    pub view: LiveView,
    /// Per region: today's calls, how many reached a route, where the others left (`helpline report`'s
    /// funnel over the CDRs of calls finished since the server started or since local midnight).
    pub funnel: BTreeMap<String, Funnel>,
}

/// The supervisor view's shared state.
pub struct Supervision {
    menus: watch::Receiver<Arc<MenuSet>>,
    /// The last published page; the core publishes while a stream watches (see `server::live`).
    live: watch::Receiver<Arc<LivePage>>,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
}

impl Supervision {
    /// The view over these menus (supervisors' password hashes) and this snapshot channel.
    pub fn new(
        menus: watch::Receiver<Arc<MenuSet>>,
        live: watch::Receiver<Arc<LivePage>>,
    ) -> Supervision {
        Supervision {
            menus,
            live,
            sessions: Mutex::new(Sessions::default()),
            throttle: Mutex::new(Throttle::default()),
        }
    }

    fn session(&self, headers: &HeaderMap) -> Option<auth::Session> {
        let token = cookie(headers)?;
        // A poisoned lock means a handler panicked mid-update: the map is still a valid map.
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(Instant::now(), &token)
    }

    fn access(&self, headers: &HeaderMap, csrf: Option<&str>) -> Access {
        let token = cookie(headers);
        let header_csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.check(Instant::now(), token.as_deref(), header_csrf.or(csrf))
    }
}

/// The view's routes, merged into the `--http` router.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/app.css", get(css))
        .route("/app.js", get(js))
        .route("/api/live", get(api_live))
        .route("/events", get(events))
        .route("/api/agents/{id}/break", post(agent_break))
        .route("/api/agents/{id}/back", post(agent_back))
}

/// The session token from the `Cookie` header.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    response
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
    };
    html(status, LOGIN.replace("{{message}}", &message))
}

fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "log in first: GET /\n").into_response();
    secure_headers(r.headers_mut());
    r
}

fn forbidden() -> Response {
    let mut r = (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    secure_headers(r.headers_mut());
    r
}

fn supervision(state: &HttpState) -> &Supervision {
    &state.supervision
}

async fn index(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match supervision(&state).session(&headers) {
        Some(session) => html(
            StatusCode::OK,
            PAGE.replace("{{csrf}}", &escape(&session.csrf))
                .replace("{{user}}", &escape(&session.user)),
        ),
        None => login_page(StatusCode::OK, ""),
    }
}

async fn css() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response();
    secure_headers(r.headers_mut());
    r
}

async fn js(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if supervision(&state).session(&headers).is_none() {
        return unauthorized();
    }
    let mut r = (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        APP_JS,
    )
        .into_response();
    secure_headers(r.headers_mut());
    r
}

/// The login form's fields.
#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let sup = supervision(&state);
    let source = peer.ip();
    let locked = {
        let mut throttle = sup.throttle.lock().unwrap_or_else(|e| e.into_inner());
        throttle.check(Instant::now(), source)
    };
    if let Err(wait) = locked {
        let mut r = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins from this address: wait a minute and try again.",
        );
        let secs = wait.as_secs().max(1).to_string();
        if let Ok(v) = HeaderValue::from_str(&secs) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let hash = sup
        .menus
        .borrow()
        .supervisor_hash(&form.user)
        .map(str::to_owned);
    let known = hash.is_some();
    let hash = hash.unwrap_or_default();
    let password = form.password;
    // Argon2 takes tens of milliseconds of CPU on purpose: off the runtime's worker threads.
    let ok = tokio::task::spawn_blocking(move || {
        let hash = if hash.is_empty() { dummy_hash() } else { hash };
        auth::verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false)
        && known;
    if !ok {
        sup.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(Instant::now(), source);
        tracing::info!(%source, "supervisor login failed");
        return login_page(StatusCode::UNAUTHORIZED, "Wrong name or password.");
    }
    sup.throttle
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .succeeded(source);
    let token = auth::random_token();
    sup.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .create(
            Instant::now(),
            &form.user,
            token.clone(),
            auth::random_token(),
        );
    tracing::info!(user = %form.user, %source, "supervisor logged in");
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        auth::SESSION_IDLE.as_secs()
    );
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure_headers(r.headers_mut());
    r
}

/// A form that carries only the CSRF token (logout).
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let sup = supervision(&state);
    // No form at all is no token, not a 415: the answer must not depend on how the request is built.
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    match sup.access(&headers, csrf.as_deref()) {
        Access::NoSession => return unauthorized(),
        Access::BadCsrf => return forbidden(),
        Access::Granted(user) => tracing::info!(%user, "supervisor logged out"),
    }
    if let Some(token) = cookie(&headers) {
        sup.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&token);
    }
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A fresh page from the core (not the last published one, which may be old when nobody watched).
async fn fresh(state: &HttpState) -> Option<Arc<LivePage>> {
    let (tx, rx) = oneshot::channel();
    state.core.try_send(Query::Live(tx)).ok()?;
    tokio::time::timeout(crate::telemetry::http::CORE_TIMEOUT, rx)
        .await
        .ok()?
        .ok()
}

fn json_of(page: &LivePage) -> String {
    // A page of strings, numbers and maps with string keys always serialises.
    serde_json::to_string(page).unwrap_or_else(|_| "{}".to_owned())
}

async fn api_live(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if supervision(&state).session(&headers).is_none() {
        return unauthorized();
    }
    let Some(page) = fresh(&state).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the signalling core did not answer\n",
        )
            .into_response();
    };
    let mut r = ([(header::CONTENT_TYPE, "application/json")], json_of(&page)).into_response();
    secure_headers(r.headers_mut());
    r
}

/// What one event stream remembers.
struct Stream {
    state: HttpState,
    token: String,
    live: watch::Receiver<Arc<LivePage>>,
    first: bool,
}

async fn events(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let sup = supervision(&state);
    if sup.session(&headers).is_none() {
        return unauthorized();
    }
    let Some(token) = cookie(&headers) else {
        return unauthorized();
    };
    let mut live = sup.live.clone();
    live.mark_unchanged();
    let start = Stream {
        state: state.clone(),
        token,
        live,
        first: true,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        let page = if s.first {
            s.first = false;
            fresh(&s.state)
                .await
                .unwrap_or_else(|| s.live.borrow().clone())
        } else {
            s.live.changed().await.ok()?;
            s.live.borrow_and_update().clone()
        };
        // Logged out or expired: the stream ends (the page then shows the login form).
        let alive = {
            let mut sessions = s
                .state
                .supervision
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            sessions.get(Instant::now(), &s.token).is_some()
        };
        if !alive {
            return None;
        }
        let event = Event::default().event("live").data(json_of(&page));
        Some((Ok::<_, std::convert::Infallible>(event), s))
    });
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    secure_headers(r.headers_mut());
    r
}

async fn agent_break(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    agent_command(state, headers, id, true).await
}

async fn agent_back(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    agent_command(state, headers, id, false).await
}

async fn agent_command(
    state: HttpState,
    headers: HeaderMap,
    id: String,
    on_break: bool,
) -> Response {
    let user = match supervision(&state).access(&headers, None) {
        Access::NoSession => return unauthorized(),
        Access::BadCsrf => return forbidden(),
        Access::Granted(user) => user,
    };
    let Some(agent) = crate::agent::AgentId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "no such agent\n").into_response();
    };
    let command = if on_break {
        SupervisorCommand::Break(agent)
    } else {
        SupervisorCommand::Back(agent)
    };
    tracing::info!(%user, ?command, "supervisor request");
    let (tx, rx) = oneshot::channel();
    if state.core.try_send(Query::Supervisor(command, tx)).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the signalling core is busy\n",
        )
            .into_response();
    }
    match tokio::time::timeout(crate::telemetry::http::CORE_TIMEOUT, rx).await {
        Ok(Ok(Ok(()))) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(Err(crate::agent::presence::AgentError::UnknownAgent(_)))) => {
            (StatusCode::NOT_FOUND, "no such agent\n").into_response()
        }
        Ok(Ok(Err(err))) => (StatusCode::CONFLICT, format!("{err}\n")).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the signalling core did not answer\n",
        )
            .into_response(),
    }
}
