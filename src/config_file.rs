//! `helpline.toml`, the server's settings file: every key is one `serve` flag, the file's value is given
//! to that flag's own parser (so a key and its flag accept exactly the same text), and a flag on the
//! command line overrides the key. Found at `--server-config PATH`, else `./helpline.toml` when present.
//!
//! [`KEYS`] (written with the `settings_file!` macro below) is the whole mapping: one line per key names
//! its table, key, flag and whether a running server applies a change on SIGHUP ([`Reload::Live`]) or
//! needs a restart. Adding a key for a new flag is one line there (and one in README's table, which a
//! test compares). The file is read with the shared strict loader (`strict_toml`): unknown keys and bad
//! values are errors with `file:line:col`. It does not apply live settings; `server` does, from
//! [`Source::reload`] and [`changes`].
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, Parser};
use serde::Deserialize;
use toml::Spanned;

use crate::ivr::diag::line_col;
use crate::ivr::{Diagnostic, Severity};

/// The file read when `--server-config` is not given, if it exists in the working directory.
pub const DEFAULT_PATH: &str = "helpline.toml";

/// Whether a running server takes a changed key on SIGHUP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Applied on SIGHUP (to new calls, for call timings).
    Live,
    /// Read at start only; a change is logged as needing a restart.
    Restart,
}

/// How a key's value becomes arguments of its flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `--flag VALUE`; an array gives `--flag A,B` (the flag splits on commas).
    Value,
    /// A flag without a value, given when the boolean key has this value (`watch = false` → `--no-watch`).
    Switch(bool),
}

/// One key of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The table, e.g. `defences`.
    pub table: &'static str,
    /// The key in it, e.g. `limit_rate`.
    pub key: &'static str,
    /// The clap id of its `serve` flag (the flag is `--` and this with `-` for `_`).
    pub flag: &'static str,
    /// Live or restart.
    pub reload: Reload,
    /// Value or switch.
    pub form: Form,
}

impl Key {
    /// `table.key`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.key)
    }

    /// `--flag-name`.
    pub fn long(&self) -> String {
        format!("--{}", self.flag.replace('_', "-"))
    }
}

macro_rules! form {
    () => {
        Form::Value
    };
    (switch_when($b:literal)) => {
        Form::Switch($b)
    };
}

/// Declares the file's tables and keys: the serde model the strict loader checks, and [`KEYS`].
macro_rules! settings_file {
    ($( [$table:ident] $Table:ident { $( $key:ident = $flag:literal, $reload:ident $(, $form:ident($b:literal))?; )* } )*) => {
        /// The file: every table optional, every key optional, values kept raw (with their positions)
        /// for their flag's parser.
        #[derive(Debug, Default, Deserialize)]
        pub struct FileModel {
            $( #[allow(missing_docs)] pub $table: Option<$Table>, )*
        }
        $(
            #[derive(Debug, Default, Deserialize)]
            #[allow(missing_docs)]
            #[doc = concat!("`[", stringify!($table), "]`.")]
            pub struct $Table { $( pub $key: Option<Spanned<toml::Value>>, )* }
        )*
        /// Every key of `helpline.toml`, in file order.
        pub const KEYS: &[Key] = &[
            $( $( Key {
                table: stringify!($table),
                key: stringify!($key),
                flag: $flag,
                reload: Reload::$reload,
                form: form!($($form($b))?),
            }, )* )*
        ];
        impl FileModel {
            /// The keys the file sets, with their values.
            fn set(&self) -> Vec<(&'static Key, &Spanned<toml::Value>)> {
                let mut out = Vec::new();
                $( if let Some(t) = &self.$table {
                    $( if let Some(v) = &t.$key {
                        out.push((key(stringify!($table), stringify!($key)), v));
                    } )*
                } )*
                out
            }
        }
    };
}

// One line per key: `KEY = "clap id of the serve flag", Live|Restart[, switch_when(BOOL)];`
settings_file! {
    [menus] Menus {
        dir = "config", Restart;
        prompts = "prompts", Restart;
        watch = "no_watch", Restart, switch_when(false);
    }
    [sip] Sip {
        listen = "listen", Restart;
        advertise_ip = "advertise_ip", Restart;
        server_header = "server_header", Restart;
        t1_ms = "t1_ms", Restart;
        t2_ms = "t2_ms", Restart;
        t4_ms = "t4_ms", Restart;
    }
    [rtp] Rtp {
        ports = "rtp_ports", Restart;
        timeout_secs = "rtp_timeout_secs", Live;
        rtcp_interval_ms = "rtcp_interval_ms", Restart;
        media_threads = "media_threads", Restart;
        media_rt_priority = "media_rt_priority", Restart;
        media_cpus = "media_cpus", Restart;
    }
    [calls] Calls {
        ring_ms = "ring_ms", Live;
        first_prompt_delay_ms = "first_prompt_delay_ms", Live;
        max_ivr_secs = "max_ivr_secs", Live;
        drain_secs = "drain_secs", Live;
        max_calls = "max_calls", Restart;
        max_cps = "max_cps", Restart;
        overload_answer = "overload_answer", Restart;
        service_level_secs = "service_level_secs", Restart;
    }
    [records] Records {
        cdr = "cdr", Restart;
        queue_log = "queue_log", Restart;
        trace_dir = "trace_dir", Restart;
        spool = "cdr_spool", Restart;
        fsync = "cdr_fsync", Restart;
    }
    [http] Http {
        listen = "http", Restart;
    }
    [log] Log {
        level = "log_level", Live;
        format = "log_format", Restart;
    }
    [defences] Defences {
        limit_rate = "limit_rate", Live;
        ban_secs = "ban_secs", Live;
        banned_answer = "banned_answer", Live;
        allow = "allow", Live;
        max_calls_per_source = "max_calls_per_source", Live;
        drop_scanners = "drop_scanners", Restart, switch_when(true);
        tcp_max_connections = "tcp_max_connections", Restart;
        tcp_max_per_source = "tcp_max_per_source", Restart;
        tcp_idle_secs = "tcp_idle_secs", Restart;
        tcp_first_message_secs = "tcp_first_message_secs", Restart;
        max_message_bytes = "max_message_bytes", Restart;
    }
}

fn key(table: &str, name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.table == table && k.key == name)
        .expect("the macro lists every key it declares in KEYS")
}

/// What the file sets: `table.key` → the key's argument text (arrays joined with commas; a switch
/// `true`/`false`).
pub type Values = BTreeMap<String, String>;

/// A read, checked file.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The keys set, as argument text.
    pub values: Values,
    /// The arguments to put before the command line's (keys whose flag the command line gives are
    /// left out).
    pub args: Vec<OsString>,
}

fn diag(path: &Path, src: &str, span: std::ops::Range<usize>, message: String) -> Diagnostic {
    let (line, col) = line_col(src, span.start);
    Diagnostic {
        file: path.to_path_buf(),
        line,
        col,
        message,
        hint: None,
        severity: Severity::Error,
    }
}

/// The argument text of a value, or why the key cannot take it.
fn arg_text(k: &Key, v: &toml::Value) -> Result<String, String> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        other => Err(format!(
            "`{}` wants a string or a number, not {}",
            k.name(),
            other.type_str()
        )),
    };
    match (k.form, v) {
        (Form::Switch(_), toml::Value::Boolean(b)) => Ok(b.to_string()),
        (Form::Switch(_), other) => Err(format!(
            "`{}` wants true or false, not {}",
            k.name(),
            other.type_str()
        )),
        (Form::Value, toml::Value::Array(items)) => items
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(",")),
        (Form::Value, v) => scalar(v),
    }
}

/// The arguments that give key `k` the argument text `text`.
fn key_args(k: &Key, text: &str) -> Vec<OsString> {
    match k.form {
        Form::Switch(when) if text == when.to_string() => vec![k.long().into()],
        Form::Switch(_) => Vec::new(),
        // An empty list sets nothing (the flag's default is the empty list).
        Form::Value if text.is_empty() => Vec::new(),
        Form::Value => vec![k.long().into(), text.into()],
    }
}

/// Why `serve`'s parser refuses `args`, in one line; `None` when it accepts them.
fn flag_refuses(args: &[OsString]) -> Option<String> {
    let argv = [OsString::from("helpline"), OsString::from("serve")]
        .into_iter()
        .chain(args.iter().cloned());
    let err = crate::cli::Cli::try_parse_from(argv).err()?;
    let text = err.render().to_string();
    let line = text.lines().next().unwrap_or("invalid value");
    Some(line.strip_prefix("error: ").unwrap_or(line).to_owned())
}

/// Reads and checks the file at `path`; `explicit` are the clap ids of flags the command line gives.
pub fn load(path: &Path, explicit: &BTreeSet<String>) -> Result<Loaded, Vec<Diagnostic>> {
    match load_keeping(path, explicit) {
        (loaded, errors) if errors.is_empty() => Ok(loaded),
        (_, errors) => Err(errors),
    }
}

/// Like [`load`], also returning the keys that are right when others are wrong (so `check` still
/// checks the menus the file names).
pub fn load_keeping(path: &Path, explicit: &BTreeSet<String>) -> (Loaded, Vec<Diagnostic>) {
    let src = match std::fs::read_to_string(path) {
        Ok(src) => src,
        Err(e) => {
            let message = format!("cannot read the server config: {e}");
            return (Loaded::default(), vec![diag(path, "", 0..0, message)]);
        }
    };
    let (model, problems) = crate::strict_toml::parse_keeping::<FileModel>(&src);
    let mut errors: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| Diagnostic {
            hint: p.hint(),
            ..diag(path, &src, p.span.clone(), p.message)
        })
        .collect();
    let model = model.unwrap_or_default();
    let mut loaded = Loaded::default();
    for (k, v) in model.set() {
        let text = match arg_text(k, v.get_ref()) {
            Ok(t) => t,
            Err(m) => {
                errors.push(diag(path, &src, v.span(), m));
                continue;
            }
        };
        let args = key_args(k, &text);
        if let Some(why) = flag_refuses(&args) {
            errors.push(diag(path, &src, v.span(), format!("`{}`: {why}", k.name())));
            continue;
        }
        if !explicit.contains(k.flag) {
            loaded.args.extend(args);
        }
        loaded.values.insert(k.name(), text);
    }
    errors.sort_by_key(|d| (d.line, d.col));
    (loaded, errors)
}

/// The file to read: `--server-config`, else `./helpline.toml` if it exists, else none.
pub fn locate(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.is_file()),
    }
}

/// The clap ids of the flags `args` (a whole command line, program name first) gives for
/// subcommand `sub`.
pub fn explicit_flags(args: &[OsString], sub: &str) -> BTreeSet<String> {
    let Ok(matches) = crate::cli::Cli::command().try_get_matches_from(args) else {
        return BTreeSet::new();
    };
    let Some(m) = matches.subcommand_matches(sub) else {
        return BTreeSet::new();
    };
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// `args` (program name, `serve`, its flags) with the file's arguments put before the command line's.
pub fn merged_args(args: &[OsString], file_args: &[OsString]) -> Vec<OsString> {
    let split = args.len().min(2);
    let mut out: Vec<OsString> = args[..split].to_vec();
    out.extend(file_args.iter().cloned());
    out.extend(args[split..].iter().cloned());
    out
}

/// Where the running server's settings come from, to read them again on SIGHUP.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// The command line as given (program name first).
    pub args: Vec<OsString>,
    /// The clap ids of the flags it gives (they override the file, also after a reload).
    pub explicit: BTreeSet<String>,
    /// The file's values the server started with.
    pub values: Values,
}

impl Source {
    /// Reads the file again: the settings it and the command line give now, and the file's values.
    pub fn reload(&self) -> Result<(crate::config::ServerConfig, Values), Vec<Diagnostic>> {
        let loaded = load(&self.path, &self.explicit)?;
        let argv = merged_args(&self.args, &loaded.args);
        let cli = crate::cli::Cli::try_parse_from(argv).map_err(|e| {
            vec![diag(
                &self.path,
                "",
                0..0,
                e.render().to_string().trim().to_owned(),
            )]
        })?;
        let cfg = crate::cli::server_config(cli.command).ok_or_else(|| {
            vec![diag(
                &self.path,
                "",
                0..0,
                "not a serve command line".into(),
            )]
        })?;
        Ok((cfg, loaded.values))
    }
}

/// What became of one changed key on a reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The running server uses the new value.
    Applied,
    /// The running server keeps the old value until it is restarted.
    NeedsRestart,
    /// The command line gives this flag, which wins over the file.
    OverriddenByFlag,
}

/// One key whose value differs between two reads of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: &'static Key,
    /// Its value before (`None`: not set).
    pub old: Option<String>,
    /// Its value now.
    pub new: Option<String>,
    /// What the server does about it.
    pub outcome: Outcome,
}

/// The keys whose values differ between `old` and `new`, in file order.
pub fn changes(old: &Values, new: &Values, explicit: &BTreeSet<String>) -> Vec<Change> {
    KEYS.iter()
        .filter_map(|k| {
            let name = k.name();
            let (o, n) = (old.get(&name), new.get(&name));
            (o != n).then(|| Change {
                key: k,
                old: o.cloned(),
                new: n.cloned(),
                outcome: if explicit.contains(k.flag) {
                    Outcome::OverriddenByFlag
                } else if k.reload == Reload::Live {
                    Outcome::Applied
                } else {
                    Outcome::NeedsRestart
                },
            })
        })
        .collect()
}

/// The values the server runs with after a reload: live and overridden keys take `new`, restart-only
/// keys keep `old` (so the next reload still reports them until the restart).
pub fn running_values(old: &Values, new: &Values) -> Values {
    let mut out = Values::new();
    for k in KEYS {
        let name = k.name();
        let v = if k.reload == Reload::Live { new } else { old }.get(&name);
        if let Some(v) = v {
            out.insert(name, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_file(text: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("helpline-cfg-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    /// The settings `serve --server-config FILE FLAGS…` runs with.
    fn effective(file: &str, flags: &[&str]) -> ServerConfig {
        let path = temp_file(file);
        let mut args: Vec<OsString> = ["helpline", "serve", "--server-config"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(path.clone().into());
        args.extend(flags.iter().map(OsString::from));
        let explicit = explicit_flags(&args, "serve");
        let loaded = load(&path, &explicit).unwrap_or_else(|d| panic!("{file}: {d:?}"));
        let _ = std::fs::remove_file(&path);
        let cli =
            crate::cli::Cli::try_parse_from(merged_args(&args, &loaded.args)).expect("parses");
        crate::cli::server_config(cli.command).expect("serve")
    }

    type Show = fn(&ServerConfig) -> String;

    /// Per key: a value in the file, what the server then runs with, a flag value, what it runs with
    /// when the flag is given too.
    const ROWS: &[(&str, &str, &str, &str, &str, Show)] = &[
        ("menus.dir", "\"m\"", "m", "f", "f", |c| {
            c.menus_dir.display().to_string()
        }),
        ("menus.prompts", "\"p\"", "p", "f", "f", |c| {
            c.prompts_dir.display().to_string()
        }),
        ("menus.watch", "false", "false", "", "false", |c| {
            c.watch_menus.to_string()
        }),
        (
            "sip.listen",
            "\"127.0.0.1:0\"",
            "127.0.0.1:0",
            "127.0.0.2:7",
            "127.0.0.2:7",
            |c| c.listen.to_string(),
        ),
        (
            "sip.advertise_ip",
            "\"10.0.0.1\"",
            "Some(10.0.0.1)",
            "10.0.0.2",
            "Some(10.0.0.2)",
            |c| format!("{:?}", c.advertise_ip),
        ),
        (
            "sip.server_header",
            "\"Acme\"",
            "Acme",
            "Other",
            "Other",
            |c| c.server_header.clone(),
        ),
        ("sip.t1_ms", "200", "200ms", "300", "300ms", |c| {
            format!("{:?}", c.timers.t1)
        }),
        ("sip.t2_ms", "2000", "2s", "3000", "3s", |c| {
            format!("{:?}", c.timers.t2)
        }),
        ("sip.t4_ms", "1000", "1s", "2000", "2s", |c| {
            format!("{:?}", c.timers.t4)
        }),
        (
            "rtp.ports",
            "\"40000-40100\"",
            "(40000, 40100)",
            "50000-50100",
            "(50000, 50100)",
            |c| format!("{:?}", c.rtp_ports),
        ),
        ("rtp.timeout_secs", "7", "7s", "8", "8s", |c| {
            format!("{:?}", c.rtp_timeout)
        }),
        ("rtp.rtcp_interval_ms", "1000", "1s", "2000", "2s", |c| {
            format!("{:?}", c.rtcp_interval)
        }),
        ("rtp.media_threads", "2", "2", "3", "3", |c| {
            format!("{:?}", c.media_threads)
        }),
        (
            "rtp.media_rt_priority",
            "10",
            "Some(10)",
            "20",
            "Some(20)",
            |c| format!("{:?}", c.media_rt_priority),
        ),
        ("rtp.media_cpus", "\"1\"", "2", "0-1", "3", |c| {
            format!("{:?}", c.media_cpus)
        }),
        ("calls.ring_ms", "250", "250ms", "500", "500ms", |c| {
            format!("{:?}", c.ring)
        }),
        (
            "calls.first_prompt_delay_ms",
            "100",
            "100ms",
            "200",
            "200ms",
            |c| format!("{:?}", c.first_prompt_delay),
        ),
        ("calls.max_ivr_secs", "60", "60s", "120", "120s", |c| {
            format!("{:?}", c.max_ivr)
        }),
        ("calls.drain_secs", "5", "5s", "6", "6s", |c| {
            format!("{:?}", c.drain)
        }),
        ("calls.max_calls", "7", "7", "8", "8", |c| {
            c.admission.max_calls.to_string()
        }),
        ("calls.max_cps", "70", "70", "80", "80", |c| {
            c.admission.max_cps.to_string()
        }),
        (
            "calls.overload_answer",
            "\"486\"",
            "Busy",
            "503",
            "ServiceUnavailable",
            |c| format!("{:?}", c.admission.answer),
        ),
        ("calls.service_level_secs", "30", "30s", "40", "40s", |c| {
            format!("{:?}", c.service_level)
        }),
        (
            "records.cdr",
            "\"c.jsonl\"",
            "Some(\"c.jsonl\")",
            "d.jsonl",
            "Some(\"d.jsonl\")",
            |c| format!("{:?}", c.cdr),
        ),
        (
            "records.queue_log",
            "\"q.jsonl\"",
            "Some(\"q.jsonl\")",
            "r.jsonl",
            "Some(\"r.jsonl\")",
            |c| format!("{:?}", c.queue_log),
        ),
        (
            "records.trace_dir",
            "\"t\"",
            "Some(\"t\")",
            "u",
            "Some(\"u\")",
            |c| format!("{:?}", c.trace_dir),
        ),
        ("records.spool", "100", "100", "200", "200", |c| {
            c.cdr_spool.to_string()
        }),
        ("records.fsync", "\"line\"", "Line", "never", "Never", |c| {
            format!("{:?}", c.cdr_fsync)
        }),
        (
            "http.listen",
            "\"127.0.0.1:9105\"",
            "Some(127.0.0.1:9105)",
            "127.0.0.1:9106",
            "Some(127.0.0.1:9106)",
            |c| format!("{:?}", c.http),
        ),
        (
            "log.level",
            "\"debug\"",
            "Some(\"debug\")",
            "warn",
            "Some(\"warn\")",
            |c| format!("{:?}", c.log_level),
        ),
        ("log.format", "\"json\"", "Json", "text", "Text", |c| {
            format!("{:?}", c.log_format)
        }),
        ("defences.limit_rate", "5", "5/10", "7", "7/14", |c| {
            format!("{}/{}", c.guard.rate, c.guard.burst)
        }),
        ("defences.ban_secs", "9", "9s", "10", "10s", |c| {
            format!("{:?}", c.guard.ban)
        }),
        (
            "defences.banned_answer",
            "\"503\"",
            "Unavailable",
            "silence",
            "Silence",
            |c| format!("{:?}", c.guard.banned_answer),
        ),
        (
            "defences.allow",
            "[\"10.0.0.0/8\", \"127.0.0.1\"]",
            "10.0.0.0/8 127.0.0.1/32",
            "192.168.0.0/16",
            "192.168.0.0/16",
            |c| {
                c.guard
                    .allow
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ),
        ("defences.max_calls_per_source", "3", "3", "4", "4", |c| {
            c.guard.max_calls_per_source.to_string()
        }),
        ("defences.drop_scanners", "true", "true", "", "true", |c| {
            c.guard.drop_scanners.to_string()
        }),
        (
            "defences.tcp_max_connections",
            "10",
            "10",
            "11",
            "11",
            |c| c.tcp.max_connections.to_string(),
        ),
        ("defences.tcp_max_per_source", "5", "5", "6", "6", |c| {
            c.tcp.max_per_source.to_string()
        }),
        ("defences.tcp_idle_secs", "20", "20s", "21", "21s", |c| {
            format!("{:?}", c.tcp.idle)
        }),
        (
            "defences.tcp_first_message_secs",
            "3",
            "3s",
            "4",
            "4s",
            |c| format!("{:?}", c.tcp.first_message),
        ),
        (
            "defences.max_message_bytes",
            "10000",
            "10000",
            "20000",
            "20000",
            |c| c.tcp.max_message_bytes.to_string(),
        ),
    ];

    #[test]
    fn every_key_sets_its_setting_and_its_flag_overrides_it() {
        let names: Vec<String> = KEYS.iter().map(Key::name).collect();
        let rows: Vec<&str> = ROWS.iter().map(|r| r.0).collect();
        assert_eq!(names, rows, "one row per key, in KEYS order");
        let default = ServerConfig::default();
        for &(name, value, from_file, flag, from_flag, show) in ROWS {
            let k = KEYS
                .iter()
                .find(|k| k.name() == name)
                .expect("row names a key");
            let file = format!("[{}]\n{} = {value}\n", k.table, k.key);
            let cfg = effective(&file, &[]);
            assert_eq!(show(&cfg), from_file, "{name} from the file");
            assert_ne!(
                show(&default),
                from_file,
                "{name}: the test value is not the default"
            );
            let flags: Vec<String> = match k.form {
                Form::Switch(_) => vec![k.long()],
                Form::Value => vec![k.long(), flag.to_owned()],
            };
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let cfg = effective(&file, &flags);
            assert_eq!(
                show(&cfg),
                from_flag,
                "{name}: {} overrides the file",
                k.long()
            );
        }
    }

    #[test]
    fn a_switch_key_gives_its_flag_only_for_its_value() {
        assert!(effective("[menus]\nwatch = true\n", &[]).watch_menus);
        assert!(!effective("[menus]\nwatch = false\n", &[]).watch_menus);
    }

    fn example() -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helpline.toml");
        let text = std::fs::read_to_string(&path).expect("deploy/helpline.toml");
        (path, text)
    }

    #[test]
    fn the_example_sets_every_key_with_its_default_except_the_examples() {
        let (path, text) = example();
        let loaded = load(&path, &BTreeSet::new()).expect("the example is valid");
        // Keys left commented out: no default to show, or only an example.
        let unset = [
            "sip.advertise_ip",
            "rtp.media_rt_priority",
            "rtp.media_cpus",
            "records.queue_log",
            "records.trace_dir",
        ];
        for k in KEYS {
            let name = k.name();
            let commented = format!("# {} = ", k.key);
            if unset.contains(&name.as_str()) {
                assert!(text.contains(&commented), "{name} shown commented out");
            } else {
                assert!(
                    loaded.values.contains_key(&name),
                    "{name} missing from the example"
                );
            }
        }
    }

    #[test]
    fn an_unknown_key_in_every_table_of_the_example_is_reported_at_its_line_and_column() {
        let (_, text) = example();
        let lines: Vec<&str> = text.lines().collect();
        // Before the first table (the root) and after every table header.
        let mut at: Vec<usize> = vec![0];
        at.extend(
            (0..lines.len())
                .filter(|&i| lines[i].starts_with('['))
                .map(|i| i + 1),
        );
        assert_eq!(at.len(), 9, "root and eight tables");
        for i in at {
            let mut mutated = lines.clone();
            mutated.insert(i, "bogus_key = 1");
            let path = temp_file(&(mutated.join("\n") + "\n"));
            let errors = load(&path, &BTreeSet::new()).expect_err("bogus key accepted");
            let _ = std::fs::remove_file(&path);
            assert_eq!(errors.len(), 1, "{errors:?}");
            let e = &errors[0];
            assert_eq!((e.line, e.col), (i + 1, 1), "{e}");
            assert!(
                e.message.starts_with("unknown field `bogus_key`, expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_values_are_reported_at_the_value_with_the_flags_own_words() {
        let path = temp_file(
            "[sip]\nlisten = \"nowhere\"\nt1_ms = true\n[defences]\nbanned_answer = \"loud\"\n",
        );
        let errors = load(&path, &BTreeSet::new()).expect_err("bad values accepted");
        let _ = std::fs::remove_file(&path);
        let got: Vec<String> = errors
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
            .collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("2:10 `sip.listen`: invalid value 'nowhere' for '--listen"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("3:9 `sip.t1_ms` wants a string or a number, not boolean"),
            "{got:#?}"
        );
        assert!(
            got[2].starts_with("5:17 `defences.banned_answer`: invalid value 'loud'"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_reload_applies_live_keys_and_keeps_restart_keys_until_a_restart() {
        let v = |pairs: &[(&str, &str)]| -> Values {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let old = v(&[
            ("defences.limit_rate", "5"),
            ("sip.listen", "127.0.0.1:0"),
            ("calls.ring_ms", "0"),
        ]);
        let new = v(&[
            ("defences.limit_rate", "7"),
            ("sip.listen", "127.0.0.1:5"),
            ("calls.ring_ms", "9"),
        ]);
        let explicit: BTreeSet<String> = ["ring_ms".to_owned()].into();
        let got: Vec<(String, Outcome)> = changes(&old, &new, &explicit)
            .into_iter()
            .map(|c| (c.key.name(), c.outcome))
            .collect();
        assert_eq!(
            got,
            [
                ("sip.listen".to_owned(), Outcome::NeedsRestart),
                ("calls.ring_ms".to_owned(), Outcome::OverriddenByFlag),
                ("defences.limit_rate".to_owned(), Outcome::Applied),
            ]
        );
        let running = running_values(&old, &new);
        assert_eq!(running["defences.limit_rate"], "7");
        assert_eq!(
            running["sip.listen"], "127.0.0.1:0",
            "still the old one until a restart"
        );
        let again: Vec<String> = changes(&running, &new, &explicit)
            .iter()
            .map(|c| c.key.name())
            .collect();
        assert_eq!(
            again,
            ["sip.listen"],
            "the restart key is reported again, nothing else"
        );
    }

    #[test]
    fn readme_documents_every_key_with_its_flag_and_reload() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .expect("README.md");
        for k in KEYS {
            let live = if k.reload == Reload::Live {
                "live"
            } else {
                "restart"
            };
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", k.name())))
                .unwrap_or_else(|| panic!("README has no row for `{}`", k.name()));
            assert!(row.contains(&format!("`{}`", k.long())), "{row}: flag");
            assert!(
                row.trim_end().ends_with(&format!("| {live} |")),
                "{row}: {live}"
            );
        }
    }
}
