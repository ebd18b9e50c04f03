//! Shared test harness: starts the real `helpline` binary on loopback, a scripted SIP test UA over UDP and
//! TCP, an RTP receiver, and a SIPp runner. Every wait is bounded in time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod sim;

/// The repository root (tests run with the crate root as working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "helpline-test-{}-{}-{}",
        name,
        std::process::id(),
        rand_u32()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A fresh menus directory: the shipped `ivr-menus/*.toml` plus `examples/agents/agents.toml` (the sample
/// agents, passwords in `examples/agents/README.md`) as `edit` rewrites its text.
pub fn menus_with_sample_agents(edit: impl FnOnce(&str) -> String) -> PathBuf {
    let dir = temp_dir("agent-menus");
    copy_shipped_menus(&dir);
    let agents = std::fs::read_to_string(root().join("examples/agents/agents.toml"))
        .expect("examples/agents/agents.toml");
    std::fs::write(dir.join("agents.toml"), edit(&agents)).expect("write agents.toml");
    dir
}

/// One whole call to the first-flow number (`08000000001`) with its RTP on `rtp`: INVITE, 200, ACK,
/// our BYE and its 200, each awaited at most `wait`. Returns its Call-ID.
pub fn whole_call(server: &Server, rtp: &UdpSocket, wait: Duration) -> String {
    let mut ua = Ua::udp(server.addr);
    let port = rtp.local_addr().expect("rtp addr").port();
    let mut call = ua.invite("08000000001", &sdp_offer(port, "0 101", ""));
    let ok = ua.expect_response(200, wait);
    call.to_tag = ok.to_tag().expect("to-tag in the 200");
    ua.ack(&call, "");
    ua.in_dialog(&mut call, "BYE", "", "");
    ua.expect_response(200, wait);
    call.call_id
}

/// Copies the shipped `ivr-menus/*.toml` into `dir`.
pub fn copy_shipped_menus(dir: &Path) {
    for entry in std::fs::read_dir(root().join("ivr-menus")).expect("ivr-menus/") {
        let path = entry.expect("ivr-menus/ entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, dir.join(name)).expect("copy a menu file");
        }
    }
}

/// A copy of the shipped menus with key 7 of the main menu transferring to `uri` (a menu `transfer`).
pub fn menus_with_transfer(uri: &str) -> PathBuf {
    let dir = temp_dir("transfer-menus");
    copy_shipped_menus(&dir);
    let main = dir.join("menus.toml");
    let mut text = std::fs::read_to_string(&main).expect("menus.toml");
    text.push_str(&format!(
        "\n[menus.main.keys.7]\naction = \"transfer\"\nuri = \"{uri}\"\n"
    ));
    std::fs::write(&main, text).expect("write menus.toml");
    dir
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

/// A free UDP port on 127.0.0.1 (bound then released; the OS does not hand it out again at once).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// An even free UDP port whose successor is free too (for SIPp's -mp media port and its RTCP).
pub fn free_media_port() -> u16 {
    for _ in 0..200 {
        let p = free_udp_port();
        let p = p - (p % 2);
        if p > 1024
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
    panic!("no free media port pair found");
}

/// Lines the server printed on stderr, shared with the reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// The helpline binary, started for one test and ended (by its PID) when dropped.
pub struct Server {
    child: Child,
    /// The SIP address (UDP and TCP).
    pub addr: SocketAddr,
    /// The CDR file.
    pub cdr: PathBuf,
    log: Arc<Log>,
}

impl Server {
    /// Starts `helpline serve` on 127.0.0.1:0 with the given menu directory and extra arguments.
    pub fn start(menus: &Path, extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", menus, extra)
    }

    /// The server's process id (to read its threads in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `http:` address of the `listening on` line (`serve --http`).
    pub fn http_addr(&self) -> SocketAddr {
        let line = self
            .wait_log("listening on udp:", Duration::from_secs(15))
            .expect("the listening line");
        parse_http_addr(&line).unwrap_or_else(|| panic!("no http: in {line:?}"))
    }

    /// Waits until a log line containing `needle` appears (counting lines already seen), bounded.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Waits until `count` log lines contain `needle`, matched against the lines stripped of colour
    /// escapes; returns the last matching line, stripped.
    pub fn wait_log_count(&self, needle: &str, count: usize, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().expect("log lock");
        loop {
            let found: Vec<String> = lines
                .iter()
                .map(|l| strip_ansi(l))
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= count {
                return found.last().cloned();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self
                .log
                .changed
                .wait_timeout(lines, deadline - now)
                .expect("log wait")
                .0;
        }
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        self.log.lines.lock().expect("log lock").join("\n")
    }

    /// The CDR lines written so far.
    pub fn cdrs(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.cdr)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("CDR line is JSON"))
            .collect()
    }

    /// Waits for `n` calls to have ended (the server logs each) and returns the CDR lines.
    pub fn wait_cdrs(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        self.wait_log_count("call ended", n, timeout);
        // The log line is written just before the CDR line is handed to the writer task.
        loop {
            let cdrs = self.cdrs();
            if cdrs.len() >= n || Instant::now() >= deadline {
                return cdrs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The CDR of one call.
    pub fn cdr_for(&self, call_id: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.cdrs().into_iter().find(|c| c["call_id"] == call_id) {
                return c;
            }
            if Instant::now() >= deadline {
                panic!("no CDR for {call_id}; log:\n{}", self.log_text());
            }
            self.wait_log_count(
                "call ended",
                self.cdrs().len() + 1,
                Duration::from_millis(500),
            );
        }
    }

    /// Sends a signal to the server process (by its PID).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, bounded; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received SIP message, parsed just enough for assertions.
#[derive(Clone, Debug)]
pub struct Msg {
    /// The whole text.
    pub text: String,
}

impl Msg {
    /// The first line.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        let line = self.first_line();
        line.strip_prefix("SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|c| c.parse().ok())
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        let line = self.first_line();
        if line.starts_with("SIP/2.0") {
            None
        } else {
            line.split(' ').next()
        }
    }

    /// The first value of a header (full name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// All values of a header, one per header line.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .skip(1)
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }

    /// The body.
    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The `tag` parameter of the To header.
    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(';')
            .find_map(|p| p.trim().strip_prefix("tag=").map(|t| t.to_string()))
    }

    /// The port of the `m=audio` line in the body.
    pub fn sdp_audio_port(&self) -> Option<u16> {
        self.body()
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
    }

    /// Parses with the independent `rsip` parser (IPv4 only): what helpline emits must be valid SIP.
    pub fn assert_rsip_parses(&self) {
        if let Err(err) = rsip::SipMessage::try_from(self.text.as_bytes()) {
            panic!("rsip rejects what helpline sent: {err:?}\n{}", self.text);
        }
    }
}

/// How the test UA reaches the server.
pub enum Link {
    /// One UDP socket.
    Udp(UdpSocket),
    /// One TCP connection, with what was read but not yet framed.
    Tcp(TcpStream, Vec<u8>),
}

/// A scripted SIP user agent for tests: builds requests, reads responses and requests, bounded waits.
pub struct Ua {
    link: Link,
    /// Our SIP address.
    pub local: SocketAddr,
    /// The server.
    pub server: SocketAddr,
    /// Requests the server sent us that a wait skipped over.
    pending: Vec<Msg>,
    seq: u32,
}

impl Ua {
    /// A UA over UDP.
    pub fn udp(server: SocketAddr) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let local = sock.local_addr().expect("addr");
        Ua {
            link: Link::Udp(sock),
            local,
            server,
            pending: Vec::new(),
            seq: 0,
        }
    }

    /// A UA over TCP.
    pub fn tcp(server: SocketAddr) -> Ua {
        let stream = TcpStream::connect(server).expect("connect");
        let local = stream.local_addr().expect("addr");
        Ua {
            link: Link::Tcp(stream, Vec::new()),
            local,
            server,
            pending: Vec::new(),
            seq: 0,
        }
    }

    /// The Via transport token.
    pub fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(_) => "UDP",
            Link::Tcp(..) => "TCP",
        }
    }

    /// A fresh branch.
    pub fn branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-test-{}-{}", rand_u32(), self.seq)
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(sock) => {
                sock.send_to(bytes, self.server).expect("send");
            }
            Link::Tcp(stream, _) => stream.write_all(bytes).expect("send"),
        }
    }

    /// Sends a message given as text with `\n` line ends (converted to CRLF) and fills Content-Length.
    pub fn send(&mut self, head: &str, body: &str) {
        let mut text = String::new();
        for line in head.trim().lines() {
            text.push_str(line.trim_start());
            text.push_str("\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        text.push_str(body);
        self.send_raw(text.as_bytes());
    }

    /// Receives the next message, bounded.
    pub fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        match &mut self.link {
            Link::Udp(sock) => {
                let mut buf = vec![0u8; 65536];
                let left = deadline.checked_duration_since(Instant::now())?;
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .ok()?;
                let (n, _) = sock.recv_from(&mut buf).ok()?;
                Some(Msg {
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                })
            }
            Link::Tcp(stream, acc) => loop {
                if let Some(msg) = frame(acc) {
                    return Some(msg);
                }
                let left = deadline.checked_duration_since(Instant::now())?;
                stream
                    .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .ok()?;
                let mut buf = [0u8; 8192];
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => acc.extend_from_slice(&buf[..n]),
                }
            },
        }
    }

    /// Waits for a response with this code, skipping provisional ones and stashing requests.
    pub fn expect_response(&mut self, code: u16, timeout: Duration) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {code} within {timeout:?}"));
            let msg = self
                .recv(left)
                .unwrap_or_else(|| panic!("no {code} within {timeout:?}"));
            match msg.code() {
                Some(c) if c == code => return msg,
                Some(c) if c < 200 && code >= 200 => continue,
                Some(c) => panic!("expected {code}, got {c}:\n{}", msg.text),
                None => self.pending.push(msg),
            }
        }
    }

    /// Waits for a request with this method (stashed ones first), skipping retransmitted responses.
    pub fn expect_request(&mut self, method: &str, timeout: Duration) -> Msg {
        if let Some(i) = self.pending.iter().position(|m| m.method() == Some(method)) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {method} within {timeout:?}"));
            let msg = self
                .recv(left)
                .unwrap_or_else(|| panic!("no {method} within {timeout:?}"));
            if msg.method() == Some(method) {
                return msg;
            }
            if msg.code().is_none() {
                self.pending.push(msg);
            }
        }
    }

    /// Answers a request from the server 200 (e.g. its BYE).
    pub fn reply_ok(&mut self, request: &Msg) {
        let mut head = String::from("SIP/2.0 200 OK\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for v in request.headers(name) {
                head.push_str(&format!("{name}: {v}\n"));
            }
        }
        self.send(&head, "");
    }
}

/// Frames one message from a TCP buffer by Content-Length.
fn frame(acc: &mut Vec<u8>) -> Option<Msg> {
    let text = String::from_utf8_lossy(acc).into_owned();
    let end = text.find("\r\n\r\n")?;
    let head = &text[..end];
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("Content-Length") || n.eq_ignore_ascii_case("l"))
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let total = end + 4 + len;
    if acc.len() < total {
        return None;
    }
    let msg: Vec<u8> = acc.drain(..total).collect();
    Some(Msg {
        text: String::from_utf8_lossy(&msg).into_owned(),
    })
}

/// An SDP offer for a test call.
/// The `http:IP:PORT` address in a `listening on` line.
pub fn parse_http_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("http:"))
        .and_then(|a| a.parse().ok())
}

/// A GET over a fresh connection (HTTP/1.1, `Connection: close`): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the http port");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("set a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

pub fn sdp_offer(rtp_port: u16, payloads: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP {payloads}\r\n{extra}"
    )
}

/// One call placed by the test UA.
pub struct TestCall {
    /// Call-ID.
    pub call_id: String,
    /// Our From tag.
    pub from_tag: String,
    /// The server's To tag once answered.
    pub to_tag: String,
    /// The dialed user.
    pub user: String,
    /// Our CSeq counter.
    pub cseq: u32,
}

impl Ua {
    /// Sends an INVITE to `user` with `sdp` (may be empty) and returns the call.
    pub fn invite(&mut self, user: &str, sdp: &str) -> TestCall {
        let call_id = format!("test-{}-{}@127.0.0.1", rand_u32(), self.seq);
        let from_tag = format!("ft{}", rand_u32());
        let branch = self.branch();
        let (server, local, tr) = (self.server, self.local, self.transport());
        let ct = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\n"
        };
        self.send(
            &format!(
                "INVITE sip:{user}@{server} SIP/2.0
                Via: SIP/2.0/{tr} {local};branch={branch};rport
                Max-Forwards: 70
                From: \"Test Caller\" <sip:caller@{local}>;tag={from_tag}
                To: <sip:{user}@{server}>
                Call-ID: {call_id}
                CSeq: 1 INVITE
                Contact: <sip:caller@{local}>
                {ct}"
            ),
            sdp,
        );
        TestCall {
            call_id,
            from_tag,
            to_tag: String::new(),
            user: user.to_string(),
            cseq: 1,
        }
    }

    /// Sends the ACK for the 2xx of `call`.
    pub fn ack(&mut self, call: &TestCall, sdp: &str) {
        let branch = self.branch();
        let (server, local, tr) = (self.server, self.local, self.transport());
        let ct = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\n"
        };
        self.send(
            &format!(
                "ACK sip:helpline@{server} SIP/2.0
                Via: SIP/2.0/{tr} {local};branch={branch};rport
                Max-Forwards: 70
                From: <sip:caller@{local}>;tag={}
                To: <sip:{}@{server}>;tag={}
                Call-ID: {}
                CSeq: 1 ACK
                {ct}",
                call.from_tag, call.user, call.to_tag, call.call_id
            ),
            sdp,
        );
    }

    /// Sends an in-dialog request (BYE, INFO, re-INVITE …) and returns nothing; read the response after.
    pub fn in_dialog(
        &mut self,
        call: &mut TestCall,
        method: &str,
        extra_headers: &str,
        body: &str,
    ) {
        call.cseq += 1;
        let branch = self.branch();
        let (server, local, tr) = (self.server, self.local, self.transport());
        self.send(
            &format!(
                "{method} sip:helpline@{server} SIP/2.0
                Via: SIP/2.0/{tr} {local};branch={branch};rport
                Max-Forwards: 70
                From: <sip:caller@{local}>;tag={}
                To: <sip:{}@{server}>;tag={}
                Call-ID: {}
                CSeq: {} {method}
                {extra_headers}",
                call.from_tag, call.user, call.to_tag, call.call_id, call.cseq
            ),
            body,
        );
    }
}

/// An RTP packet as the test sees it.
#[derive(Clone, Debug)]
pub struct RtpSeen {
    /// When it arrived.
    pub at: Instant,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload length.
    pub len: usize,
}

/// Parses the fixed RTP header.
pub fn parse_rtp(at: Instant, b: &[u8]) -> Option<RtpSeen> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    Some(RtpSeen {
        at,
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        len: b.len() - 12,
    })
}

/// Builds an RTP packet.
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Where SIPp is; tests that need it fail (not skip) when it is missing: CI installs it.
pub fn sipp() -> PathBuf {
    let path = PathBuf::from("/usr/bin/sipp");
    assert!(
        path.exists(),
        "SIPp is required (apt-get install sip-tester); .ci/run installs it"
    );
    path
}

/// The outcome of a SIPp run.
pub struct SippRun {
    /// Exit status (0: all calls succeeded).
    pub status: std::process::ExitStatus,
    /// Its stdout and stderr.
    pub output: String,
}

/// Runs SIPp with a scenario file (or built-in `-sn` when `scenario` starts with `sn:`) against the server,
/// bounded by `timeout` (SIPp is killed by its PID if it overruns).
pub fn run_sipp(server: SocketAddr, scenario: &str, extra: &[&str], timeout: Duration) -> SippRun {
    let dir = temp_dir("sipp");
    let port = free_udp_port().to_string();
    let media = free_media_port().to_string();
    let mut cmd = Command::new(sipp());
    cmd.current_dir(&dir);
    if let Some(name) = scenario.strip_prefix("sn:") {
        cmd.args(["-sn", name]);
    } else {
        cmd.args(["-sf", &root().join(scenario).display().to_string()]);
    }
    cmd.arg(server.to_string())
        .args(["-i", "127.0.0.1", "-p", &port, "-mp", &media])
        .arg("-nostdin")
        .args(["-trace_err", "-timeout_error"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sipp");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp {scenario} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut output);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut output);
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            output.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    SippRun { status, output }
}

/// One step of a generated SIPp caller scenario (see [`sipp_dtmf_scenario`]).
#[derive(Clone, Debug)]
pub enum SippStep {
    /// Press these keys, one RFC 4733 capture each, `gap_ms` apart (start to start).
    Keys(&'static str, u64),
    /// Wait this many milliseconds.
    Pause(u64),
}

/// The capture file SIPp replays for `key` (RFC 4733, payload type 101).
pub fn dtmf_capture(key: char) -> String {
    let name = match key {
        '#' => "pound".to_string(),
        '*' => "star".to_string(),
        d => d.to_string(),
    };
    format!("/usr/share/sip-tester/dtmf_2833_{name}.pcap")
}

/// Writes a SIPp UAC scenario into `dir` and returns its path: INVITE `[service]` offering PCMU and
/// telephone-event (`0 101`), ACK, then `steps` (keys pressed with `play_pcap_audio`), then it waits up to
/// `bye_timeout_ms` for the server's BYE and answers it 200. To find each call's CDR, give SIPp
/// [`sipp_call_id_args`] (SIPp matches replies by its own Call-ID, so the scenario keeps `[call_id]`).
pub fn sipp_dtmf_scenario(
    dir: &Path,
    name: &str,
    steps: &[SippStep],
    bye_timeout_ms: u64,
) -> PathBuf {
    // No pause after the very last key: a BYE that arrives during a SIPp <pause> is an unexpected message.
    let mut body = String::new();
    let mut pending_gap: Option<u64> = None;
    for step in steps {
        match step {
            SippStep::Pause(ms) => {
                let ms = ms + pending_gap.take().unwrap_or(0);
                body.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n"));
            }
            SippStep::Keys(keys, gap) => {
                for k in keys.chars() {
                    if let Some(g) = pending_gap.take() {
                        body.push_str(&format!("  <pause milliseconds=\"{g}\"/>\n"));
                    }
                    body.push_str(&format!(
                        "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                        dtmf_capture(k)
                    ));
                    pending_gap = Some(*gap);
                }
            }
        }
    }
    let xml = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]>
  </send>
{body}  <recv request="BYE" timeout="{bye_timeout_ms}"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
  </send>
</scenario>
"#
    );
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, xml).expect("write scenario");
    path
}

/// SIPp arguments making every Call-ID start with `prefix-` (then call number, PID and IP).
pub fn sipp_call_id_args(prefix: &str) -> [String; 2] {
    ["-cid_str".to_string(), format!("{prefix}-%u-%p@%s")]
}

/// The text of a log line without ANSI colour escapes (`ESC [ … m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the final byte of the escape sequence.
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Server {
    /// The same as [`Server::wait_log_count`] (which matches on lines stripped of colour escapes).
    pub fn wait_log_plain(&self, needle: &str, count: usize, timeout: Duration) -> Option<String> {
        self.wait_log_count(needle, count, timeout)
    }
}
impl Server {
    /// Starts `helpline serve` like [`Server::start`] but listening on `listen` (e.g. `[::1]:0`).
    pub fn start_on(listen: &str, menus: &Path, extra: &[&str]) -> Server {
        let cdr = temp_dir("server").join("cdr.jsonl");
        Server::start_full(listen, menus, &cdr, extra)
    }

    /// Starts `helpline serve` like [`Server::start`] with its CDR at `cdr`.
    pub fn start_with_cdr(menus: &Path, cdr: &Path, extra: &[&str]) -> Server {
        Server::start_full("127.0.0.1:0", menus, cdr, extra)
    }

    fn start_full(listen: &str, menus: &Path, cdr: &Path, extra: &[&str]) -> Server {
        let cdr = cdr.to_path_buf();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--config".into(),
            menus.display().to_string(),
            "--prompts".into(),
            root().join("prompts").display().to_string(),
            "--listen".into(),
            listen.into(),
            "--rtp-ports".into(),
            "30000-39999".into(),
            "--cdr".into(),
            cdr.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(&args, cdr)
    }

    /// Starts `helpline` with exactly `args` (e.g. `serve --server-config F`); `cdr` is where the test
    /// looks for the CDR file.
    pub fn spawn(args: &[String], cdr: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(args)
            .env("RUST_LOG", "info,helpline=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helpline");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Log::default());
        let reader_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HELPLINE_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                let mut lines = reader_log.lines.lock().expect("log lock");
                lines.push(line);
                reader_log.changed.notify_all();
            }
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().expect("addr"),
            cdr,
            log,
        };
        let line = server
            .wait_log("listening on udp:", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("server did not start:\n{}", server.log_text()));
        let udp = line
            .split("listening on udp:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address after listening on udp:");
        server.addr = udp.parse().expect("listen address");
        server
    }
}

impl Ua {
    /// A UA over UDP from `[::1]`, or `None` when this machine has no IPv6 loopback.
    pub fn udp6(server: SocketAddr) -> Option<Ua> {
        let sock = UdpSocket::bind("[::1]:0").ok()?;
        let local = sock.local_addr().ok()?;
        Some(Ua {
            link: Link::Udp(sock),
            local,
            server,
            pending: Vec::new(),
            seq: 0,
        })
    }
}

/// Whether this machine has an IPv6 loopback (binding `[::1]:0` works); `scripts/test` makes sure it has.
pub fn has_ipv6_loopback() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}
