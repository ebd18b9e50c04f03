//! The supervisor web view in a real browser: headless Chromium (Debian `chromium` + `chromium-driver`,
//! driven over WebDriver with fantoccini) against the real `helpline serve --http 127.0.0.1:0`, while
//! SIPp callers dial the China number and press 3 (`china.seller-disputes`) and SIPp agents register
//! and answer. One scenario, in order:
//! - without a session only the login form is served (`/`, `/app.js`, `/api/live`, `/events` and the
//!   break/back POSTs over plain HTTP) and a wrong password is refused;
//! - after login the page shows the first caller waiting in `china.seller-disputes`, then answered by
//!   agent `wang` (who is started only once the caller is seen waiting);
//! - `wang` is put on break from the page (the Break button); the queue is top-down with `wang` first,
//!   so the next caller would be his if he were available: it goes to `zhao`, and `wang` stays on break
//!   with no caller;
//! - the page is photographed into docs/supervisor.png (README shows it);
//! - over plain HTTP with a session: `/api/live` has the names later tools rely on, a wrong CSRF token
//!   is refused (403, nothing changes) and the right one works; five wrong passwords lock the source
//!   out even for the right one (429).
//!
//! The supervisor's password hash comes from `helpline passwd --supervisor`, as an admin would make it.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_media_port, free_udp_port, menus_with_sample_agents, run_sipp, sipp, temp_dir, Server,
    SippRun,
};
use fantoccini::{Client, ClientBuilder, Locator};
use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256};

const CHINA: &str = "4000009999";
const CALLER: &str = "examples/sipp/caller_seller_disputes.xml";
const QUEUE: &str = "china.seller-disputes";
const SUPERVISOR: &str = "mei";
const SUPERVISOR_PASSWORD: &str = "watch the queues 42";
const REALM: &str = "helpline";
/// Bound on anything the page should show: a few seconds of SIP and prompts at most.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
const SIPP_TIMEOUT: Duration = Duration::from_secs(40);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `password_hash = "…"` line `helpline passwd --supervisor NAME` prints for `password`.
fn supervisor_hash_line(name: &str, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["passwd", "--supervisor", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helpline passwd");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("helpline passwd runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let line = text.trim().to_owned();
    assert!(line.starts_with("password_hash = \"$argon2id$"), "{line}");
    line
}

/// The shipped menus plus two agents of the China disputes line (wang declared first), the queue
/// top-down with no wrap-up (so the next caller goes to wang whenever he is available), and one
/// supervisor.
fn menus() -> PathBuf {
    let mut text = String::new();
    for (id, name) in [("wang", "Wang Fang"), ("zhao", "Zhao Lei")] {
        let a1 = format!("{id}:{REALM}:{id}-secret");
        text.push_str(&format!(
            "[agents.{id}]\nname = \"{name}\"\nha1 = \"{}\"\nha1_sha256 = \"{}\"\n\
             queues = [\"{QUEUE}\"]\nlanguages = [\"zh\"]\n\n",
            hex(&Md5::digest(a1.as_bytes())),
            hex(&Sha256::digest(a1.as_bytes())),
        ));
    }
    text.push_str(&format!(
        "[queues.\"{QUEUE}\"]\nstrategy = \"top-down\"\nwrap_up = \"0s\"\nwhen_no_agents = \"wait\"\n\
         ring_timeout = \"10s\"\n\n[supervisors.{SUPERVISOR}]\n{}\n",
        supervisor_hash_line(SUPERVISOR, SUPERVISOR_PASSWORD)
    ));
    menus_with_sample_agents(|_| text)
}

/// The `http:` address of the server's `listening on` line.
fn http_addr(server: &Server) -> SocketAddr {
    let line = server
        .wait_log("listening on udp:", Duration::from_secs(5))
        .expect("listening line");
    line.split("http:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an http address")
        .parse()
        .expect("a socket address")
}

/// One plain HTTP/1.1 exchange (Connection: close): status, headers (lowercase names), body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).expect("connect to --http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn form(user: &str, password: &str) -> String {
    let enc = |s: &str| s.replace('%', "%25").replace(' ', "+").replace('&', "%26");
    format!("user={}&password={}", enc(user), enc(password))
}

/// Logs in over plain HTTP: the session cookie and the page's CSRF token.
fn login(addr: SocketAddr) -> (String, String) {
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");
    let body = form(SUPERVISOR, SUPERVISOR_PASSWORD);
    let (status, headers, _) = http(addr, "POST", "/login", &[ctype], &body);
    assert_eq!(status, 303, "login");
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let (status, _, page) = http(addr, "GET", "/", &[("Cookie", &pair)], "");
    assert_eq!(status, 200);
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page carries a CSRF token")
        .to_owned();
    (pair, csrf)
}

/// Without a session: the login form, and 401 for everything else.
fn check_nothing_without_login(addr: SocketAddr) {
    let (status, _, body) = http(addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("action=\"/login\""), "{body}");
    assert!(
        !body.contains("agents-table") && !body.contains("csrf-token"),
        "{body}"
    );
    for path in ["/api/live", "/events", "/app.js"] {
        let (status, _, body) = http(addr, "GET", path, &[], "");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!body.contains(QUEUE), "{path}: {body}");
    }
    for path in ["/api/agents/wang/break", "/api/agents/wang/back", "/logout"] {
        let (status, _, _) = http(addr, "POST", path, &[("X-CSRF-Token", "x")], "");
        assert_eq!(status, 401, "{path}");
    }
    // A forged cookie is no session either.
    let forged = (
        "Cookie",
        "helpline_session=00000000000000000000000000000000",
    );
    let (status, _, _) = http(addr, "GET", "/api/live", &[forged], "");
    assert_eq!(status, 401);
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");
    let (status, headers, body) =
        http(addr, "POST", "/login", &[ctype], &form(SUPERVISOR, "wrong"));
    assert_eq!(status, 401, "{body}");
    assert!(!headers.iter().any(|(k, _)| k == "set-cookie"));
    assert!(body.contains("Wrong name or password"), "{body}");
}

/// chromedriver on a free port, ended by its PID when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new("chromedriver")
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver) is installed");
        let stdout = child.stdout.take().expect("stdout piped");
        // It says so on stdout once it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("chromedriver started");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Waits (bounded) until the page has an element matching `xpath`; returns its text.
async fn wait_for(c: &Client, xpath: &str, what: &str) -> String {
    match c
        .wait()
        .at_most(PAGE_TIMEOUT)
        .every(Duration::from_millis(100))
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(err) => {
            let page = c.source().await.unwrap_or_default();
            panic!("the page never showed {what} ({xpath}): {err}\n--- page ---\n{page}");
        }
    }
}

/// One SIPp agent phone (examples/sipp/agent.xml) that answers after 200 ms and hangs up after
/// `talk_ms`; killed by its PID when dropped.
struct SippAgent(Child);

impl SippAgent {
    fn start(server: &Server, id: &str, talk_ms: u64) -> SippAgent {
        let root = common::root();
        let child = Command::new(sipp())
            .current_dir(temp_dir(&format!("sv-agent-{id}")))
            .arg("-sf")
            .arg(root.join("examples/sipp/agent.xml"))
            .arg("-oocsf")
            .arg(root.join("examples/sipp/agent_call.xml"))
            .arg(server.addr.to_string())
            .args(["-i", "127.0.0.1", "-t", "u1", "-m", "1"])
            .args(["-s", id, "-ap", &format!("{id}-secret")])
            .args(["-p", &free_udp_port().to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args(["-nostdin", "-timeout", "60s"])
            .args(["-set", "calls", "0", "-set", "ring_ms", "200"])
            .args(["-set", "talk_ms", &talk_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipp");
        SippAgent(child)
    }
}

impl Drop for SippAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A China caller pressing 3, on its own thread (SIPp blocks); its Call-IDs start with `prefix`.
fn caller(server: &Server, prefix: &str) -> std::thread::JoinHandle<SippRun> {
    let addr = server.addr;
    let cid = format!("{prefix}-%u-%p@%s");
    std::thread::spawn(move || {
        run_sipp(
            addr,
            CALLER,
            &["-s", CHINA, "-m", "1", "-cid_str", &cid],
            SIPP_TIMEOUT,
        )
    })
}

fn assert_sipp_ok(run: SippRun, what: &str, server: &Server) {
    assert!(
        run.status.success(),
        "{what}: sipp exited {:?}\n{}\n--- server ---\n{}",
        run.status.code(),
        run.output,
        server.log_text()
    );
}

/// The CDR of the call whose Call-ID starts with `prefix`, once `n` calls have ended.
fn cdr_with_prefix(server: &Server, n: usize, prefix: &str) -> Value {
    server
        .wait_cdrs(n, Duration::from_secs(10))
        .into_iter()
        .find(|c| {
            c["call_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no CDR for {prefix}:\n{}", server.log_text()))
}

fn agent_row(agent: &str, field: &str, text: &str) -> String {
    format!("//tr[@data-agent='{agent}']/td[@data-field='{field}' and starts-with(normalize-space(.), '{text}')]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_watches_the_china_disputes_line_and_puts_an_agent_on_break() {
    let started = Instant::now();
    let menus = menus();
    let server = Server::start(&menus, &["--http", "127.0.0.1:0"]);
    let addr = http_addr(&server);
    check_nothing_without_login(addr);

    let driver = Driver::start();
    let c = browser(&driver, &temp_dir("chromium-profile")).await;
    let base = format!("http://{addr}");
    c.goto(&format!("{base}/")).await.expect("open the view");
    // Without a session the browser gets the login form and nothing else.
    c.find(Locator::Css("form#login"))
        .await
        .expect("the login form");
    assert!(c.find(Locator::Css("#agents-table")).await.is_err());
    c.find(Locator::Id("user"))
        .await
        .expect("name field")
        .send_keys(SUPERVISOR)
        .await
        .expect("type the name");
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(SUPERVISOR_PASSWORD)
        .await
        .expect("type the password");
    c.find(Locator::Css("form#login button[type=submit]"))
        .await
        .expect("the log in button")
        .click()
        .await
        .expect("log in");
    wait_for(
        &c,
        "//span[@id='connection' and .='live']",
        "the live stream",
    )
    .await;

    // A caller reaches the disputes line while nobody is logged in: they wait, and the page shows it.
    let caller1 = caller(&server, "sv1");
    let waiting = format!("//div[@data-queue='{QUEUE}']//tr[starts-with(@data-call-id, 'sv1-')]");
    wait_for(&c, &waiting, "the first caller waiting").await;
    let text = wait_for(
        &c,
        &format!("//div[@data-queue='{QUEUE}']//dd[@data-field='waiting-count']"),
        "the count",
    )
    .await;
    assert_eq!(text, "1");

    // wang logs in and takes the call: the page shows him talking to that caller.
    let _wang = SippAgent::start(&server, "wang", 1500);
    wait_for(
        &c,
        &agent_row("wang", "caller", "sv1-"),
        "wang talking to the first caller",
    )
    .await;
    wait_for(&c, &agent_row("wang", "state", "in call"), "wang in call").await;
    wait_for(&c, "//table[@id='calls-table']//tr[starts-with(@data-call-id, 'sv1-')]/td[@data-where='agent:wang']", "the call with wang").await;

    // The supervisor puts wang on break from the page.
    c.find(Locator::Css(
        "button[data-agent='wang'][data-action='break']",
    ))
    .await
    .expect("wang's Break button")
    .click()
    .await
    .expect("click Break");
    wait_for(
        &c,
        &agent_row("wang", "status", "on break"),
        "wang on break",
    )
    .await;
    assert_sipp_ok(
        caller1.join().expect("caller thread"),
        "first caller",
        &server,
    );
    assert_eq!(cdr_with_prefix(&server, 1, "sv1-")["agent"], "wang");
    wait_for(
        &c,
        &agent_row("wang", "state", "idle"),
        "wang idle (on break)",
    )
    .await;

    // zhao logs in; the next caller goes to zhao although wang is first in the top-down order and idle.
    let _zhao = SippAgent::start(&server, "zhao", 4000);
    wait_for(
        &c,
        &agent_row("zhao", "status", "available"),
        "zhao available",
    )
    .await;
    let caller2 = caller(&server, "sv2");
    wait_for(
        &c,
        &agent_row("zhao", "caller", "sv2-"),
        "zhao talking to the second caller",
    )
    .await;
    wait_for(
        &c,
        &agent_row("wang", "status", "on break"),
        "wang still on break",
    )
    .await;
    wait_for(
        &c,
        &agent_row("wang", "caller", "–"),
        "wang without a caller",
    )
    .await;
    wait_for(&c, &agent_row("zhao", "state", "in call"), "zhao in call").await;
    wait_for(&c, "//div[@data-funnel='china']", "the china funnel").await;
    let shot = c.screenshot().await.expect("a screenshot");
    std::fs::create_dir_all(common::root().join("docs")).expect("docs/");
    std::fs::write(common::root().join("docs/supervisor.png"), shot)
        .expect("write docs/supervisor.png");
    let _ = c.close().await;
    drop(driver);

    assert_sipp_ok(
        caller2.join().expect("caller thread"),
        "second caller",
        &server,
    );
    assert_eq!(cdr_with_prefix(&server, 2, "sv2-")["agent"], "zhao");
    check_api_and_csrf(addr);
    check_throttle(addr);
    eprintln!("supervisor view test took {:?}", started.elapsed());
}

/// `/api/live`'s names, and CSRF: a wrong token changes nothing (403), the right one works (204).
fn check_api_and_csrf(addr: SocketAddr) {
    let (cookie, csrf) = login(addr);
    let live = |cookie: &str| -> Value {
        let (status, _, body) = http(addr, "GET", "/api/live", &[("Cookie", cookie)], "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let page = live(&cookie);
    let queue = page["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == QUEUE)
        .expect("the disputes queue")
        .clone();
    assert!(queue["waiting"].is_array());
    assert_eq!(queue["answered"], 2);
    assert_eq!(queue["abandoned"], 0);
    let wang = |page: &Value| -> Value {
        page["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .find(|a| a["id"] == "wang")
            .expect("wang")
            .clone()
    };
    let w = wang(&page);
    assert_eq!(w["name"], "Wang Fang");
    assert_eq!(w["status"], "on-break");
    assert!(w["state"].is_string() && w["since_ms"].is_u64(), "{w}");
    assert!(page["calls"].is_array());
    for call in page["calls"].as_array().expect("calls") {
        assert!(
            call["call_id"].is_string() && call["where"].is_string() && call["since_ms"].is_u64()
        );
    }

    let back = "/api/agents/wang/back";
    let (status, _, _) = http(
        addr,
        "POST",
        back,
        &[("Cookie", &cookie), ("X-CSRF-Token", "0123")],
        "",
    );
    assert_eq!(status, 403, "a wrong CSRF token");
    let (status, _, _) = http(addr, "POST", back, &[("Cookie", &cookie)], "");
    assert_eq!(status, 403, "no CSRF token");
    assert_eq!(
        wang(&live(&cookie))["status"],
        "on-break",
        "nothing changed"
    );
    let (status, _, _) = http(
        addr,
        "POST",
        back,
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        "",
    );
    assert_eq!(status, 204, "the session's own token");
    assert_eq!(wang(&live(&cookie))["status"], "available");

    let ctype = ("Content-Type", "application/x-www-form-urlencoded");
    let (status, _, _) = http(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie), ctype],
        "csrf=nope",
    );
    assert_eq!(status, 403, "logout needs the token too");
    let body = format!("csrf={csrf}");
    let (status, _, _) = http(
        addr,
        "POST",
        "/logout",
        &[("Cookie", &cookie), ctype],
        &body,
    );
    assert_eq!(status, 303);
    let (status, _, _) = http(addr, "GET", "/api/live", &[("Cookie", &cookie)], "");
    assert_eq!(status, 401, "logged out");
}

/// Five wrong passwords from one address, and even the right one is refused for a while.
fn check_throttle(addr: SocketAddr) {
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");
    for _ in 0..5 {
        let (status, _, _) = http(addr, "POST", "/login", &[ctype], &form(SUPERVISOR, "guess"));
        assert_eq!(status, 401);
    }
    let (status, headers, _) = http(
        addr,
        "POST",
        "/login",
        &[ctype],
        &form(SUPERVISOR, SUPERVISOR_PASSWORD),
    );
    assert_eq!(status, 429);
    assert!(headers.iter().any(|(k, _)| k == "retry-after"));
    assert!(!headers.iter().any(|(k, _)| k == "set-cookie"));
}
