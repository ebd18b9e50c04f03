//! Server settings (listen address, RTP port range, SIP timers, drain and silence times, paths); it does
//! not read the IVR menus themselves — `ivr::load_dir` does that.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ivr::{compile, Diagnostic, MenuSet, PromptCheck, Severity};
use crate::sip::transaction::TimerConfig;
use std::path::Path;
use std::sync::Arc;

/// Everything `helpline serve` needs to run, resolved from the command line.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Directory of the IVR menu TOML files (default `./ivr-menus`).
    pub menus_dir: PathBuf,
    /// Directory of the prompt WAV files, `prompts/<lang>/<name>.wav` (default `./prompts`).
    pub prompts_dir: PathBuf,
    /// SIP listen address for both UDP and TCP (default `0.0.0.0:5060`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Inclusive RTP port range (default 20000–30000); each call takes an even port and the next one.
    pub rtp_ports: (u16, u16),
    /// Where call detail records are appended, one JSON line per call (default: off).
    pub cdr: Option<PathBuf>,
    /// Where the queue event log is appended, one JSON line per record (default: off).
    pub queue_log: Option<PathBuf>,
    /// Records the CDR and the queue log writer each keep in memory while their file refuses writes
    /// (default 10000); at this many new calls get `503`, past half `/health/ready` fails.
    pub cdr_spool: usize,
    /// When CDR and queue log records are forced to disk (default `interval`: within a second).
    pub cdr_fsync: crate::server::jsonl::FsyncPolicy,
    /// Log lines as text or as one JSON object per line (default text).
    pub log_format: crate::telemetry::LogFormat,
    /// Where each call's pcap is written, one file per call (`--trace-dir`; default: off).
    pub trace_dir: Option<PathBuf>,
    /// SIP timer values T1/T2/T4 (RFC 3261 §17; defaults 500 ms / 4 s / 5 s).
    pub timers: TimerConfig,
    /// How long a shutdown waits for calls in progress before it ends them (default 30 s).
    pub drain: Duration,
    /// A call with no RTP and no SIP from the caller for this long is released (default 30 s).
    pub rtp_timeout: Duration,
    /// The longest a caller may stay in the menus before helpline hangs up (default 15 minutes).
    pub max_ivr: Duration,
    /// The first prompt starts at the caller's first RTP packet after the ACK, or after this delay
    /// when the caller sends no RTP (default 300 ms), so its first words are not lost.
    pub first_prompt_delay: Duration,
    /// RTCP report interval on each call leg before randomisation (default 5 s, RFC 3550 §6.2).
    pub rtcp_interval: Duration,
    /// Media threads (default 1); the sessions of one call share one (`server::media_engine`).
    pub media_threads: usize,
    /// SCHED_FIFO priority of the media threads (off by default; `server::media_engine::MediaScheduling`).
    pub media_rt_priority: Option<u8>,
    /// CPUs the media threads may run on, a bit per CPU (0: any).
    pub media_cpus: u64,
    /// The address announced in SDP and Via when listening on the unspecified address (default: the
    /// address each caller sent its INVITE to).
    pub advertise_ip: Option<std::net::IpAddr>,
    /// How long helpline rings (180) before it answers (default 0: answer at once).
    pub ring: Duration,
    /// Testing aid: the wall clock (opening hours, holidays, CDR times) starts at this instant and runs at
    /// normal speed, so a trace can be replayed against the menus at the hour it was recorded.
    pub pretend_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Watch the menu directory for changes and reload (SIGHUP always reloads; default on).
    pub watch_menus: bool,
    /// The text of `Server` on every response and `User-Agent` on every request (default `helpline`,
    /// without a version).
    pub server_header: String,
    /// Where `/metrics`, `/health/*` and `/calls/{call-id}` are served (default: off; port 0 picks one).
    pub http: Option<SocketAddr>,
    /// Per-source rate limits, bans, allow-list and call cap (`--limit-rate`, `--allow` …).
    pub guard: crate::guard::GuardConfig,
    /// TCP connection caps, idle and first-message deadlines, message size (`--tcp-max-connections` …;
    /// the guard's allow-list is exempt from the caps).
    pub tcp: crate::transport::tcp_policy::TcpLimits,
    /// The supervisor view's service level: callers answered within this count as answered in time
    /// (`--service-level-secs`, default 20 s).
    pub service_level: Duration,
    /// Server-wide limits: calls in progress, new calls per second, and what the excess gets
    /// (`--max-calls`, `--max-cps`, `--overload-answer`).
    pub admission: crate::call::AdmissionConfig,
    /// Log level filter (`--log-level`, `[log] level`); `None`: `RUST_LOG`, else `info`.
    pub log_level: Option<String>,
    /// The server config file and command line the settings came from, for SIGHUP (`None`: no file).
    pub settings: Option<crate::config_file::Source>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            menus_dir: PathBuf::from("ivr-menus"),
            prompts_dir: PathBuf::from("prompts"),
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            rtp_ports: (20000, 30000),
            cdr: None,
            queue_log: None,
            cdr_spool: crate::server::jsonl::DEFAULT_SPOOL,
            cdr_fsync: crate::server::jsonl::FsyncPolicy::default(),
            log_format: crate::telemetry::LogFormat::default(),
            trace_dir: None,
            timers: TimerConfig::default(),
            drain: Duration::from_secs(30),
            rtp_timeout: Duration::from_secs(30),
            first_prompt_delay: Duration::from_millis(300),
            rtcp_interval: crate::media::rtcp::DEFAULT_INTERVAL,
            media_threads: 1,
            media_rt_priority: None,
            media_cpus: 0,
            max_ivr: Duration::from_secs(15 * 60),
            advertise_ip: None,
            pretend_time: None,
            ring: Duration::ZERO,
            watch_menus: true,
            server_header: crate::sip::USER_AGENT.to_owned(),
            http: None,
            guard: crate::guard::GuardConfig::default(),
            tcp: crate::transport::tcp_policy::TcpLimits::default(),
            service_level: crate::call::DEFAULT_SERVICE_LEVEL,
            admission: crate::call::AdmissionConfig::default(),
            log_level: None,
            settings: None,
        }
    }
}

/// Parses an RTP port range written `LO-HI` (both inclusive, LO < HI, at least two ports).
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a port range: write LO-HI, e.g. 20000-30000"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|_| format!("`{lo}` is not a port number"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|_| format!("`{hi}` is not a port number"))?;
    if lo == 0 || hi <= lo {
        return Err(format!("port range {lo}-{hi} must have 0 < LO < HI"));
    }
    Ok((lo, hi))
}

/// Parses a CPU list (`1`, `0,2`, `0-3`, `0-1,6`) into a bit set (bit k = CPU k), for
/// `--media-cpus`; CPUs 0–63.
pub fn parse_cpu_list(text: &str) -> Result<u64, String> {
    let cpu = |t: &str| -> Result<u32, String> {
        match t.trim().parse::<u32>() {
            Ok(k) if k < 64 => Ok(k),
            _ => Err(format!("`{t}` is not a CPU number from 0 to 63")),
        }
    };
    let mut set = 0u64;
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (cpu(lo)?, cpu(hi)?),
            None => (cpu(part)?, cpu(part)?),
        };
        if hi < lo {
            return Err(format!("CPU range `{part}` must be LO-HI with LO ≤ HI"));
        }
        set |= (lo..=hi).fold(0u64, |s, k| s | 1 << k);
    }
    Ok(set)
}

// ── reading ivr-menus/: the I/O edge of the menu compiler (`ivr::compile` is pure) ──

/// Reads every `*.toml` in `dir` (sorted by name), compiles and validates them with `prompts` as the
/// prompt-file check. Errors are every diagnostic found (warnings included, so `check` can print them
/// together); on success, warnings are dropped — use [`load_menus_with_warnings`] to keep them.
///
/// The directory read is the I/O edge of the menu compiler; everything
/// after it is `compile` on in-memory text.
pub fn load_menus(dir: &Path, prompts: &dyn PromptCheck) -> Result<Arc<MenuSet>, Vec<Diagnostic>> {
    load_menus_with_warnings(dir, prompts).map(|(set, _)| set)
}

/// Like [`load_menus`], also returning the warnings (e.g. language voice fallbacks) on success.
pub fn load_menus_with_warnings(
    dir: &Path,
    prompts: &dyn PromptCheck,
) -> Result<(Arc<MenuSet>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let io_error = |path: &Path, e: std::io::Error| Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
        hint: None,
        severity: Severity::Error,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| vec![io_error(dir, e)])?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(vec![Diagnostic {
            message: "no *.toml menu files in directory".into(),
            ..io_error(dir, std::io::Error::other("empty"))
        }]);
    }
    let mut sources = Vec::with_capacity(paths.len());
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => sources.push((p, text)),
            Err(e) => errors.push(io_error(&p, e)),
        }
    }
    match compile(&sources, prompts) {
        Ok(ok) if errors.is_empty() => Ok(ok),
        Ok((_, warnings)) => {
            errors.extend(warnings);
            Err(errors)
        }
        Err(diags) => {
            errors.extend(diags);
            Err(errors)
        }
    }
}

/// The digest realm of the menus in `dir`: `[routing] realm` from whichever `*.toml` holds it, else
/// `helpline`. Reads only that key (as plain TOML), so `helpline passwd` works on a configuration that
/// does not pass `check` yet; a file that is not valid TOML is an error, since it may hold the realm.
pub fn read_realm(dir: &Path) -> Result<String, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no *.toml menu files", dir.display()));
    }
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {}", p.display(), e.message()))?;
        let realm = table
            .get("routing")
            .and_then(|r| r.as_table())
            .and_then(|r| r.get("realm"));
        match realm {
            Some(toml::Value::String(r)) => return Ok(r.clone()),
            Some(_) => return Err(format!("{}: [routing] realm is not a string", p.display())),
            None => {}
        }
    }
    Ok(crate::ivr::DEFAULT_REALM.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("20000-30000"), Ok((20000, 30000)));
        assert!(parse_port_range("30000-20000").is_err());
        assert!(parse_port_range("abc").is_err());
        assert!(parse_port_range("0-10").is_err());
    }
}
