//! SIGHUP for the server config file (`helpline.toml`): read it again, log every changed key as applied,
//! needing a restart, or overridden by a command-line flag, and hand the live settings to the run loop.
//! A file with errors changes nothing. It does not decide which keys are live (`config_file::KEYS`
//! does) and does not reload the menus (`reload` does, on the same signal).
use std::time::Duration;

use tokio::sync::mpsc;

use crate::call::LiveSettings;
use crate::config::ServerConfig;
use crate::config_file::{changes, running_values, Outcome, Source};

/// What the run loop applies: the calls' live settings and the drain time.
pub type LiveUpdate = (LiveSettings, Duration);

/// The live part of `cfg`.
pub fn live(cfg: &ServerConfig) -> LiveUpdate {
    (
        LiveSettings {
            rtp_timeout: cfg.rtp_timeout,
            first_prompt_delay: cfg.first_prompt_delay,
            max_ivr: cfg.max_ivr,
            ring: cfg.ring,
            guard: cfg.guard.clone(),
        },
        cfg.drain,
    )
}

/// Updates the channel to the core holds: one per SIGHUP, and the reloader waits for room.
pub const UPDATE_QUEUE: usize = 4;

/// Runs until aborted.
/// `hup` is registered by the caller before the server says it listens (see `server::run`).
pub async fn run(
    source: Source,
    tx: mpsc::Sender<LiveUpdate>,
    hup: Option<tokio::signal::unix::Signal>,
) {
    let Some(mut hup) = hup else {
        tracing::warn!("cannot watch SIGHUP: the server config is not reloaded");
        return;
    };
    let file = source.path.display().to_string();
    let mut values = source.values.clone();
    while hup.recv().await.is_some() {
        let (cfg, new_values) = match source.reload() {
            Ok(read) => read,
            Err(diagnostics) => {
                for d in &diagnostics {
                    tracing::error!("{d}");
                }
                tracing::error!(%file, errors = diagnostics.len(), "server config reload refused: the running settings stay");
                continue;
            }
        };
        let changed = changes(&values, &new_values, &source.explicit);
        if changed.is_empty() {
            tracing::info!(%file, "server config reloaded: no setting changed");
        }
        let none = || "(unset)".to_owned();
        for c in &changed {
            let (key, old, new) = (
                c.key.name(),
                c.old.clone().unwrap_or_else(none),
                c.new.clone().unwrap_or_else(none),
            );
            match c.outcome {
                Outcome::Applied => {
                    tracing::info!(%key, %old, %new, "server config: setting applied")
                }
                Outcome::NeedsRestart => {
                    tracing::warn!(%key, %old, %new, "server config: setting needs a restart to take effect")
                }
                Outcome::OverriddenByFlag => {
                    tracing::warn!(%key, flag = %c.key.long(), "server config: setting changed, but the command line's flag overrides it")
                }
            }
        }
        let applied = |name: &str| {
            changed
                .iter()
                .any(|c| c.outcome == Outcome::Applied && c.key.name() == name)
        };
        if applied("log.level") {
            let level = cfg
                .log_level
                .clone()
                .or_else(|| std::env::var("RUST_LOG").ok())
                .unwrap_or_else(|| "info".to_owned());
            if let Err(e) = crate::telemetry::set_level(&level) {
                tracing::error!("log level not changed: {e}");
            }
        }
        if changed.iter().any(|c| c.outcome == Outcome::Applied)
            && tx.send(live(&cfg)).await.is_err()
        {
            return;
        }
        values = running_values(&values, &new_values);
    }
}
