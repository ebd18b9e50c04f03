//! Command line (clap): `serve`, `check`, `simulate`, `passwd`, `replay`, `report`; the only place
//! errors become exit codes.
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};

use crate::config::{parse_port_range, ServerConfig};
use crate::ivr::{Diagnostic, MenuSet, Severity};
use crate::prompts::PromptStore;

/// helpline: SIP/RTP IVR call router for the order and refund helpline.
#[derive(Debug, Parser)]
#[command(name = "helpline", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
// Parsed once at start: the size of `Serve` (all of its flags) costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the server.
    Serve {
        /// The server's settings file (every key is one of these flags, which override it); default
        /// `./helpline.toml` when it exists. README lists its keys.
        #[arg(long, value_name = "FILE")]
        server_config: Option<PathBuf>,
        /// Directory of the IVR menu files.
        #[arg(long, default_value = "ivr-menus")]
        config: PathBuf,
        /// Directory of the prompts (`<lang>/<name>.wav`).
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
        /// SIP address for UDP and TCP; port 0 picks a free port.
        #[arg(long, default_value = "0.0.0.0:5060")]
        listen: SocketAddr,
        /// RTP port range LO-HI.
        #[arg(long, default_value = "20000-30000", value_parser = parse_port_range)]
        rtp_ports: (u16, u16),
        /// Append one JSON line per call to this file.
        #[arg(long)]
        cdr: Option<PathBuf>,
        /// Append the queue event log to this file: one JSON line per join, offer, answer, abandon,
        /// overflow, timeout, announcement and agent change (created if missing).
        #[arg(long)]
        queue_log: Option<PathBuf>,
        /// Records the CDR and the queue log writer each keep in memory while their file refuses
        /// writes (disk full, file removed, permission): retried in order, never dropped. Past half
        /// of it `/health/ready` answers 503; when it is full new calls get 503 (calls in progress
        /// still add theirs).
        #[arg(long, value_name = "N", default_value_t = crate::server::jsonl::DEFAULT_SPOOL as u64,
              value_parser = clap::value_parser!(u64).range(1..))]
        cdr_spool: u64,
        /// When CDR and queue log records are forced to disk: `never` (the kernel decides), `line`
        /// (fdatasync after every record) or `interval` (within a second of a write).
        #[arg(long, value_name = "never|line|interval", default_value = "interval")]
        cdr_fsync: crate::server::jsonl::FsyncPolicy,
        /// Log lines as `text` or as `json` (one object per line: time, level, call_id, message,
        /// fields); stamped with the server's clock, as the CDR is.
        #[arg(long, value_name = "text|json", default_value = "text")]
        log_format: crate::telemetry::LogFormat,
        /// Write one pcap per call into this directory: its SIP (every leg), the caller's RTP and a
        /// sample of ours (`trace = false` in the menus turns it off for a region or number).
        #[arg(long, value_name = "DIR")]
        trace_dir: Option<PathBuf>,
        /// Address to announce in SDP and Via (default: the listen address, or the address each caller
        /// dialed when listening on 0.0.0.0).
        #[arg(long)]
        advertise_ip: Option<IpAddr>,
        /// Seconds calls in progress may take to finish after SIGTERM/SIGINT.
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
        /// Seconds without RTP or SIP from a caller before the call is released.
        #[arg(long, default_value_t = 30)]
        rtp_timeout_secs: u64,
        /// Milliseconds to ring (180) before answering.
        #[arg(long, default_value_t = 0)]
        ring_ms: u64,
        /// Milliseconds to wait for the caller's first RTP after the ACK before the first prompt starts.
        #[arg(long, default_value_t = 300)]
        first_prompt_delay_ms: u64,
        /// Milliseconds between RTCP reports on each call leg, before RFC 3550's randomisation to
        /// 0.5–1.5 times it (the first report comes after half of it).
        #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
        rtcp_interval_ms: u64,
        /// Media threads pacing prompts and relaying RTP; a call's sessions share one (1–64).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        media_threads: u64,
        /// Runs the media threads under SCHED_FIFO at this priority (1–98; their tickers one above):
        /// steadier pacing on a busy machine; needs CAP_SYS_NICE or LimitRTPRIO (off by default).
        #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=98))]
        media_rt_priority: Option<u8>,
        /// Pins the media threads (and their tickers) to these CPUs, e.g. `1` or `2-3` (default: any).
        #[arg(long, value_name = "LIST", value_parser = crate::config::parse_cpu_list)]
        media_cpus: Option<u64>,
        /// Seconds a caller may stay in the menus before helpline hangs up.
        #[arg(long, default_value_t = 900)]
        max_ivr_secs: u64,
        /// SIP timer T1 in milliseconds (RFC 3261 §17; 500 by default).
        #[arg(long, default_value_t = 500)]
        t1_ms: u64,
        /// SIP timer T2 in milliseconds (4000 by default).
        #[arg(long, default_value_t = 4000)]
        t2_ms: u64,
        /// SIP timer T4 in milliseconds (5000 by default).
        #[arg(long, default_value_t = 5000)]
        t4_ms: u64,
        /// Log level filter, e.g. `info` or `warn,helpline=debug` (default: RUST_LOG, else info).
        #[arg(long, value_name = "FILTER", value_parser = crate::telemetry::parse_level)]
        log_level: Option<String>,
        /// Reload only on SIGHUP, not when a file in the menu directory changes.
        #[arg(long)]
        no_watch: bool,
        /// Testing aid: start the wall clock (opening hours, CDR times) at this RFC 3339 instant.
        #[arg(long, value_parser = parse_rfc3339)]
        pretend_time: Option<chrono::DateTime<chrono::Utc>>,
        /// Text of the Server header on responses and User-Agent on requests (RFC 3261 §20.35, §20.41).
        #[arg(long, value_name = "TEXT", default_value = crate::sip::USER_AGENT)]
        server_header: String,
        /// Serve `/metrics`, `/health/live`, `/health/ready` and `/calls/{call-id}` over HTTP at this
        /// address (off by default; port 0 picks a free port).
        #[arg(long, value_name = "IP:PORT")]
        http: Option<SocketAddr>,
        /// Requests per second one source address may send of one method (INVITE, REGISTER, OPTIONS,
        /// other) before it is banned; 0 turns rate limits off. A burst of twice this passes.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit_rate: u32,
        /// How long a source over the rate is banned, seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        ban_secs: u64,
        /// What a banned source gets: `silence` (dropped) or `503` (with Retry-After).
        #[arg(long, value_name = "silence|503", default_value = "silence")]
        banned_answer: crate::guard::BannedAnswer,
        /// Addresses and CIDRs never limited, banned or capped (carriers, a proxy in front, test
        /// harnesses), comma-separated: `127.0.0.1/32,10.0.0.0/8`.
        #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
        allow: Vec<crate::guard::Cidr>,
        /// Most concurrent calls from one source address (beyond it: 503 + Retry-After); 0: no cap.
        #[arg(long, value_name = "N", default_value_t = 500)]
        max_calls_per_source: usize,
        /// Most TCP connections open at once; one beyond it is closed as soon as it is accepted.
        #[arg(long, value_name = "N", default_value_t = 4096)]
        tcp_max_connections: usize,
        /// Most TCP connections open at once from one source address (allow-listed ones: no cap).
        #[arg(long, value_name = "N", default_value_t = 64)]
        tcp_max_per_source: usize,
        /// Seconds a TCP connection may stay idle (no message, no CRLF keep-alive) before it is closed,
        /// unless a registration binding or a dialog rides on it.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        tcp_idle_secs: u64,
        /// Seconds a new TCP connection has to send its first complete SIP message (slow loris).
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        tcp_first_message_secs: u64,
        /// Largest SIP message accepted on a TCP connection, bytes; a larger one closes it.
        #[arg(long, value_name = "BYTES", default_value_t = crate::transport::framing::MAX_MESSAGE_BYTES)]
        max_message_bytes: usize,
        /// Drop requests whose User-Agent names a known scanner (friendly-scanner, sipvicious, sipcli
        /// …) without an answer. A weak signal: any scanner can send another User-Agent.
        #[arg(long)]
        drop_scanners: bool,
        /// The supervisor view's service level: the share of callers answered within this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 20)]
        service_level_secs: u64,
        /// Most calls in progress at once, from all sources; the next INVITE gets the overload answer
        /// (`503` + `Retry-After: 5` by default). 0: no limit. The default fits the default RTP range.
        #[arg(long, value_name = "N", default_value_t = crate::call::admission::DEFAULT_MAX_CALLS)]
        max_calls: usize,
        /// Most new calls per second, from all sources (a token bucket; a burst of a tenth of a
        /// second's calls, at least 10, passes); the excess gets the overload answer (`503` +
        /// `Retry-After: 1` by default). 0: no limit.
        #[arg(long, value_name = "N", default_value_t = crate::call::admission::DEFAULT_MAX_CPS)]
        max_cps: u32,
        /// What an INVITE over `--max-calls` or `--max-cps` gets: `503` (with Retry-After; a proxy
        /// tries elsewhere) or `486` (busy, nothing retries).
        #[arg(long, value_name = "503|486", default_value = "503")]
        overload_answer: crate::call::OverloadAnswer,
    },
    /// Check the menus and prompts; print every error as file:line:col and exit 1 if any.
    Check {
        /// Directory of the IVR menu files (default: the server config's `[menus] dir`, else ivr-menus).
        #[arg(default_value = "ivr-menus")]
        dir: PathBuf,
        /// Directory of the prompts (default: the server config's `[menus] prompts`, else prompts).
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
        /// The server's settings file to check too; default `./helpline.toml` when it exists.
        #[arg(long, value_name = "FILE")]
        server_config: Option<PathBuf>,
    },
    /// Walk the real IVR engine on a simulated clock and print what a caller would hear.
    Simulate {
        /// The dialed number, in any format a caller might send.
        #[arg(long)]
        dialed: String,
        /// The wall-clock time of the call (RFC 3339), default now.
        #[arg(long)]
        at: Option<String>,
        /// Keys pressed at successive prompts, comma-separated: `2,123456#`.
        #[arg(long, default_value = "")]
        keys: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Directory of the IVR menu files.
        #[arg(long, default_value = "ivr-menus")]
        config: PathBuf,
        /// Directory of the prompts.
        #[arg(long, default_value = "prompts")]
        prompts: PathBuf,
    },
    /// Replay the caller's side of every call of a SIP trace (pcap, pcapng, SIPp `-trace_msg` log)
    /// against a running server or offline, and report where each call ended. Exit 1 if any call
    /// failed, 2 on usage or read errors.
    #[command(group(ArgGroup::new("mode").required(true).args(["target", "offline"])))]
    Replay {
        /// The trace file.
        trace: PathBuf,
        /// The server's SIP address (live replay).
        #[arg(long, value_name = "IP:PORT")]
        target: Option<SocketAddr>,
        /// Replay in-process on a simulated clock against the menus in --config.
        #[arg(long)]
        offline: bool,
        /// Live: read each call's route from the server's CDR file (same host).
        #[arg(long, requires = "target", conflicts_with = "http")]
        cdr: Option<PathBuf>,
        /// Live: read each call's route from the server's `GET /calls/{call-id}` (`serve --http`).
        #[arg(long, value_name = "IP:PORT", requires = "target")]
        http: Option<SocketAddr>,
        /// Live: our own address (default: loopback of the target's family).
        #[arg(long, requires = "target")]
        bind: Option<IpAddr>,
        /// Offline: directory of the IVR menu files.
        #[arg(long, requires = "offline")]
        config: Option<PathBuf>,
        /// Offline: directory of the prompts (their lengths time the menus).
        #[arg(long, requires = "offline")]
        prompts: Option<PathBuf>,
        /// Offline: the wall-clock time of the calls (RFC 3339); default each call's captured start.
        #[arg(long, requires = "offline", value_parser = parse_rfc3339)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Replay only call N (1-based, in the order of the trace's INVITEs).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        call: Option<u64>,
        /// Fail every call that does not reach this route (`REGION.DEPARTMENT`).
        #[arg(long, value_name = "ROUTE")]
        expect_route: Option<String>,
        /// One JSON object per call per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the IVR funnel of a CDR file: per region and per dialed number, how many calls reached a
    /// route and where (menu, after how long, why) the others left. Bad lines are reported and skipped.
    Report {
        /// The CDR file (one JSON line per call, as `serve --cdr` writes it).
        cdr: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read an agent's password on stdin (one line) and print the `ha1` and `ha1_sha256` lines to paste
    /// into its `[agents.ID]` table.
    ///
    /// With `--supervisor NAME`: read a supervisor's password and print the `password_hash` line (an
    /// Argon2id PHC string) to paste into its `[supervisors.NAME]` table.
    Passwd {
        /// The agent ID (the SIP user its phone registers).
        #[arg(required_unless_present = "supervisor", conflicts_with = "supervisor")]
        id: Option<String>,
        /// A supervisor of the web view instead of an agent.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["config", "realm"])]
        supervisor: Option<String>,
        /// Directory of the IVR menu files whose `[routing] realm` to use (default: ivr-menus).
        #[arg(long, conflicts_with = "realm")]
        config: Option<PathBuf>,
        /// The realm to hash with, instead of reading it from the menus.
        #[arg(long)]
        realm: Option<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&args);
    if !matches!(cli.command, Command::Serve { .. }) {
        crate::telemetry::init();
    }
    match cli.command {
        Command::Check {
            dir,
            prompts,
            server_config,
        } => {
            let explicit = crate::config_file::explicit_flags(&args, "check");
            check(dir, prompts, server_config.as_deref(), &explicit)
        }
        Command::Serve { .. } => match with_server_config(&args) {
            Ok(cfg) => {
                // The server's clock first: the log lines are stamped with it, as the CDRs are; the
                // log format may come from the config file, so logging starts once it is read.
                crate::clock::start(cfg.pretend_time);
                crate::telemetry::init_with(cfg.log_format);
                if let Some(file) = &cfg.settings {
                    tracing::info!(file = %file.path.display(), keys = file.values.len(), "server config read");
                }
                serve(cfg)
            }
            Err(code) => code,
        },
        Command::Replay {
            trace,
            target,
            offline,
            cdr,
            http,
            bind,
            config,
            prompts,
            at,
            call,
            expect_route,
            json,
        } => {
            let mode = match (target, offline) {
                (Some(target), false) => ReplayMode::Live(crate::replay::live::LiveSetup {
                    target,
                    bind,
                    record: match (cdr, http) {
                        (Some(p), _) => crate::replay::live::RecordSource::Cdr(p),
                        (None, Some(a)) => crate::replay::live::RecordSource::Http(a),
                        (None, None) => crate::replay::live::RecordSource::None,
                    },
                    seed: crate::clock::seed(),
                }),
                _ => ReplayMode::Offline {
                    config: config.unwrap_or_else(|| PathBuf::from("ivr-menus")),
                    prompts: prompts.unwrap_or_else(|| PathBuf::from("prompts")),
                    at,
                },
            };
            let opts = ReplayArgs {
                only: call.map(|n| n as usize),
                expect: expect_route,
                json,
            };
            replay(&trace, mode, &opts)
        }
        Command::Report { cdr, json } => report(&cdr, json),
        Command::Passwd {
            id,
            supervisor,
            config,
            realm,
        } => match (id, supervisor) {
            (_, Some(name)) => passwd_supervisor(&name),
            (Some(id), None) => passwd(&id, config.as_deref(), realm.as_deref()),
            (None, None) => unreachable!("clap requires an ID or --supervisor"),
        },
        Command::Simulate {
            dialed,
            at,
            keys,
            json,
            config,
            prompts,
        } => simulate(&config, &prompts, &dialed, at.as_deref(), &keys, json),
    }
}

/// `serve`'s settings: the server config file (if any) under the command line; on errors prints them
/// and returns the exit code.
fn with_server_config(args: &[std::ffi::OsString]) -> Result<ServerConfig, ExitCode> {
    let given = match Cli::parse_from(args).command {
        Command::Serve { server_config, .. } => server_config,
        _ => None,
    };
    let Some(path) = crate::config_file::locate(given.as_deref()) else {
        return server_config(Cli::parse_from(args).command).ok_or(ExitCode::from(2));
    };
    let explicit = crate::config_file::explicit_flags(args, "serve");
    let loaded = crate::config_file::load(&path, &explicit).map_err(|diagnostics| {
        print_diagnostics(&diagnostics);
        eprintln!("helpline: not starting: fix the server config (`helpline check` shows the same report)");
        ExitCode::from(1)
    })?;
    let merged = crate::config_file::merged_args(args, &loaded.args);
    let mut cfg = server_config(Cli::parse_from(merged).command).ok_or(ExitCode::from(2))?;
    cfg.settings = Some(crate::config_file::Source {
        path,
        args: args.to_vec(),
        explicit,
        values: loaded.values,
    });
    Ok(cfg)
}

/// The settings of a `serve` command line; `None` for another subcommand.
pub fn server_config(command: Command) -> Option<ServerConfig> {
    match command {
        Command::Serve {
            server_config: _,
            config,
            prompts,
            listen,
            rtp_ports,
            cdr,
            queue_log,
            cdr_spool,
            cdr_fsync,
            log_format,
            trace_dir,
            advertise_ip,
            drain_secs,
            rtp_timeout_secs,
            ring_ms,
            first_prompt_delay_ms,
            rtcp_interval_ms,
            media_threads,
            media_rt_priority,
            media_cpus,
            max_ivr_secs,
            t1_ms,
            t2_ms,
            t4_ms,
            log_level,
            no_watch,
            pretend_time,
            server_header,
            http,
            limit_rate,
            ban_secs,
            banned_answer,
            allow,
            max_calls_per_source,
            tcp_max_connections,
            tcp_max_per_source,
            tcp_idle_secs,
            tcp_first_message_secs,
            max_message_bytes,
            drop_scanners,
            service_level_secs,
            max_calls,
            max_cps,
            overload_answer,
        } => {
            let mut cfg = ServerConfig {
                menus_dir: config,
                prompts_dir: prompts,
                listen,
                rtp_ports,
                cdr,
                queue_log,
                cdr_spool: usize::try_from(cdr_spool).unwrap_or(usize::MAX),
                cdr_fsync,
                log_format,
                trace_dir,
                advertise_ip,
                drain: Duration::from_secs(drain_secs),
                rtp_timeout: Duration::from_secs(rtp_timeout_secs),
                ring: Duration::from_millis(ring_ms),
                first_prompt_delay: Duration::from_millis(first_prompt_delay_ms),
                rtcp_interval: Duration::from_millis(rtcp_interval_ms),
                media_threads: media_threads as usize,
                media_rt_priority,
                media_cpus: media_cpus.unwrap_or(0),
                max_ivr: Duration::from_secs(max_ivr_secs),
                watch_menus: !no_watch,
                pretend_time,
                server_header,
                http,
                log_level,
                guard: crate::guard::GuardConfig {
                    rate: limit_rate,
                    burst: limit_rate.saturating_mul(2),
                    ban: Duration::from_secs(ban_secs),
                    banned_answer,
                    allow,
                    max_calls_per_source,
                    drop_scanners,
                    ..crate::guard::GuardConfig::default()
                },
                tcp: crate::transport::tcp_policy::TcpLimits {
                    max_connections: tcp_max_connections,
                    max_per_source: tcp_max_per_source,
                    idle: Duration::from_secs(tcp_idle_secs),
                    first_message: Duration::from_secs(tcp_first_message_secs),
                    max_message_bytes,
                    // The guard's allow-list is added when the server starts.
                    allow: Vec::new(),
                },
                service_level: Duration::from_secs(service_level_secs),
                admission: crate::call::AdmissionConfig {
                    answer: overload_answer,
                    ..crate::call::AdmissionConfig::new(max_calls, max_cps)
                },
                ..ServerConfig::default()
            };
            cfg.timers.t1 = Duration::from_millis(t1_ms.max(1));
            cfg.timers.t2 = Duration::from_millis(t2_ms.max(1));
            cfg.timers.t4 = Duration::from_millis(t4_ms.max(1));
            Some(cfg)
        }
        _ => None,
    }
}

fn parse_rfc3339(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time: {e}"))
}

/// Loads prompts and menus, printing every problem; `None` when anything is wrong.
fn load(menus_dir: &Path, prompts_dir: &Path) -> Option<(Arc<MenuSet>, PromptStore)> {
    load_counting(menus_dir, prompts_dir, 0)
}

/// [`load`], counting `other_errors` (already printed) in the error total.
fn load_counting(
    menus_dir: &Path,
    prompts_dir: &Path,
    other_errors: usize,
) -> Option<(Arc<MenuSet>, PromptStore)> {
    let (store, prompt_errors) = match PromptStore::load_dir(prompts_dir) {
        Ok(store) => (store, Vec::new()),
        Err(errors) => (PromptStore::default(), errors),
    };
    for err in &prompt_errors {
        eprintln!("{err}");
    }
    let checker: &dyn crate::ivr::PromptCheck = &store;
    let result = crate::config::load_menus_with_warnings(menus_dir, checker);
    let menus = match result {
        Ok((set, warnings)) => {
            for warning in warnings {
                eprintln!("{warning}");
            }
            Some(set)
        }
        Err(diagnostics) => {
            print_diagnostics_counting(&diagnostics, other_errors);
            None
        }
    };
    if !prompt_errors.is_empty() {
        return None;
    }
    menus.map(|m| (m, store))
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    print_diagnostics_counting(diagnostics, 0);
}

fn print_diagnostics_counting(diagnostics: &[Diagnostic], other_errors: usize) {
    let errors = other_errors
        + diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
    for d in diagnostics {
        eprintln!("{d}");
    }
    eprintln!("{errors} error(s)");
}

/// `helpline check`: the server config (found as `serve` finds it) and the menus and prompts it names,
/// every error of both in one report.
fn check(
    mut dir: PathBuf,
    mut prompts: PathBuf,
    server_config: Option<&Path>,
    explicit: &std::collections::BTreeSet<String>,
) -> ExitCode {
    let mut config_errors = Vec::new();
    let file = crate::config_file::locate(server_config);
    if let Some(path) = &file {
        let (loaded, diagnostics) = crate::config_file::load_keeping(path, &Default::default());
        config_errors = diagnostics;
        if let (false, Some(d)) = (explicit.contains("dir"), loaded.values.get("menus.dir")) {
            dir = PathBuf::from(d);
        }
        if let (false, Some(p)) = (
            explicit.contains("prompts"),
            loaded.values.get("menus.prompts"),
        ) {
            prompts = PathBuf::from(p);
        }
    }
    for d in &config_errors {
        eprintln!("{d}");
    }
    match load_counting(&dir, &prompts, config_errors.len()) {
        Some((set, _)) if config_errors.is_empty() => {
            if let Some(path) = &file {
                println!("{}: ok", path.display());
            }
            println!("{}: ok (version {})", dir.display(), set.version());
            ExitCode::SUCCESS
        }
        Some(_) => {
            eprintln!("{} error(s)", config_errors.len());
            ExitCode::from(1)
        }
        None => ExitCode::from(1),
    }
}

/// Reads one line (a password) from stdin, prompting on a terminal; `None` (reported) when it cannot
/// be read or is empty.
fn read_password(prompt: &str) -> Option<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(err) = stdin.lock().read_line(&mut line) {
        eprintln!("helpline passwd: cannot read the password: {err}");
        return None;
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        eprintln!("helpline passwd: empty password");
        return None;
    }
    Some(password.to_owned())
}

/// `helpline passwd --supervisor NAME`: an Argon2id hash with a random salt; only the hash is kept.
fn passwd_supervisor(name: &str) -> ExitCode {
    if !crate::ivr::supervisors::is_valid_supervisor_name(name) {
        eprintln!("helpline passwd: invalid supervisor name `{name}`: use 1 to 64 letters, digits and . _ -");
        return ExitCode::from(2);
    }
    let Some(password) = read_password(&format!("password for supervisor {name}")) else {
        return ExitCode::from(2);
    };
    match crate::telemetry::supervisor::auth::hash_password(&password) {
        Ok(hash) => {
            println!("password_hash = \"{hash}\"");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("helpline passwd: cannot hash the password: {err}");
            ExitCode::from(2)
        }
    }
}

/// `helpline passwd`: the password never reaches the configuration, only its two HA1s do.
fn passwd(id: &str, config: Option<&Path>, realm: Option<&str>) -> ExitCode {
    use crate::agent::{digest, is_valid_agent_id, Algorithm, Ha1};

    if !is_valid_agent_id(id) {
        eprintln!(
            "helpline passwd: invalid agent ID `{id}`: use letters, digits and - _ . ! ~ * ' ( )"
        );
        return ExitCode::from(2);
    }
    let realm = match realm {
        Some(r) => r.to_owned(),
        None => match crate::config::read_realm(config.unwrap_or(Path::new("ivr-menus"))) {
            Ok(r) => r,
            Err(err) => {
                eprintln!("helpline passwd: cannot read the realm: {err} (or pass --realm)");
                return ExitCode::from(2);
            }
        },
    };
    if !digest::is_valid_realm(&realm) {
        eprintln!("helpline passwd: invalid realm `{realm}`");
        return ExitCode::from(2);
    }
    let Some(password) = read_password(&format!("password for {id} (realm {realm})")) else {
        return ExitCode::from(2);
    };
    let password = password.as_str();
    let md5 = Ha1::compute(Algorithm::Md5, id, &realm, password);
    let sha = Ha1::compute(Algorithm::Sha256, id, &realm, password);
    println!("ha1 = \"{}\"", md5.as_hex());
    println!("ha1_sha256 = \"{}\"", sha.as_hex());
    ExitCode::SUCCESS
}

/// `helpline report`: exit 1 when the file cannot be read, 0 otherwise (bad lines go to stderr).
fn report(path: &Path, json: bool) -> ExitCode {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            eprintln!("{}: {err}", path.display());
            return ExitCode::from(1);
        }
    };
    let name = path.display().to_string();
    let (calls, errors) = crate::telemetry::report::parse(&name, &text);
    for error in &errors {
        eprintln!("{error}");
    }
    let report = crate::telemetry::report::report(&calls);
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("cannot print the report: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{report}");
    }
    ExitCode::SUCCESS
}

fn simulate(
    menus_dir: &Path,
    prompts_dir: &Path,
    dialed: &str,
    at: Option<&str>,
    keys: &str,
    json: bool,
) -> ExitCode {
    let at = match at {
        Some(text) => match parse_rfc3339(text) {
            Ok(t) => t,
            Err(err) => {
                eprintln!("--at: {err}");
                return ExitCode::from(2);
            }
        },
        None => crate::clock::wall(),
    };
    let Some((set, store)) = load(menus_dir, prompts_dir) else {
        return ExitCode::from(1);
    };
    let durations = move |lang: &str, name: &str| store.get(lang, name).map(|p| p.duration());
    let result = crate::ivr::simulate(&set, dialed, at, keys, crate::clock::now(), &durations);
    if json {
        match serde_json::to_string_pretty(&result) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("cannot print the result: {err}");
                return ExitCode::from(2);
            }
        }
    } else {
        for event in &result.transcript {
            println!("{event}");
        }
        match &result.route {
            Some(route) => println!("route {route}"),
            None => println!("ended nowhere"),
        }
    }
    if result.ended_nowhere {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// How `helpline replay` runs, from its arguments.
enum ReplayMode {
    Live(crate::replay::live::LiveSetup),
    Offline {
        config: PathBuf,
        prompts: PathBuf,
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

struct ReplayArgs {
    only: Option<usize>,
    expect: Option<String>,
    json: bool,
}

fn replay(trace_path: &Path, mode: ReplayMode, args: &ReplayArgs) -> ExitCode {
    let bytes = match std::fs::read(trace_path) {
        Ok(b) => b,
        Err(err) => {
            eprintln!(
                "helpline replay: cannot read {}: {err}",
                trace_path.display()
            );
            return ExitCode::from(2);
        }
    };
    let trace = match crate::replay::trace::read_trace(&bytes) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("helpline replay: {}: {err}", trace_path.display());
            return ExitCode::from(2);
        }
    };
    if trace.calls.is_empty() {
        eprintln!(
            "helpline replay: {}: no call (no INVITE) in the trace",
            trace_path.display()
        );
        return ExitCode::from(2);
    }
    if let Some(n) = args.only.filter(|n| *n > trace.calls.len()) {
        eprintln!(
            "helpline replay: --call {n}: the trace has {} call(s)",
            trace.calls.len()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("helpline replay: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let expect = args.expect.as_deref();
    let reports = match mode {
        ReplayMode::Live(setup) => runtime.block_on(crate::replay::run(
            &trace.calls,
            args.only,
            crate::replay::Mode::Live(&setup),
            expect,
        )),
        ReplayMode::Offline {
            config,
            prompts,
            at,
        } => {
            let Some((menus, prompts)) = load(&config, &prompts) else {
                eprintln!("helpline replay: the menus or prompts have errors (see above)");
                return ExitCode::from(2);
            };
            let setup = crate::replay::offline::OfflineSetup {
                menus,
                prompts,
                wall: at.or(trace.start).unwrap_or_else(crate::clock::wall),
                seed: crate::clock::seed(),
            };
            let mode = crate::replay::Mode::Offline {
                setup: &setup,
                at_given: at.is_some(),
            };
            runtime.block_on(crate::replay::run(&trace.calls, args.only, mode, expect))
        }
    };
    let mut failed = false;
    for r in &reports {
        failed |= r.verdict == crate::replay::report::Verdict::Fail;
        if args.json {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("helpline replay: cannot print the report: {err}");
                    return ExitCode::from(2);
                }
            }
        } else {
            for line in crate::replay::report::text(r) {
                println!("{line}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn serve(cfg: ServerConfig) -> ExitCode {
    if let Some(level) = &cfg.log_level {
        if let Err(e) = crate::telemetry::set_level(level) {
            eprintln!("helpline: {e}");
            return ExitCode::from(2);
        }
    }
    let Some((menus, prompts)) = load(&cfg.menus_dir, &cfg.prompts_dir) else {
        eprintln!(
            "helpline: not starting: fix the errors above (`helpline check` shows the same report)"
        );
        return ExitCode::from(1);
    };
    // The signalling core owns this thread and its I/O driver: a datagram's readiness wakes the thread
    // that handles it (a multi-thread runtime woke a worker, which woke the core: −12 % CPU per call,
    // BENCHMARKS.md). The HTTP endpoints, the reloader and the TCP acceptor run on one auxiliary worker
    // so that a `/metrics` render or a menu compile never stalls SIP (their listening sockets, bound
    // here, report a new connection through this thread's driver; the connections are the worker's).
    let runtimes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|core| {
            let aux = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("helpline-aux")
                .enable_all()
                .build()?;
            Ok((core, aux))
        });
    let (runtime, aux) = match runtimes {
        Ok(rts) => rts,
        Err(err) => {
            eprintln!("helpline: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(crate::server::run(
        cfg,
        menus,
        prompts,
        aux.handle().clone(),
    ));
    aux.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("helpline: {message}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_header(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).expect("valid command line");
        match cli.command {
            Command::Serve { server_header, .. } => server_header,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn server_header_defaults_to_helpline_without_a_version() {
        assert_eq!(server_header(&["helpline", "serve"]), "helpline");
        assert_eq!(ServerConfig::default().server_header, "helpline");
        assert_eq!(
            server_header(&["helpline", "serve", "--server-header", "Acme IVR"]),
            "Acme IVR"
        );
    }
}
