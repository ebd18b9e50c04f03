//! How log lines look: `--log-format text` (tracing's human format, colours only on a terminal) or
//! `json` (one object per line: `time`, `level`, `call_id`, `message`, `fields`, for a collector).
//! Lines go to stderr; a thread inside [`hold_lines`] (the signalling core over a datagram burst)
//! writes its lines in one `write(2)` when the burst ends instead of one per line. Both formats stamp
//! lines with the server's clock (`clock::wall`, which `--pretend-time` shifts), the clock
//! the CDRs use, so a log line and a CDR of the same moment carry the same time. It does not decide
//! what is logged.
//!
//! Why a JSON formatter of our own and not tracing-subscriber's `json` feature: that one nests the
//! message in `fields`, names the time `timestamp` and buries the Call-ID in a list of spans; a
//! collector wants `call_id` at the top so it can index every line of a call.
use std::cell::RefCell;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::marker::PhantomData;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// tracing's text lines: `TIME LEVEL call{call_id=…}: message key=value …`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format: text or json")),
        }
    }
}

/// Installs the global subscriber with text lines (the commands other than `serve`).
pub fn init() {
    init_with(LogFormat::Text);
}

/// Installs the global tracing subscriber: `RUST_LOG` overrides the default `info` level. Logs go
/// to stderr so that stdout stays free for command output (`check`, `simulate --json`); colours only
/// when stderr is a terminal (a log file gets no escape codes).
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Reloadable, so SIGHUP can apply `[log] level` (`super::set_level`).
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests that run the CLI in-process) is harmless: keep the first subscriber.
    let installed = match format {
        // Text lines print the span's fields themselves: no `CallIdLayer` visit per call span.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(|| HeldStderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_timer(ServerTime)
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(CallIdLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(|| HeldStderr)
                    .with_ansi(false)
                    .event_format(JsonLines),
            )
            .try_init(),
    };
    if installed.is_ok() {
        let _ = super::SET_FILTER.set(Box::new(move |f| {
            handle.reload(f).map_err(|e| e.to_string())
        }));
    }
}

/// A thread's held log lines: whether it is holding, and the bytes held.
struct Held {
    holding: bool,
    bytes: Vec<u8>,
}

thread_local! {
    static HELD: RefCell<Held> = const { RefCell::new(Held { holding: false, bytes: Vec::new() }) };
}

/// Held bytes written at once when reached, so a burst of lines never holds more than this (a burst
/// is at most 16 datagrams, a couple of lines each).
const HELD_BYTES: usize = 16 * 1024;

/// Holds this thread's log lines until the guard drops, then writes them to stderr in one write.
/// Why not `tracing-appender`'s non-blocking writer: its thread would be woken per line, which costs
/// the core a futex wake-up where this costs nothing; lines here wait at most one burst.
pub fn hold_lines() -> HeldLines {
    let _ = HELD.try_with(|h| h.borrow_mut().holding = true);
    HeldLines(PhantomData)
}

/// The guard of [`hold_lines`]; it writes the held lines when dropped (on unwinding too). It stays
/// on the thread that holds.
pub struct HeldLines(PhantomData<*const ()>);

impl Drop for HeldLines {
    fn drop(&mut self) {
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            h.holding = false;
            write_out(&mut h.bytes);
        });
    }
}

/// Writes and empties `bytes` (a failed write of a log line has nowhere to be reported).
fn write_out(bytes: &mut Vec<u8>) {
    if !bytes.is_empty() {
        let _ = std::io::stderr().write_all(bytes);
        bytes.clear();
    }
}

/// stderr, or this thread's held lines while it holds.
struct HeldStderr;

impl Write for HeldStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let held = HELD
            .try_with(|h| {
                let mut h = h.borrow_mut();
                if !h.holding {
                    return false;
                }
                h.bytes.extend_from_slice(buf);
                if h.bytes.len() >= HELD_BYTES {
                    write_out(&mut h.bytes);
                }
                true
            })
            .unwrap_or(false);
        if held {
            Ok(buf.len())
        } else {
            std::io::stderr().write(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The server's clock, as the CDR writes it (RFC 3339, milliseconds, UTC).
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTime;

impl ServerTime {
    fn now() -> String {
        crate::clock::wall().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

impl FormatTime for ServerTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str(&ServerTime::now())
    }
}

/// The `call_id` of a `call` span (`call::call_span`), kept in the span's extensions for [`JsonLines`].
struct CallIdField(String);

/// Records the `call_id` of every `call` span once, when it is created.
struct CallIdLayer;

impl<S> Layer<S> for CallIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "call" {
            return;
        }
        let mut visitor = Fields::default();
        attrs.record(&mut visitor);
        if let (Some(span), Some(serde_json::Value::String(call_id))) =
            (ctx.span(id), visitor.fields.remove("call_id"))
        {
            span.extensions_mut().insert(CallIdField(call_id));
        }
    }
}

/// An event's (or span's) fields as JSON values; `message` apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, already wrapped to print with Display.
        self.put(field, format!("{value:?}").into());
    }
}

/// `--log-format json`: `{"time","level","call_id","message","fields"}`, one per line. `call_id` is
/// the innermost `call` span's (else the event's own `call_id` field, else null).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let from_span = ctx.event_scope().and_then(|scope| {
            scope
                .filter_map(|span| span.extensions().get::<CallIdField>().map(|c| c.0.clone()))
                .next()
        });
        let own = visitor.fields.remove("call_id");
        let call_id = match (from_span, own) {
            (Some(id), _) => serde_json::Value::String(id),
            (None, Some(id)) => id,
            (None, None) => serde_json::Value::Null,
        };
        let line = serde_json::json!({
            "time": ServerTime::now(),
            "level": event.metadata().level().as_str(),
            "call_id": call_id,
            "message": visitor.message.unwrap_or_default(),
            "fields": visitor.fields,
        });
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_now() -> (bool, Vec<u8>) {
        HELD.with(|h| {
            let h = h.borrow();
            (h.holding, h.bytes.clone())
        })
    }

    #[test]
    fn lines_written_while_holding_wait_for_the_guard_and_stay_bounded() {
        let guard = hold_lines();
        HeldStderr.write_all(b"held line 1\n").expect("held");
        HeldStderr.write_all(b"held line 2\n").expect("held");
        assert_eq!(held_now(), (true, b"held line 1\nheld line 2\n".to_vec()));
        drop(guard);
        assert_eq!(held_now(), (false, Vec::new()));

        // A burst of lines never holds more than HELD_BYTES.
        let _guard = hold_lines();
        let mut line = [b' '; 1024];
        line[1023] = b'\n';
        for _ in 0..HELD_BYTES / line.len() + 1 {
            HeldStderr.write_all(&line).expect("held");
        }
        assert!(held_now().1.len() < HELD_BYTES);
    }
}
