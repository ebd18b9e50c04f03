//! The load harness's stages: helpline and Kamailio under SIPp at stepped rates, memory per call, the
//! full IVR call, overload, and the RTP sink; what each measures is printed beside it. Shared by
//! `examples/load/main.rs` (the command) and `tests/load_smoke.rs` (which runs `--smoke`). It does not
//! judge timings as a test would: a missed target is reported as missed.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The command line.
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "helpline beside Kamailio under SIPp, stepped rates, one report")]
pub struct Args {
    /// A few seconds per stage: one low step each (CI runs this).
    #[arg(long)]
    pub smoke: bool,
    /// Run only this system's stages: helpline or kamailio.
    #[arg(long, value_name = "helpline|kamailio")]
    pub only: Option<String>,
    /// First offered rate, calls/s (steps multiply it by 1.25).
    #[arg(long, default_value_t = 500)]
    pub start: u32,
    /// Highest offered rate, calls/s.
    #[arg(long, default_value_t = 10_000)]
    pub max: u32,
    /// Seconds per step (SIPp's -m is rate × this).
    #[arg(long, default_value_t = 10)]
    pub step_secs: u64,
    /// How the IVR caller presses its key: rfc4733 (its RTP is the key, so G3 and G6 are measured)
    /// or info (SIP INFO, no RTP: cheaper for SIPp).
    #[arg(long, default_value = "rfc4733")]
    pub ivr_key: String,
    /// Concurrent calls held for the memory-per-call stage (G5).
    #[arg(long, default_value_t = 2000)]
    pub hold_calls: u32,
    /// Concurrent streams of the RTP stage (G4).
    #[arg(long, default_value_t = 3000)]
    pub rtp_streams: usize,
    /// Seconds the RTP stage measures (the target says 5 minutes: --rtp-secs 300).
    #[arg(long, default_value_t = 20)]
    pub rtp_secs: u64,
    /// Media threads of the RTP and bridge stages' engine (`serve --media-threads`).
    #[arg(long, default_value_t = 2)]
    pub rtp_threads: usize,
    /// SCHED_FIFO priority for those media threads (`serve --media-rt-priority`; default: off).
    #[arg(long)]
    pub rtp_rt_priority: Option<u8>,
    /// Bridged calls of the bridge stage (G7).
    #[arg(long, default_value_t = 1000)]
    pub bridge_pairs: usize,
    /// Seconds the bridge stage measures.
    #[arg(long, default_value_t = 20)]
    pub bridge_secs: u64,
    /// Skip stages: any of g1,g5,g5b,g1c,g8,kamailio,rtp,g7 (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// The helpline binary (default: next to this example, target/<profile>/helpline).
    #[arg(long)]
    pub helpline: Option<PathBuf>,
}

/// What a run found, for the summary (and for the smoke test to see that it completed).
#[derive(Debug, Default)]
pub struct Report {
    /// Highest passing rate and CPU µs/call at it, per system ("helpline", "kamailio-stateless", …).
    pub best: HashMap<String, (u32, f64)>,
    /// Every passing step's (rate, CPU µs/call), per system, for ratios at equal rates.
    pub passed: HashMap<String, Vec<(u32, f64)>>,
    /// Summary lines, target by target.
    pub summary: Vec<String>,
}

type Out<'a> = &'a mut dyn Write;

macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
        let _ = $out.flush();
    }};
}

/// Runs every stage `args` asks for against the helpline binary `bin`; `repo` is the checkout (menus,
/// prompts, scenarios). Errors are setup failures (a program missing, a server that did not start).
pub fn run(args: &Args, bin: &Path, repo: &Path, out: Out) -> Result<Report, String> {
    let only = args.only.as_deref();
    if let Some(o) = only {
        if o != "helpline" && o != "kamailio" {
            return Err(format!("--only {o}: say helpline or kamailio"));
        }
    }
    let want_helpline = only != Some("kamailio");
    let want_kamailio = only != Some("helpline") && !args.skip.iter().any(|s| s == "kamailio");
    if which("sipp").is_none() {
        return Err("sipp is not installed (Debian: sip-tester)".into());
    }
    let kamailio = which("kamailio");
    if want_kamailio && kamailio.is_none() {
        return Err(
            "kamailio is not installed (Debian: kamailio); pass --only helpline to run without it"
                .into(),
        );
    }
    if want_helpline && !bin.exists() {
        return Err(format!(
            "{} not found: cargo build --release --bin helpline (scripts/load.sh does)",
            bin.display()
        ));
    }
    let plan = Plan::new(args);
    header(out, bin, kamailio.as_deref());
    let t0 = Instant::now();
    let mut report = Report::default();
    let skip = |s: &str| args.skip.iter().any(|x| x == s);
    if want_helpline {
        let ctx = Ctx {
            bin,
            repo,
            plan: &plan,
        };
        type Stage = fn(&Ctx, &Args, Out, &mut Report) -> Result<(), String>;
        let stages: [(&str, Stage); 5] = [
            ("g1", |c, _, o, r| g1(c, o, r)),
            ("g5", |c, _, o, r| g5(c, o, r)),
            ("g5b", |c, _, o, r| g5b(c, o, r)),
            ("g1c", g1c),
            ("g8", |c, _, o, r| g8(c, o, r)),
        ];
        for (name, stage) in stages {
            if skip(name) {
                continue;
            }
            // A stage that cannot run is reported and the run goes on to the others.
            if let Err(e) = stage(&ctx, args, out, &mut report) {
                say!(out, "  {name}: {e}");
                let first = e.lines().next().unwrap_or("").to_owned();
                report
                    .summary
                    .push(format!("{} stage failed: {first}", name.to_uppercase()));
            }
        }
    }
    if want_kamailio {
        let kam = kamailio.as_deref().expect("checked above");
        for stateful in [false, true] {
            // A stage that cannot run is reported and the run goes on to the others.
            if let Err(e) = kamailio_stage(kam, repo, &plan, stateful, out, &mut report) {
                let name = if stateful {
                    "kamailio-stateful"
                } else {
                    "kamailio-stateless"
                };
                say!(out, "  {name}: {e}");
                report.summary.push(format!(
                    "{name}: stage failed: {}",
                    e.lines().next().unwrap_or("")
                ));
            }
        }
    }
    if want_helpline && !skip("rtp") {
        let (streams, secs) = if args.smoke {
            (50, 2)
        } else {
            (args.rtp_streams, args.rtp_secs)
        };
        let threads = args.rtp_threads.max(1);
        say!(out, "\n== G4/G4b: {streams} prompt streams through the real media engine ({}), caller audio echoed at 50 pps, {secs} s ==", media_flags(args));
        match crate::rtp_sink::run(
            streams,
            Duration::from_secs(secs),
            threads,
            scheduling(args),
        ) {
            Ok(r) => {
                for line in r.lines() {
                    say!(out, "  {line}");
                }
                report.summary.push(r.summary());
            }
            Err(e) => say!(out, "  rtp stage failed: {e}"),
        }
    }
    if want_helpline && !skip("g7") {
        let (pairs, secs) = if args.smoke {
            (20, 2)
        } else {
            (args.bridge_pairs, args.bridge_secs)
        };
        let threads = args.rtp_threads.max(1);
        say!(out, "\n== G7: {pairs} bridged calls through the real media engine ({}), each phone sending 50 pps, {secs} s ==", media_flags(args));
        match crate::bridge_sink::run(pairs, Duration::from_secs(secs), threads, scheduling(args)) {
            Ok(r) => {
                for line in r.lines() {
                    say!(out, "  {line}");
                }
                report.summary.push(r.summary());
            }
            Err(e) => say!(out, "  bridge stage failed: {e}"),
        }
    }
    ratios(&mut report);
    say!(out, "\n== SUMMARY (load average now {}) ==", loadavg());
    for line in &report.summary {
        say!(out, "  {line}");
    }
    say!(out, "  run took {:.0} s", t0.elapsed().as_secs_f64());
    say!(out, "LOAD REPORT COMPLETE");
    Ok(report)
}

/// The media engine options of the RTP and bridge stages, as `serve` flags.
fn media_flags(args: &Args) -> String {
    let mut f = format!("as `serve --media-threads {}", args.rtp_threads.max(1));
    if let Some(p) = args.rtp_rt_priority {
        f.push_str(&format!(" --media-rt-priority {p}"));
    }
    f.push('`');
    f
}

/// The media threads' scheduling for the RTP and bridge stages.
fn scheduling(args: &Args) -> helpline::server::media_engine::MediaScheduling {
    helpline::server::media_engine::MediaScheduling {
        fifo_priority: args.rtp_rt_priority,
        cpus: 0,
    }
}

/// The rates to step through and how long each step is.
struct Plan {
    rates: Vec<u32>,
    step_secs: u64,
    smoke: bool,
    hold_calls: u32,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let mut rates = Vec::new();
        if args.smoke {
            rates.push(args.start.min(100));
        } else {
            let mut r = f64::from(args.start.max(1));
            while r <= f64::from(args.max) + 0.5 {
                rates.push(r.round() as u32);
                r *= 1.25;
            }
        }
        Plan {
            rates,
            step_secs: if args.smoke { 2 } else { args.step_secs.max(1) },
            smoke: args.smoke,
            hold_calls: if args.smoke { 25 } else { args.hold_calls },
        }
    }
}

/// The rates a stepped stage offers: the plan's ×1.25 ladder, then — after the first failing step
/// above a passing one — the rates between them, ×1.25^¼ (≈ 5.7 %) apart from the last pass up, until
/// one fails: "clean to" is then within 6 % of the edge instead of 25 % (5,821/s passing and 7,276/s
/// failing said nothing of 6,000/s).
struct Ladder {
    rates: std::collections::VecDeque<u32>,
    last_pass: Option<u32>,
    refine: bool,
}

impl Ladder {
    fn new(plan: &Plan) -> Ladder {
        Ladder {
            rates: plan.rates.iter().copied().collect(),
            last_pass: None,
            refine: !plan.smoke,
        }
    }

    fn next(&mut self) -> Option<u32> {
        self.rates.pop_front()
    }

    fn passed(&mut self, rate: u32) {
        self.last_pass = Some(rate);
    }

    /// A step failed: refine once between the last pass and `rate`, or stop.
    fn failed(&mut self, rate: u32) {
        self.rates.clear();
        let Some(pass) = self.last_pass.filter(|_| self.refine) else {
            return;
        };
        self.refine = false;
        let factor = 1.25f64.powf(0.25);
        let mut r = f64::from(pass) * factor;
        while (r.round() as u32) < rate {
            self.rates.push_back(r.round() as u32);
            r *= factor;
        }
    }

    /// Whether the next step is a refinement (for the report).
    fn refining(&self) -> bool {
        !self.refine && !self.rates.is_empty()
    }
}

struct Ctx<'a> {
    bin: &'a Path,
    repo: &'a Path,
    plan: &'a Plan,
}

fn header(out: Out, bin: &Path, kamailio: Option<&Path>) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    say!(
        out,
        "== machine: {cores} cores, {cpu}; load average {} ==",
        loadavg()
    );
    say!(out, "helpline: {}", bin.display());
    // scripts/load.sh builds helpline and this harness with the same features.
    let allocator = if cfg!(feature = "mimalloc") {
        "mimalloc (built with --features mimalloc)"
    } else if cfg!(feature = "jemalloc") {
        "jemalloc (the default feature), background purge thread on"
    } else {
        "the system's (glibc malloc; built with --no-default-features)"
    };
    say!(out, "allocator: {allocator}");
    say!(out, "sipp: {}", version(Path::new("sipp"), &["-v"]));
    if let Some(k) = kamailio {
        say!(out, "kamailio: {}", version(k, &["-V"]));
    }
    say!(out, "pass = SIPp 0 failed, 0 retransmissions, reached >= 95 % of the offered rate; no growth of Udp RcvbufErrors (/proc/net/snmp); helpline: a CDR per call");
    say!(out, "CPU per call = utime + stime of the server's processes (/proc/PID/stat) over the step / calls");
}

fn version(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.lines()
                .find(|l| l.contains("SIPp") || l.contains("version"))
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

// ── /proc ──

/// utime + stime of `pids` (clock ticks → seconds; Linux's USER_HZ is 100).
fn cpu_secs(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum::<u64>() as f64
        / 100.0
}

/// `pid` and every process descended from it (Kamailio forks its workers).
fn tree(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                parent.push((p, pp));
            }
        }
    }
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let cur = all[i];
        all.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    all
}

/// Datagrams dropped so far on the UDP sockets bound to 127.0.0.1 on `ports` (/proc/net/udp, last
/// column; sockets of other programs on other addresses are not counted).
pub(crate) fn udp_drops(ports: &[u16]) -> u64 {
    let ports: std::collections::HashSet<u16> = ports.iter().copied().collect();
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, port) = f.get(1)?.rsplit_once(':')?;
            if addr != "0100007F" {
                return None;
            }
            let port = u16::from_str_radix(port, 16).ok()?;
            ports
                .contains(&port)
                .then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `Udp: RcvbufErrors` from /proc/net/snmp.
fn rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let values: Vec<&str> = udp[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == "RcvbufErrors")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("helpline-load-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

// ── helpline ──

/// A `helpline serve` child on loopback with free ports, killed (by its PID) on drop.
struct Helpline {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    cdr: PathBuf,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Helpline {
    fn start(ctx: &Ctx, menus: &Path, extra: &[&str], out: Out) -> Result<Helpline, String> {
        let dir = temp_dir("helpline");
        let cdr = dir.join("cdr.jsonl");
        let prompts = ctx.repo.join("prompts");
        let mut args: Vec<String> = [
            "serve",
            "--config",
            &menus.display().to_string(),
            "--prompts",
            &prompts.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtp-ports",
            RTP_PORTS,
            "--cdr",
            &cdr.display().to_string(),
            "--no-watch",
            // The load source is on the allow-list: the per-source rate limits and call cap would
            // otherwise ban it (it sends thousands of INVITEs a second from one address).
            "--allow",
            "127.0.0.1/32",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        say!(out, "  $ helpline {}", args.join(" "));
        let mut child = Command::new(ctx.bin)
            .args(&args)
            .env("RUST_LOG", "warn,helpline::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", ctx.bin.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let plain = strip_ansi(&line);
                    if plain.contains("listening on udp:") {
                        let _ = tx.send(plain.clone());
                    }
                    let mut log = log.lock().expect("log lock");
                    if log.len() < 200 {
                        log.push(plain);
                    }
                }
            });
        }
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().expect("log lock").join("\n");
                return Err(format!("helpline did not start:\n{log}"));
            }
        };
        let addr_after = |tag: &str| -> Option<SocketAddr> {
            let rest = &line[line.find(tag)? + tag.len()..];
            rest.split_whitespace().next()?.parse().ok()
        };
        let (Some(sip), Some(http)) = (addr_after("udp:"), addr_after("http:")) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot read the addresses from `{line}`"));
        };
        Ok(Helpline {
            child,
            sip,
            http,
            cdr,
            dir,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> Scrape {
        Scrape::get(self.http)
    }

    /// The CDR lines written so far.
    fn cdrs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.cdr)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Waits (up to `limit`) until the CDR file has `n` lines; returns how many it has.
    fn wait_cdrs(&self, n: usize, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        loop {
            let have = self.cdrs().len();
            if have >= n || Instant::now() >= end {
                return have;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Helpline {
    /// After the step at `rate` failed, before the refinement: its calls end (or time out, 64·T1)
    /// first, and the CDR count restarts from what is written, which is returned.
    fn settle_before_refining(&self, counted: usize, rate: u32, out: Out) -> usize {
        let left = self.wait_idle(counted, Duration::from_secs(40));
        say!(out, "  refining between the last pass and {rate}/s ({left} calls still in progress after the wait)");
        self.cdrs().len()
    }

    /// Waits (up to `limit`) until no call is in progress and the CDR file has `n` lines or has stopped
    /// growing (a refusal may leave none); returns how many calls were still in progress.
    fn wait_idle(&self, n: usize, limit: Duration) -> u64 {
        let end = Instant::now() + limit;
        let (mut have, mut changed) = (self.cdrs().len(), Instant::now());
        loop {
            let active = self.metrics().value("helpline_active_calls") as u64;
            let now = self.cdrs().len();
            if now != have {
                (have, changed) = (now, Instant::now());
            }
            let settled = have >= n || changed.elapsed() >= Duration::from_secs(1);
            if (active == 0 && settled) || Instant::now() >= end {
                return active;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Helpline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("LOAD_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = &self.log;
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

// ── /metrics ──

/// One scrape of helpline's /metrics: histogram buckets (cumulative) and plain values.
#[derive(Default, Clone)]
struct Scrape {
    buckets: HashMap<String, Vec<(f64, f64)>>,
    values: HashMap<String, f64>,
}

impl Scrape {
    fn get(http: SocketAddr) -> Scrape {
        let text = http_get(http, "/metrics").unwrap_or_default();
        let mut s = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if let Some((name, le)) = key.split_once("_bucket{le=\"") {
                let le = le.trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                s.buckets
                    .entry(name.to_owned())
                    .or_default()
                    .push((le, value));
            } else {
                s.values.insert(key.to_owned(), value);
            }
        }
        s
    }

    fn value(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }

    /// Every `helpline_overload_refusals_total` reason that grew since `before`, with how much.
    fn refusals(&self, before: &Scrape) -> Vec<(String, u64)> {
        let prefix = "helpline_overload_refusals_total{reason=\"";
        let mut v: Vec<(String, u64)> = self
            .values
            .iter()
            .filter_map(|(k, n)| {
                let reason = k.strip_prefix(prefix)?.strip_suffix("\"}")?;
                let grew = n - before.value(k);
                (grew > 0.0).then(|| (reason.to_owned(), grew as u64))
            })
            .collect();
        v.sort();
        v
    }

    /// The histogram `name`'s observations since `before` as (count, p50, p99, p99.9) in µs (bucket
    /// upper bounds: "p99 ≤ x").
    fn quantiles(&self, before: &Scrape, name: &str) -> Option<(u64, [f64; 3])> {
        let now = self.buckets.get(name)?;
        let empty = Vec::new();
        let was = before.buckets.get(name).unwrap_or(&empty);
        let diff: Vec<(f64, f64)> = now
            .iter()
            .map(|(le, n)| {
                let old = was.iter().find(|(l, _)| l == le).map_or(0.0, |(_, o)| *o);
                (*le, n - old)
            })
            .collect();
        let total = diff.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let q = |q: f64| {
            diff.iter()
                .find(|(_, n)| *n >= q * total)
                .map_or(f64::INFINITY, |(le, _)| le * 1e6)
        };
        Some((total as u64, [q(0.5), q(0.99), q(0.999)]))
    }
}

fn fmt_q(q: Option<(u64, [f64; 3])>) -> String {
    match q {
        None => "no samples".into(),
        Some((n, [a, b, c])) => {
            let f = |v: f64| {
                if v.is_infinite() {
                    "> 30 s".to_owned()
                } else if v >= 1000.0 {
                    format!("≤ {:.1} ms", v / 1000.0)
                } else {
                    format!("≤ {v:.0} µs")
                }
            };
            format!("p50 {}  p99 {}  p99.9 {}  ({n} samples)", f(a), f(b), f(c))
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body.split_once("\r\n\r\n")?.1.to_owned())
}

// ── SIPp ──

/// What one SIPp run reported (its -trace_stat file's last line) and what the host saw meanwhile.
#[derive(Debug, Default, Clone)]
struct Step {
    rate: u32,
    calls: u64,
    ok: u64,
    failed: u64,
    retrans: u64,
    reached: f64,
    rcvbuf: u64,
    /// Datagrams the kernel dropped on the two SIP sockets (/proc/net/udp `drops`): the criterion
    /// instead of the host-wide RcvbufErrors when RTP flows to SIPp's media port, which nothing reads.
    sip_drops: u64,
    media: bool,
    cpu_s: f64,
    wall_s: f64,
}

impl Step {
    fn cpu_us_per_call(&self) -> f64 {
        if self.ok == 0 {
            0.0
        } else {
            self.cpu_s / self.ok as f64 * 1e6
        }
    }

    /// Why the step did not pass (empty: it passed).
    fn faults(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.failed > 0 {
            f.push(format!("{} failed", self.failed));
        }
        if self.retrans > 0 {
            f.push(format!("{} retransmissions", self.retrans));
        }
        if self.media && self.sip_drops > 0 {
            f.push(format!("{} SIP datagrams dropped", self.sip_drops));
        }
        if !self.media && self.rcvbuf > 0 {
            f.push(format!("RcvbufErrors +{}", self.rcvbuf));
        }
        if self.ok < self.calls {
            f.push(format!("{} of {} calls completed", self.ok, self.calls));
        }
        if self.reached < 0.95 * f64::from(self.rate) {
            f.push(format!("SIPp reached only {:.0}/s", self.reached));
        }
        f
    }

    fn line(&self, extra: &str) -> String {
        let faults = self.faults();
        format!(
            "{:>6}/s  ok {:>7}  failed {:>5}  retrans {:>5}  rcvbuf +{:<4}{} sipp {:>6.0}/s  cpu {:>6.1} µs/call ({:.2} core)  {}  {}",
            self.rate,
            self.ok,
            self.failed,
            self.retrans,
            self.rcvbuf,
            if self.media { format!(" (RTP to SIPp; SIP sockets dropped {})", self.sip_drops) } else { String::new() },
            self.reached,
            self.cpu_us_per_call(),
            self.cpu_s / self.wall_s.max(0.001),
            if faults.is_empty() { "PASS".to_owned() } else { format!("FAIL ({})", faults.join(", ")) },
            extra
        )
    }
}

/// Which SIPp scenario a run uses.
enum Scenario<'a> {
    /// `-sn uac` (INVITE, 200, ACK, BYE) holding each call `hold_ms`.
    Uac { hold_ms: u64 },
    /// A scenario file.
    File(&'a Path),
}

/// Runs SIPp against `target` at `rate` for `calls` calls, measuring the CPU of `pids()`.
fn sipp(
    target: SocketAddr,
    scenario: &Scenario,
    rate: u32,
    calls: u64,
    media: bool,
    pids: &dyn Fn() -> Vec<u32>,
) -> Result<Step, String> {
    let sipp_port = free_udp_port();
    let dir = temp_dir("sipp");
    let stat = dir.join("stat.csv");
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir).arg(target.to_string());
    let hold = match scenario {
        Scenario::Uac { hold_ms } => {
            cmd.args(["-sn", "uac", "-d", &hold_ms.to_string()]);
            if *hold_ms > 0 {
                // A held call hears the welcome: SIPp reads its media port and echoes (the caller's
                // 50 pps), else the unread socket overflows and shows as RcvbufErrors.
                cmd.arg("-rtp_echo");
            }
            *hold_ms
        }
        Scenario::File(f) => {
            cmd.arg("-sf").arg(f);
            0
        }
    };
    let limit = (u64::from(rate) * (hold / 1000 + 3)).max(100);
    let timeout = calls / u64::from(rate.max(1)) + hold / 1000 + 60;
    cmd.args([
        "-s",
        "08000000001",
        "-i",
        "127.0.0.1",
        "-p",
        &sipp_port.to_string(),
        "-mp",
        &free_udp_port().to_string(),
        "-r",
        &rate.to_string(),
        "-m",
        &calls.to_string(),
        "-l",
        &limit.to_string(),
        "-buff_size",
        "4194304",
        "-nostdin",
        "-timeout",
        &format!("{timeout}s"),
        "-timeout_error",
        "-trace_stat",
        "-stf",
        &stat.display().to_string(),
        "-fd",
        "1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    let err_path = dir.join("sipp.err");
    if let Ok(f) = std::fs::File::create(&err_path) {
        cmd.stderr(f);
    }
    let rcv0 = rcvbuf_errors();
    let cpu0 = cpu_secs(&pids());
    let t0 = Instant::now();
    let ports = [target.port(), sipp_port];
    let drops0 = udp_drops(&ports);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run sipp: {e}"))?;
    // SIPp's socket is gone once it exits: sample while it runs and keep the highest count.
    let mut drops = 0;
    let status = loop {
        drops = drops.max(udp_drops(&ports).saturating_sub(drops0));
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("sipp: {e}")),
        }
    };
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_secs(&pids()) - cpu0;
    let rcvbuf = rcvbuf_errors().saturating_sub(rcv0);
    let csv = std::fs::read_to_string(&stat).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let err_tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let head: Vec<&str> = lines.next().unwrap_or("").split(';').collect();
    let Some(last) = lines.next_back() else {
        return Err(format!("sipp wrote no statistics (exit {status})"));
    };
    let row: Vec<&str> = last.split(';').collect();
    let col = |name: &str| -> f64 {
        head.iter()
            .position(|h| *h == name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    if col("SuccessfulCall(C)") + col("FailedCall(C)") == 0.0 {
        return Err(format!("sipp placed no call (exit {status}): {err_tail}"));
    }
    Ok(Step {
        rate,
        calls,
        ok: col("SuccessfulCall(C)") as u64,
        failed: col("FailedCall(C)") as u64,
        retrans: col("Retransmissions(C)") as u64,
        reached: col("CallRate(C)"),
        rcvbuf,
        sip_drops: drops,
        media,
        cpu_s,
        wall_s,
    })
}

// ── stages ──

/// G1/G1b/G2: the SIP call path (SIPp's uac: INVITE → 200 with SDP, ACK, BYE), stepped.
fn g1(ctx: &Ctx, out: Out, report: &mut Report) -> Result<(), String> {
    say!(out, "\n== G1/G1b/G2: helpline, SIPp uac (INVITE -> 100, 200 with SDP; ACK; BYE -> 200), RTP ports allocated, CDR on; {} s per step ==", ctx.plan.step_secs);
    let menus = ctx.repo.join("examples/load/menus");
    let server = Helpline::start(ctx, &menus, &["--max-calls", "0", "--max-cps", "0"], out)?;
    say!(out, "  the load source 127.0.0.1 is on the allow-list (--allow 127.0.0.1/32); admission limits off (--max-calls 0 --max-cps 0)");
    let idle = rss_kb(server.pid());
    let pid = server.pid();
    let mut best: Option<Step> = None;
    let mut best_g2 = None;
    let mut total = 0usize;
    let mut ladder = Ladder::new(ctx.plan);
    while let Some(rate) = ladder.next() {
        let calls = u64::from(rate) * ctx.plan.step_secs;
        let before = server.metrics();
        let mut step = sipp(
            server.sip,
            &Scenario::Uac { hold_ms: 0 },
            rate,
            calls,
            false,
            &|| vec![pid],
        )?;
        total += calls as usize;
        let cdrs = server.wait_cdrs(total, Duration::from_secs(10));
        let after = server.metrics();
        let g2 = after.quantiles(&before, "helpline_invite_answer_seconds");
        let missing = total.saturating_sub(cdrs);
        if missing > 0 {
            step.ok = step.ok.min(calls - missing as u64);
        }
        say!(out, "  {}", step.line(&format!("G2 {}", fmt_q(g2))));
        if !step.faults().is_empty() {
            ladder.failed(rate);
            if ladder.refining() {
                total = server.settle_before_refining(total, rate, &mut *out);
            }
            continue;
        }
        ladder.passed(rate);
        best_g2 = g2;
        report
            .passed
            .entry("helpline".into())
            .or_default()
            .push((step.rate, step.cpu_us_per_call()));
        best = Some(step);
    }
    // After the steps (failing ones included), quiet for 60 s (longer than Timer J, 32 s, so finished
    // transactions are gone): what the ladder's high-water left. G5b proper is its own stage.
    let quiet = if ctx.plan.smoke { 1 } else { 60 };
    std::thread::sleep(Duration::from_secs(quiet));
    let kept = rss_kb(pid);
    say!(
        out,
        "  RSS idle {idle} kB; after the ladder's {total} calls and {quiet} s quiet {kept} kB (+{} kB; not G5b, which counts 100,000 calls on a fresh server)",
        kept.saturating_sub(idle)
    );
    match best {
        Some(s) => {
            report
                .best
                .insert("helpline".into(), (s.rate, s.cpu_us_per_call()));
            report.summary.push(format!(
                "G1  calls/s clean: {} /s (target 6,000; floor 5,000)",
                s.rate
            ));
            report.summary.push(format!(
                "G1b CPU per call at {}/s: {:.0} µs (target ≤ 100)",
                s.rate,
                s.cpu_us_per_call()
            ));
            report.summary.push(format!(
                "G2  INVITE → 200 at {}/s: {}  (target p99 ≤ 2 ms at 6,000/s)",
                s.rate,
                fmt_q(best_g2)
            ));
        }
        None => report.summary.push("G1  no step passed".into()),
    }
    report.summary.push(format!(
        "G1  RSS after the ladder's {total} calls and {quiet} s quiet: +{:.1} MB over idle",
        kept.saturating_sub(idle) as f64 / 1024.0
    ));
    Ok(())
}

/// G5b: what a fresh server keeps after the target's 100,000 calls (SIPp `uac` at 2,000/s) and 60 s
/// quiet (longer than Timer J, 32 s, so finished transactions are gone).
fn g5b(ctx: &Ctx, out: Out, report: &mut Report) -> Result<(), String> {
    let (calls, rate, quiet) = if ctx.plan.smoke {
        (200, 100, 1)
    } else {
        (100_000, 2_000, 60)
    };
    say!(
        out,
        "\n== G5b: RSS after {calls} calls at {rate}/s and {quiet} s quiet, fresh server =="
    );
    let menus = ctx.repo.join("examples/load/menus");
    let server = Helpline::start(ctx, &menus, &["--max-calls", "0", "--max-cps", "0"], out)?;
    std::thread::sleep(Duration::from_secs(if ctx.plan.smoke { 1 } else { 3 }));
    let pid = server.pid();
    let idle = rss_kb(pid);
    let step = sipp(
        server.sip,
        &Scenario::Uac { hold_ms: 0 },
        rate,
        calls,
        false,
        &|| vec![pid],
    )?;
    let cdrs = server.wait_cdrs(calls as usize, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(quiet));
    let kept = rss_kb(pid);
    say!(
        out,
        "  {} calls: ok {}, failed {}, retransmissions {}, CDRs {cdrs}; RSS idle {idle} kB, after {quiet} s quiet {kept} kB (+{} kB)",
        step.calls,
        step.ok,
        step.failed,
        step.retrans,
        kept.saturating_sub(idle)
    );
    report.summary.push(format!(
        "G5b RSS after {} calls and {quiet} s quiet: +{:.1} MB over idle (target: within 10 MB after 100,000 calls and 60 s)",
        step.ok,
        kept.saturating_sub(idle) as f64 / 1024.0
    ));
    Ok(())
}

/// G5: memory per concurrent call: N calls held at once, (RSS at N − idle) / N.
fn g5(ctx: &Ctx, out: Out, report: &mut Report) -> Result<(), String> {
    let n = ctx.plan.hold_calls.max(1);
    let rate = if ctx.plan.smoke { 50 } else { 500 };
    let hold_ms = u64::from(n) * 1000 / u64::from(rate) + if ctx.plan.smoke { 500 } else { 3000 };
    say!(
        out,
        "\n== G5: memory per call: {n} calls held {hold_ms} ms each, placed at {rate}/s =="
    );
    let menus = ctx.repo.join("examples/load/menus");
    let server = Helpline::start(ctx, &menus, &["--max-calls", "0", "--max-cps", "0"], out)?;
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kb(server.pid());
    let pid = server.pid();
    let http = server.http;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = (0.0f64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let active = Scrape::get(http).value("helpline_active_calls");
                let rss = rss_kb(pid);
                if active > peak.0 || (active == peak.0 && rss > peak.1) {
                    peak = (active, rss);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        })
    };
    let step = sipp(
        server.sip,
        &Scenario::Uac { hold_ms },
        rate,
        u64::from(n),
        true,
        &|| vec![pid],
    )?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (active, rss) = sampler.join().unwrap_or_default();
    let per_call = if active > 0.0 {
        (rss.saturating_sub(idle)) as f64 / active
    } else {
        0.0
    };
    // Not a pass/fail step: the calls are held, so SIPp's average rate is not the offered one.
    say!(
        out,
        "  {} calls: ok {}, failed {}, retransmissions {}, RcvbufErrors +{}",
        step.calls,
        step.ok,
        step.failed,
        step.retrans,
        step.rcvbuf
    );
    say!(
        out,
        "  RSS idle {idle} kB, at {active:.0} concurrent calls {rss} kB: {per_call:.1} kB per call"
    );
    report.summary.push(format!("G5  memory per active call: {per_call:.1} kB at {active:.0} calls (target ≤ 8 kB; floor 16)"));
    Ok(())
}

/// G1c (+G3, G6): the full IVR call, stepped; every call must be routed in its CDR.
fn g1c(ctx: &Ctx, args: &Args, out: Out, report: &mut Report) -> Result<(), String> {
    let file = if args.ivr_key == "info" {
        "ivr_info.xml"
    } else {
        "ivr_rfc4733.xml"
    };
    let scenario = ctx.repo.join("examples/load").join(file);
    say!(out, "\n== G1c/G3/G6: helpline, full IVR call ({file}: answer, first prompt, key 1, route load.orders, helpline hangs up); {} s per step ==", ctx.plan.step_secs);
    let menus = ctx.repo.join("examples/load/menus");
    let server = Helpline::start(
        ctx,
        &menus,
        &[
            "--max-calls",
            "0",
            "--max-cps",
            "0",
            "--first-prompt-delay-ms",
            "50",
        ],
        out,
    )?;
    let pid = server.pid();
    let mut best: Option<(Step, String, String)> = None;
    let mut seen = 0usize;
    let mut ladder = Ladder::new(ctx.plan);
    while let Some(rate) = ladder.next() {
        let calls = u64::from(rate) * ctx.plan.step_secs;
        let before = server.metrics();
        let mut step = sipp(
            server.sip,
            &Scenario::File(&scenario),
            rate,
            calls,
            true,
            &|| vec![pid],
        )?;
        server.wait_cdrs(seen + calls as usize, Duration::from_secs(15));
        let cdrs = server.cdrs();
        let new = &cdrs[seen.min(cdrs.len())..];
        seen = cdrs.len();
        let routed = new
            .iter()
            .filter(|l| l.contains("\"route\":\"load.orders\""))
            .count();
        let after = server.metrics();
        let g3 = fmt_q(after.quantiles(&before, "helpline_first_prompt_seconds"));
        let g6 = fmt_q(after.quantiles(&before, "helpline_key_action_seconds"));
        if (routed as u64) < calls {
            step.ok = step.ok.min(routed as u64);
        }
        say!(out, "  {}  routed {routed}/{calls}", step.line(""));
        say!(out, "           G3 first RTP → first prompt {g3}");
        say!(out, "           G6 key → action {g6}");
        if !step.faults().is_empty() {
            ladder.failed(rate);
            if ladder.refining() {
                seen = server.settle_before_refining(seen, rate, &mut *out);
            }
            continue;
        }
        ladder.passed(rate);
        best = Some((step, g3, g6));
    }
    match best {
        Some((s, g3, g6)) => {
            report
                .best
                .insert("helpline-ivr".into(), (s.rate, s.cpu_us_per_call()));
            report.summary.push(format!("G1c full IVR calls/s clean, every call routed: {} /s, {:.0} µs CPU per call (target 2,000; floor 1,500)", s.rate, s.cpu_us_per_call()));
            report.summary.push(format!(
                "G3  first RTP → first prompt at {}/s: {g3} (target p99 ≤ 5 ms at 1,000/s)",
                s.rate
            ));
            report.summary.push(format!(
                "G6  key → action at {}/s: {g6} (target p99 ≤ 5 ms at G4 load)",
                s.rate
            ));
        }
        None => report.summary.push("G1c no step passed".into()),
    }
    Ok(())
}

/// The RTP range every helpline stage runs with (see `Helpline::start`), and how many calls it holds.
const RTP_PORTS: &str = "20000-59999";
const RTP_PAIRS: u32 = 20_000; // even ports 20000, 20002 … 59998, each with the odd one above

/// G8: overload: `--max-cps R`, offered 1.5 R; the excess must get 503 fast, admitted calls complete.
/// Every call is accounted for by its CDR: answered, refused by the cause its `refusal` names (the
/// `503`s of `max-cps`, `no-rtp-port` … told apart), or other; calls with no CDR are set against the
/// refusals that leave none (records-full, queue-full-503 …).
fn g8(ctx: &Ctx, out: Out, report: &mut Report) -> Result<(), String> {
    let proven = report
        .best
        .get("helpline")
        .map_or(ctx.plan.rates[0], |b| b.0);
    let limit = if ctx.plan.smoke { 50 } else { proven };
    let offered = limit * 3 / 2;
    let secs = ctx.plan.step_secs;
    say!(out, "\n== G8: overload: --max-cps {limit}, offered {offered}/s for {secs} s (overload_uac.xml: a 503 is ACKed and ends the call) ==");
    let menus = ctx.repo.join("examples/load/menus");
    let server = Helpline::start(
        ctx,
        &menus,
        &["--max-calls", "0", "--max-cps", &limit.to_string()],
        out,
    )?;
    let pid = server.pid();
    let scenario = ctx.repo.join("examples/load/overload_uac.xml");
    let calls = u64::from(offered) * secs;
    let before = server.metrics();
    let peaks = Peaks::start(
        server.http,
        &["helpline_active_calls", "helpline_rtp_ports_in_use"],
    );
    let step = sipp(
        server.sip,
        &Scenario::File(&scenario),
        offered,
        calls,
        false,
        &|| vec![pid],
    )?;
    // Calls SIPp gave up on may still be in progress (a 2xx waiting for its ACK lives 64·T1 = 32 s):
    // their CDRs come when they end.
    let settle = if ctx.plan.smoke { 10 } else { 40 };
    let left = server.wait_idle(calls as usize, Duration::from_secs(settle));
    let peak = peaks.finish();
    let after = server.metrics();
    let tally = Tally::of(&server.cdrs());
    let refusals = after.refusals(&before);
    let g2 = fmt_q(after.quantiles(&before, "helpline_invite_answer_seconds"));
    say!(out, "  {}", step.line(""));
    let by_cause = tally.refused_line();
    say!(
        out,
        "  CDRs {} ({} Call-IDs): answered {}, refused {} ({by_cause}){}",
        tally.lines,
        tally.call_ids,
        tally.answered,
        tally.refused(),
        tally.other_line()
    );
    say!(
        out,
        "  refusal counters (helpline_overload_refusals_total, this step): {}",
        fmt_counts(&refusals)
    );
    let no_cdr_refusals: u64 = refusals
        .iter()
        .filter(|(r, _)| LEAVE_NO_CDR.contains(&r.as_str()))
        .map(|(_, n)| *n)
        .sum();
    let without_cdr = calls as i64 - tally.call_ids as i64;
    say!(
        out,
        "  offered {calls}: {without_cdr} left no CDR (refusals that leave none: {no_cdr_refusals}; unaccounted {}); {left} calls still in progress after {settle} s",
        without_cdr - no_cdr_refusals as i64
    );
    let ports = peak
        .get("helpline_rtp_ports_in_use")
        .copied()
        .unwrap_or(0.0);
    let active = peak.get("helpline_active_calls").copied().unwrap_or(0.0);
    say!(
        out,
        "  peak: {active:.0} calls in progress, {ports:.0} of {RTP_PAIRS} RTP port pairs in use (no-rtp-port refusals start when they all are)"
    );
    say!(out, "  G2 of the admitted calls: {g2}");
    report.summary.push(format!(
        "G8  overload at 1.5 × {limit}/s: {} answered, {} refused ({by_cause}), {} unaccounted, {} SIPp failed; peak {ports:.0}/{RTP_PAIRS} RTP pairs; admitted G2 {g2}",
        tally.answered,
        tally.refused(),
        without_cdr - no_cdr_refusals as i64,
        step.failed
    ));
    Ok(())
}

/// Refusals (`helpline_overload_refusals_total` reasons) that leave no CDR: answered statelessly or
/// before a call exists, or dropped (`queue-full-dropped` counts any message, not only INVITEs).
const LEAVE_NO_CDR: [&str; 5] = [
    "records-full",
    "queue-full-503",
    "queue-full-dropped",
    "banned",
    "banned-silent",
];

fn fmt_counts(counts: &[(String, u64)]) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The CDRs of a step by outcome.
#[derive(Debug, Default)]
struct Tally {
    lines: usize,
    call_ids: usize,
    answered: usize,
    /// Refused 503/486 by the CDR's `refusal` ("unnamed" when it has none: an older binary).
    refused: std::collections::BTreeMap<(u64, String), usize>,
    /// Any other final status.
    other: std::collections::BTreeMap<u64, usize>,
}

impl Tally {
    fn of(lines: &[String]) -> Tally {
        let mut t = Tally::default();
        let mut ids = std::collections::HashSet::new();
        for line in lines {
            let Ok(cdr) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            t.lines += 1;
            if let Some(id) = cdr.get("call_id").and_then(|v| v.as_str()) {
                ids.insert(id.to_owned());
            }
            let status = cdr
                .get("final_status")
                .and_then(|v| v.as_u64())
                .unwrap_or(0);
            let refusal = cdr.get("refusal").and_then(|v| v.as_str());
            match (status, refusal) {
                (200, _) => t.answered += 1,
                (503 | 486, r) => {
                    let cause = r.unwrap_or("unnamed").to_owned();
                    *t.refused.entry((status, cause)).or_default() += 1;
                }
                (s, _) => *t.other.entry(s).or_default() += 1,
            }
        }
        t.call_ids = ids.len();
        t
    }

    fn refused(&self) -> usize {
        self.refused.values().sum()
    }

    fn refused_line(&self) -> String {
        if self.refused.is_empty() {
            return "none".into();
        }
        self.refused
            .iter()
            .map(|((s, c), n)| format!("{s} {c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn other_line(&self) -> String {
        if self.other.is_empty() {
            return String::new();
        }
        let v: Vec<String> = self
            .other
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(", other final statuses {}", v.join(", "))
    }
}

/// Samples gauges of helpline's /metrics every 200 ms on a thread and keeps each one's highest value.
struct Peaks {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<String, f64>>,
}

impl Peaks {
    fn start(http: SocketAddr, gauges: &'static [&'static str]) -> Peaks {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak: HashMap<String, f64> = HashMap::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = Scrape::get(http);
                    for g in gauges {
                        let v = peak.entry((*g).to_owned()).or_default();
                        *v = v.max(s.value(g));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                peak
            })
        };
        Peaks { stop, thread }
    }

    fn finish(self) -> HashMap<String, f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Kamailio as a stateless responder (sl) or a stateful proxy (tm) in front of a SIPp uas, stepped.
fn kamailio_stage(
    kam: &Path,
    repo: &Path,
    plan: &Plan,
    stateful: bool,
    out: Out,
    report: &mut Report,
) -> Result<(), String> {
    let name = if stateful {
        "kamailio-stateful"
    } else {
        "kamailio-stateless"
    };
    let cfg = repo.join(format!("examples/load/{name}.cfg"));
    say!(
        out,
        "\n== {name}: SIPp uac against Kamailio ({}), 2 children; {} s per step ==",
        if stateful {
            "tm proxy relaying to a SIPp uas"
        } else {
            "sl: 200 with SDP to INVITE, 200 to BYE"
        },
        plan.step_secs
    );
    let dir = temp_dir("kamailio");
    let port = free_udp_port();
    let mut uas: Option<Child> = None;
    let mut extra: Vec<String> = Vec::new();
    if stateful {
        let uas_port = free_udp_port();
        let child = Command::new("sipp")
            .current_dir(&dir)
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &uas_port.to_string(),
                "-mp",
                &free_udp_port().to_string(),
                "-buff_size",
                "4194304",
                "-nostdin",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the sipp uas: {e}"))?;
        uas = Some(child);
        extra.extend([
            "-A".into(),
            format!("UAS_ADDR=\"sip:127.0.0.1:{uas_port}\""),
        ]);
    }
    let mut cmd = Command::new(kam);
    cmd.args([
        "-f",
        &cfg.display().to_string(),
        "-l",
        &format!("udp:127.0.0.1:{port}"),
        "-n",
        "2",
        "-DD",
        "-E",
        "-m",
        "256",
        "-M",
        "16",
        "-Y",
        &dir.display().to_string(),
        "-w",
        &dir.display().to_string(),
    ])
    .args(&extra)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    say!(
        out,
        "  $ kamailio -f {} -l udp:127.0.0.1:{port} -n 2 -DD -E …",
        cfg.display()
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start kamailio: {e}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let klog = Arc::new(Mutex::new(Vec::new()));
    {
        let klog = klog.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = klog.lock().expect("log lock");
                if l.len() < 100 {
                    l.push(line);
                }
            }
        });
    }
    let kpid = child.id();
    // Ready when its workers are forked (main + 2 udp receivers + timers …) and it answers.
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let ready = wait_sip_ready(target, Duration::from_secs(10));
    // By PID: SIGTERM to Kamailio's main process (it stops its workers), then SIGKILL to whatever of
    // the tree it started is left; the uas is our own child.
    let kill = |child: &mut Child, uas: Option<Child>| {
        let workers = tree(kpid);
        let _ = Command::new("kill")
            .args(["-TERM", &kpid.to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        for pid in workers.into_iter().skip(1) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if let Some(mut uas) = uas {
            let _ = uas.kill();
            let _ = uas.wait();
        }
    };
    if !ready {
        kill(&mut child, uas);
        let log = klog.lock().expect("log lock").join("\n");
        return Err(format!(
            "{name} did not answer on udp:127.0.0.1:{port}:\n{log}"
        ));
    }
    let pids = || tree(kpid);
    let mut best: Option<Step> = None;
    let mut ladder = Ladder::new(plan);
    while let Some(rate) = ladder.next() {
        let calls = u64::from(rate) * plan.step_secs;
        let step = sipp(
            target,
            &Scenario::Uac { hold_ms: 0 },
            rate,
            calls,
            false,
            &pids,
        )?;
        say!(out, "  {}", step.line(""));
        if !step.faults().is_empty() {
            ladder.failed(rate);
            if ladder.refining() {
                // Stateless Kamailio keeps nothing; the tm proxy's transactions of the failed step
                // end within 64·T1 (32 s).
                let settle = match (plan.smoke, name.contains("stateful")) {
                    (true, _) => 1,
                    (false, false) => 5,
                    (false, true) => 35,
                };
                std::thread::sleep(Duration::from_secs(settle));
                say!(out, "  refining between the last pass and {rate}/s");
            }
            continue;
        }
        ladder.passed(rate);
        report
            .passed
            .entry(name.into())
            .or_default()
            .push((step.rate, step.cpu_us_per_call()));
        best = Some(step);
    }
    kill(&mut child, uas);
    let _ = std::fs::remove_dir_all(&dir);
    match best {
        Some(s) => {
            report
                .best
                .insert(name.into(), (s.rate, s.cpu_us_per_call()));
            report.summary.push(format!(
                "{name}: clean to {} /s, {:.0} µs CPU per call there",
                s.rate,
                s.cpu_us_per_call()
            ));
        }
        None => report.summary.push(format!("{name}: no step passed")),
    }
    Ok(())
}

/// Sends OPTIONS until something answers (or `limit` passes).
fn wait_sip_ready(target: SocketAddr, limit: Duration) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(local) = sock.local_addr() else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + limit;
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let msg = format!(
            "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{n}\r\nFrom: <sip:load@{local}>;tag=r{n}\r\nTo: <sip:{target}>\r\nCall-ID: ready-{n}@load\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), target);
        let mut buf = [0u8; 2048];
        if sock.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// The helpline ÷ Kamailio lines of the summary: CPU per call at the highest rate both passed (CPU per
/// call falls as the rate rises, so unequal rates would flatter one side), and the max clean rates.
fn ratios(report: &mut Report) {
    let Some(&(h_rate, _)) = report.best.get("helpline") else {
        return;
    };
    let h = report.passed.get("helpline").cloned().unwrap_or_default();
    for k in ["kamailio-stateless", "kamailio-stateful"] {
        let Some(&(k_rate, _)) = report.best.get(k) else {
            continue;
        };
        let theirs = report.passed.get(k).cloned().unwrap_or_default();
        let common = h.iter().rev().find_map(|(r, c)| {
            theirs
                .iter()
                .find(|(kr, _)| kr == r)
                .map(|(_, kc)| (*r, *c, *kc))
        });
        let cpu = match common {
            Some((r, hc, kc)) if kc > 0.0 => {
                format!("{:.2} (at {r}/s: {hc:.0} ÷ {kc:.0} µs)", hc / kc)
            }
            _ => "n/a (no rate both passed)".into(),
        };
        report.summary.push(format!(
            "ratio helpline ÷ {k}: CPU per call {cpu}; max clean rate {:.2} ({h_rate} ÷ {k_rate})",
            f64::from(h_rate) / f64::from(k_rate.max(1))
        ));
    }
}
