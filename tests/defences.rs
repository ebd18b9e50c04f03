//! Defences against the real `helpline` binary, attacker and legitimate users on separate loopback
//! addresses: an INVITE flood from 127.0.0.1 (SIPp, 400 INVITEs at 200/s) gets that source banned while
//! a SIPp caller from 127.0.0.2 completes its calls and is never banned; a REGISTER brute force (200
//! wrong passwords from 127.0.0.1) gets that source throttled — even the right password is refused
//! from there — while the right password from 127.0.0.3 registers the agent.
mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_media_port, free_udp_port, menus_with_sample_agents, root, sipp, temp_dir, Server, SippRun,
};

const SIPP_TIMEOUT: Duration = Duration::from_secs(90);
const LOG_TIMEOUT: Duration = Duration::from_secs(20);

/// SIPp from local address `ip` (`-i`), bounded by `timeout`; like `common::run_sipp`.
fn sipp_from(ip: &str, server: &Server, scenario: &str, extra: &[&str]) -> SippRun {
    let dir = temp_dir("sipp-defences");
    let mut cmd = Command::new(sipp());
    cmd.current_dir(&dir);
    match scenario.strip_prefix("sn:") {
        Some(name) => cmd.args(["-sn", name]),
        None => cmd.args(["-sf", scenario]),
    };
    cmd.arg(server.addr.to_string())
        .args(["-i", ip, "-p", &free_udp_port().to_string()])
        .args(["-mp", &free_media_port().to_string()])
        .args(["-nostdin", "-trace_err"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sipp");
    let deadline = Instant::now() + SIPP_TIMEOUT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sipp {scenario} from {ip} did not finish within {SIPP_TIMEOUT:?}");
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
    SippRun { status, output }
}

/// A counter of SIPp's final screen (`Successful call`, `Failed call`).
fn sipp_counter(run: &SippRun, label: &str) -> Option<u64> {
    run.output
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with(label))
        .find_map(|l| l.split('|').rev().find_map(|c| c.trim().parse().ok()))
}

/// The ban lines for `ip`, once the server has logged a first ban (its log is read as it comes).
fn banned_lines_after_a_ban(server: &Server, ip: &str) -> usize {
    server.wait_log("source banned", Duration::from_secs(10));
    banned_lines(server, ip)
}

fn banned_lines(server: &Server, ip: &str) -> usize {
    server
        .log_text()
        .lines()
        .map(common::strip_ansi)
        .filter(|l| l.contains("source banned") && l.contains(&format!("source={ip}")))
        .count()
}

#[test]
fn an_invite_flood_bans_its_source_while_a_legitimate_caller_is_served() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(&menus, &["--limit-rate", "20", "--ban-secs", "120"]);
    let flood_server = &server;
    // The legitimate caller: 5 calls, one at a time, from 127.0.0.2, during the flood.
    let (flood, legit) = std::thread::scope(|s| {
        let flood = s.spawn(move || {
            sipp_from(
                "127.0.0.1",
                flood_server,
                "sn:uac",
                &[
                    "-m",
                    "400",
                    "-r",
                    "200",
                    "-l",
                    "400",
                    "-recv_timeout",
                    "3000",
                ],
            )
        });
        // The flood has begun (its ban is logged) before the legitimate calls start.
        let banned = flood_server.wait_log("source banned", LOG_TIMEOUT);
        assert!(banned.is_some(), "{}", flood_server.log_text());
        let legit = sipp_from(
            "127.0.0.2",
            flood_server,
            "sn:uac",
            &["-m", "5", "-l", "1", "-timeout", "60s", "-timeout_error"],
        );
        (flood.join().expect("flood thread"), legit)
    });
    assert!(
        legit.status.success(),
        "legitimate caller: sipp exited {:?}\n{}\n--- server ---\n{}",
        legit.status.code(),
        legit.output,
        server.log_text()
    );
    assert_eq!(
        sipp_counter(&legit, "Successful call"),
        Some(5),
        "{}",
        legit.output
    );
    // The flood was cut off: most of its INVITEs went unanswered.
    let flooded = sipp_counter(&flood, "Successful call").unwrap_or(0);
    assert!(
        flooded < 100,
        "{flooded} flood calls succeeded\n{}",
        flood.output
    );
    assert!(!flood.status.success(), "{}", flood.output);
    // Banned once (not per packet), and the legitimate source never.
    assert_eq!(
        banned_lines_after_a_ban(&server, "127.0.0.1"),
        1,
        "{}",
        server.log_text()
    );
    assert_eq!(
        banned_lines(&server, "127.0.0.2"),
        0,
        "{}",
        server.log_text()
    );
    // Every legitimate call has its CDR from 127.0.0.2 (the flood's answered calls, whose BYEs were
    // dropped, are still up: their CDRs come only after the RTP timeout).
    let cdrs = server.wait_cdrs(5, LOG_TIMEOUT);
    let legit_cdrs: Vec<_> = cdrs
        .iter()
        .filter(|c| {
            c["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.2:"))
        })
        .collect();
    assert_eq!(legit_cdrs.len(), 5, "{cdrs:#?}");
}

#[test]
fn a_banned_source_gets_503_with_retry_after_when_configured() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(
        &menus,
        &[
            "--limit-rate",
            "2",
            "--ban-secs",
            "60",
            "--banned-answer",
            "503",
        ],
    );
    let mut ua = common::Ua::udp(server.addr);
    let mut codes = Vec::new();
    for i in 0..12 {
        let branch = ua.branch();
        let head = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\n\
             From: <sip:scan@127.0.0.1>;tag=t{i}\r\nTo: <sip:{addr}>\r\nCall-ID: scan-{i}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n",
            addr = server.addr,
            local = ua.local,
        );
        ua.send(&head, "");
        let reply = ua
            .recv(Duration::from_secs(5))
            .expect("every OPTIONS is answered");
        codes.push((reply.code(), reply.header("Retry-After")));
    }
    // The burst (twice the rate) passes, then the source is banned and told when to come back.
    assert!(codes[..4].iter().all(|(c, _)| *c == Some(200)), "{codes:?}");
    let last = codes.last().expect("twelve answers");
    assert_eq!(last.0, Some(503), "{codes:?}");
    let secs: u32 = last
        .1
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&secs), "{codes:?}");
    assert_eq!(
        banned_lines_after_a_ban(&server, "127.0.0.1"),
        1,
        "{}",
        server.log_text()
    );
}

#[test]
fn a_register_brute_force_is_throttled_but_the_agent_registers_from_elsewhere() {
    // Rate limits off: this is the registrar's own throttle.
    let server = Server::start(
        &menus_with_sample_agents(str::to_owned),
        &["--limit-rate", "0"],
    );
    let scenario = root().join("examples/sipp/register_agent.xml");
    let text = std::fs::read_to_string(&scenario).expect("the scenario");
    assert!(text.contains("password=europe-refunds-1") && text.contains("response=\"200\""));
    let dir = temp_dir("sipp-brute");
    let wrong = dir.join("wrong.xml");
    std::fs::write(
        &wrong,
        text.replace("password=europe-refunds-1", "password=guess")
            .replace("response=\"200\"", "response=\"403\""),
    )
    .expect("write scenario");
    let right_refused = dir.join("right_refused.xml");
    std::fs::write(
        &right_refused,
        text.replace("response=\"200\"", "response=\"403\""),
    )
    .expect("write scenario");
    let path = |p: &std::path::Path| p.display().to_string();

    // 200 guesses from 127.0.0.1: each one is answered 403, as any wrong password is.
    let guesses = sipp_from(
        "127.0.0.1",
        &server,
        &path(&wrong),
        &[
            "-m",
            "200",
            "-r",
            "50",
            "-l",
            "20",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
    );
    assert!(
        guesses.status.success(),
        "{}\n{}",
        guesses.output,
        server.log_text()
    );
    assert!(
        server.wait_log("auth throttled", LOG_TIMEOUT).is_some(),
        "{}",
        server.log_text()
    );
    // From the guesser's address even the right password is refused now …
    let from_attacker = sipp_from(
        "127.0.0.1",
        &server,
        &path(&right_refused),
        &["-m", "1", "-timeout", "30s", "-timeout_error"],
    );
    assert!(
        from_attacker.status.success(),
        "the right password from the throttled source was not refused:\n{}\n{}",
        from_attacker.output,
        server.log_text()
    );
    assert!(
        !server.log_text().contains("agent logged in"),
        "{}",
        server.log_text()
    );
    // … but the agent is never locked out everywhere: from 127.0.0.3 the right password works.
    let agent = sipp_from(
        "127.0.0.3",
        &server,
        &path(&scenario),
        &["-m", "1", "-timeout", "30s", "-timeout_error"],
    );
    assert!(
        agent.status.success(),
        "{}\n{}",
        agent.output,
        server.log_text()
    );
    let line = server.wait_log("agent logged in", LOG_TIMEOUT);
    assert!(
        line.is_some_and(|l| l.contains("agent=ana")),
        "{}",
        server.log_text()
    );
    // Failures are logged with source and user, never the password or the digest response.
    let log = server.log_text();
    assert!(log.contains("auth failure"), "{log}");
    assert!(
        !log.contains("guess") && !log.contains("europe-refunds-1"),
        "{log}"
    );
}

// ── TCP resource bounds ──

/// A TCP connection to the server from local address `ip` (bound before connecting).
fn tcp_from(ip: &str, server: &Server) -> std::net::TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("tcp socket");
    let local: std::net::SocketAddr = format!("{ip}:0").parse().expect("address literal");
    socket.bind(&local.into()).expect("bind a loopback address");
    socket
        .connect(&server.addr.into())
        .expect("connect to the server");
    socket.into()
}

/// Whether the server closed the connection within `within`: a read sees end of stream (or a reset).
fn closed_by_server(mut stream: &std::net::TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response; keep reading
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// 500 idle connections (ten addresses, 50 each, under the 64-per-source cap) are held open while a
/// SIPp caller over TCP (`-t t1`) from 127.0.0.2 completes its calls; a 65th connection from one
/// address is closed at once. The test process holds 565 descriptors and the server as many: both fit
/// the usual soft `ulimit -n` of 1024 (this machine: 20000).
#[test]
fn five_hundred_idle_tcp_connections_do_not_stop_a_new_caller() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(&menus, &["--tcp-first-message-secs", "120"]);
    let idle: Vec<std::net::TcpStream> = (0..500)
        .map(|i| tcp_from(&format!("127.0.0.{}", 10 + i / 50), &server))
        .collect();
    let run = sipp_from(
        "127.0.0.2",
        &server,
        "sn:uac",
        &[
            "-t",
            "t1",
            "-m",
            "3",
            "-l",
            "1",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
    );
    assert!(
        run.status.success(),
        "sipp exited {:?}\n{}\n--- server ---\n{}",
        run.status.code(),
        run.output,
        server.log_text()
    );
    assert_eq!(
        sipp_counter(&run, "Successful call"),
        Some(3),
        "{}",
        run.output
    );
    // The per-source cap: 64 from one address are kept, the 65th is closed at once.
    let mut capped: Vec<std::net::TcpStream> =
        (0..65).map(|_| tcp_from("127.0.0.30", &server)).collect();
    let last = capped.pop().expect("65 connections");
    assert!(
        closed_by_server(&last, Duration::from_secs(5)),
        "the 65th stays open"
    );
    assert!(
        !closed_by_server(&capped[0], Duration::from_millis(200)),
        "the first of the 64 was closed"
    );
    // Every idle connection is still open (the idle timeout is 300 s by default): a non-blocking read
    // finds nothing to read rather than the end of the stream.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).expect("non-blocking");
            let mut byte = [0u8; 1];
            let mut stream: &std::net::TcpStream = s;
            !matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(
        closed, 0,
        "{closed} of the 500 idle connections were closed"
    );
}

/// A slow-loris sender (a byte every 100 ms, never finishing its headers) is cut off at the
/// first-message deadline (1 s here), while a connection that sent a whole OPTIONS stays open.
#[test]
fn a_slow_loris_is_cut_off_at_the_first_message_deadline() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(&menus, &["--tcp-first-message-secs", "1"]);
    let mut good = tcp_from("127.0.0.2", &server);
    let options = format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-loris-ok\r\n\
         From: <sip:ok@127.0.0.2>;tag=ok\r\nTo: <sip:{addr}>\r\nCall-ID: loris-ok\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        addr = server.addr,
        local = good.local_addr().expect("local address"),
    );
    good.write_all(options.as_bytes()).expect("send OPTIONS");
    let mut loris = tcp_from("127.0.0.3", &server);
    let started = Instant::now();
    let head = b"OPTIONS sip:x SIP/2.0\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_at = None;
    for b in head.iter().cycle().take(100) {
        if loris.write_all(std::slice::from_ref(b)).is_err() {
            cut_at = Some(started.elapsed());
            break;
        }
        if closed_by_server(&loris, Duration::from_millis(100)) {
            cut_at = Some(started.elapsed());
            break;
        }
    }
    let cut_at = cut_at.expect("the slow sender was never cut off in 10 s");
    assert!(
        cut_at >= Duration::from_millis(900) && cut_at < Duration::from_secs(3),
        "cut off after {cut_at:?}"
    );
    // The connection that sent a message is kept (and was answered).
    let mut answer = vec![0u8; 2048];
    good.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = good.read(&mut answer).expect("the OPTIONS is answered");
    assert!(
        answer[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(!closed_by_server(&good, Duration::from_millis(300)));
    assert!(
        server.wait_log("tcp-first-message", LOG_TIMEOUT).is_some(),
        "{}",
        server.log_text()
    );
}

/// An OPTIONS for the server over `stream`'s connection, its branch and Call-ID made of `tag`.
fn options_text(stream: &std::net::TcpStream, server: &Server, tag: &str) -> String {
    format!(
        "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-{tag}\r\n\
         From: <sip:{tag}@127.0.0.1>;tag={tag}\r\nTo: <sip:{addr}>\r\nCall-ID: {tag}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        addr = server.addr,
        local = stream.local_addr().expect("local address"),
    )
}

/// Sends an OPTIONS on `stream` and reads its `200`.
fn options_answered(mut stream: &std::net::TcpStream, server: &Server, tag: &str) {
    let options = options_text(stream, server, tag);
    stream.write_all(options.as_bytes()).expect("send OPTIONS");
    let mut answer = vec![0u8; 2048];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let n = stream.read(&mut answer).expect("the OPTIONS is answered");
    assert!(
        answer[..n].starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
}

/// With `--tcp-idle-secs 1`: a connection that sent one OPTIONS and then nothing is closed; one that
/// sends CRLF keep-alives (RFC 5626) every 300 ms, and one carrying a call in progress but silent, are
/// kept — the call's BYE still goes through on its connection after 2.5 s.
#[test]
fn an_idle_tcp_connection_is_closed_unless_keepalives_or_a_call_keep_it() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(&menus, &["--tcp-idle-secs", "1"]);
    let idle = tcp_from("127.0.0.2", &server);
    options_answered(&idle, &server, "idle");
    let mut alive = tcp_from("127.0.0.3", &server);
    options_answered(&alive, &server, "alive");
    let mut ua = common::Ua::tcp(server.addr);
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let offer = common::sdp_offer(
        rtp.local_addr().expect("rtp addr").port(),
        "0",
        "a=rtpmap:0 PCMU/8000\r\n",
    );
    let mut call = ua.invite("08000000001", &offer);
    let ok = ua.expect_response(200, Duration::from_secs(5));
    call.to_tag = ok.to_tag().expect("a to-tag");
    ua.ack(&call, "");
    let started = Instant::now();
    // The keep-alives are the behaviour under test: one every 300 ms for 2.5 s.
    while started.elapsed() < Duration::from_millis(2500) {
        alive.write_all(b"\r\n\r\n").expect("keep-alive");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        closed_by_server(&idle, Duration::from_millis(10)),
        "the idle connection is still open"
    );
    assert!(
        !closed_by_server(&alive, Duration::from_millis(10)),
        "keep-alives did not keep it"
    );
    ua.in_dialog(&mut call, "BYE", "", "");
    ua.expect_response(200, Duration::from_secs(5));
    assert!(
        server.wait_log("tcp-idle", LOG_TIMEOUT).is_some(),
        "{}",
        server.log_text()
    );
}

/// An OPTIONS on `stream` with `before` written ahead of it in the same write; every byte read
/// until its `200` has come whole.
fn options_after(
    mut stream: &std::net::TcpStream,
    server: &Server,
    tag: &str,
    before: &[u8],
) -> Vec<u8> {
    let options = options_text(stream, server, tag);
    let mut bytes = before.to_vec();
    bytes.extend_from_slice(options.as_bytes());
    stream.write_all(&bytes).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(11).any(|w| w == b"SIP/2.0 200") || !got.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("the OPTIONS is answered");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// RFC 5626 §4.4.1: a double-CRLF ping on TCP gets one CRLF pong, even split across two writes; a
/// lone CRLF (a pong, a stray line end) gets nothing; a flood of pings in one write gets pongs (at
/// most one per read) and the connection keeps serving.
#[test]
fn a_double_crlf_ping_gets_a_crlf_pong_and_a_lone_crlf_nothing() {
    let menus = root().join("tests/data/menus/first-flow");
    let server = Server::start(&menus, &[]);
    let mut stream = tcp_from("127.0.0.4", &server);
    // A lone CRLF before a message: the first bytes back are the OPTIONS' answer, no pong.
    let got = options_after(&stream, &server, "lone", b"\r\n");
    assert!(
        got.starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // A ping in two halves: one pong.
    stream.write_all(b"\r\n").expect("half a ping");
    stream.flush().expect("flush");
    stream.write_all(b"\r\n").expect("the other half");
    let mut pong = [0u8; 2];
    stream.read_exact(&mut pong).expect("a pong");
    assert_eq!(&pong, b"\r\n");
    // 5,000 pings in one write: a few pongs, then the OPTIONS is answered on the same connection.
    let got = options_after(&stream, &server, "flood", &b"\r\n\r\n".repeat(5000));
    let answer = got
        .windows(11)
        .position(|w| w == b"SIP/2.0 200")
        .expect("an answer");
    let pongs = &got[..answer];
    assert!(
        !pongs.is_empty() && pongs.len().is_multiple_of(2) && pongs.chunks(2).all(|c| c == b"\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

// ── sipvicious ──

/// Runs a sipvicious tool (`svwar`, `svcrack`) against the server; its whole output. Bounded by the
/// tool itself: it stops a second after the last answer (svcrack waits 10 s more when it found nothing).
fn sipvicious(tool: &str, server: &Server, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        // Its own local port each run: helpline retransmits the 404s of an INVITE scan (svwar never
        // ACKs them), which would reach the next run on a shared port. `-x`: no search for our address.
        .args(["-P", &free_udp_port().to_string(), "-x", "127.0.0.1"])
        .args([
            "--maximumtime",
            "1",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool} (Debian package sipvicious, see scripts/test): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} failed: {text}");
    text
}

/// What sipvicious reports as found: the rows of its result table (`| ana | europe-refunds-1 |`), none
/// when it says `found nothing`.
fn sipvicious_found(output: &str) -> Vec<String> {
    let rows: Vec<String> = output
        .lines()
        .filter(|l| l.starts_with('|') && !l.contains("Extension"))
        .map(|l| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert_eq!(
        rows.is_empty(),
        output.contains("found nothing"),
        "{output}"
    );
    rows
}

/// svwar enumerates extensions with REGISTER, INVITE and OPTIONS over a range and a dictionary holding
/// the sample agents' real IDs: helpline answers every name alike, so it finds none.
#[test]
fn svwar_finds_no_extension() {
    let server = Server::start(
        &menus_with_sample_agents(str::to_owned),
        &["--limit-rate", "0"],
    );
    let dir = temp_dir("svwar");
    let dict = dir.join("names.txt");
    std::fs::write(&dict, "ana\nsam\nli.wei\nadmin\nbob\n1000\n").expect("write the dictionary");
    let dict = dict.display().to_string();
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let out = sipvicious(
            "svwar",
            &server,
            &["-m", method, "-e", "100-120", "-d", &dict],
        );
        assert_eq!(
            sipvicious_found(&out),
            Vec::<String>::new(),
            "{method}: {out}"
        );
    }
}

/// svcrack finds the sample agent's password when it is the first it tries (so the parse of its
/// output is sound), but with eight wrong guesses first the source is throttled and the right password,
/// last in the list, is never accepted: nothing found.
#[test]
fn svcrack_finds_no_password_once_the_source_is_throttled() {
    let server = Server::start(
        &menus_with_sample_agents(str::to_owned),
        &["--limit-rate", "0"],
    );
    let dir = temp_dir("svcrack");
    let right = dir.join("right.txt");
    std::fs::write(&right, "europe-refunds-1\n").expect("write the dictionary");
    let found = sipvicious_found(&sipvicious(
        "svcrack",
        &server,
        &["-u", "ana", "-d", &right.display().to_string()],
    ));
    assert_eq!(found, ["ana europe-refunds-1"]);
    let guesses = dir.join("guesses.txt");
    std::fs::write(
        &guesses,
        "password\n123456\nana\nsecret\nana123\neurope\nrefunds\nhelpline\neurope-refunds-1\n",
    )
    .expect("write the dictionary");
    let out = sipvicious(
        "svcrack",
        &server,
        &["-u", "ana", "-d", &guesses.display().to_string()],
    );
    assert_eq!(sipvicious_found(&out), Vec::<String>::new(), "{out}");
    let throttled = server.wait_log("auth throttled", LOG_TIMEOUT);
    assert!(
        throttled
            .as_deref()
            .is_some_and(|l| l.contains("source=127.0.0.1") && l.contains("user=ana")),
        "{}",
        server.log_text()
    );
}
