//! Hot reload of the menus on SIGHUP and when a file in the menu directory changes: load, validate, swap
//! atomically; an invalid set leaves the live one in place. Calls keep the set they started with.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::ivr::MenuSet;
use crate::prompts::PromptStore;
use crate::telemetry::metrics::ReloadCounters;

/// What identifies the directory's content cheaply: every file's name, size and modification time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((e.path(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Loads and validates the menus; on success they become live.
pub fn reload_now(
    menus_dir: &Path,
    prompts: &PromptStore,
    live: &watch::Sender<Arc<MenuSet>>,
) -> bool {
    reload_counted(menus_dir, prompts, live, None)
}

/// [`reload_now`], counting the outcome.
pub fn reload_counted(
    menus_dir: &Path,
    prompts: &PromptStore,
    live: &watch::Sender<Arc<MenuSet>>,
    counters: Option<&ReloadCounters>,
) -> bool {
    let ok = reload_inner(menus_dir, prompts, live);
    if let Some(c) = counters {
        if ok {
            c.ok.increment(1);
        } else {
            c.refused.increment(1);
        }
    }
    ok
}

fn reload_inner(
    menus_dir: &Path,
    prompts: &PromptStore,
    live: &watch::Sender<Arc<MenuSet>>,
) -> bool {
    match crate::config::load_menus(menus_dir, prompts) {
        Ok(set) => {
            let old = live.borrow().version().to_owned();
            tracing::info!(version = %set.version(), previous = %old, "menus reloaded: new calls use this version");
            live.send_replace(set);
            true
        }
        Err(diagnostics) => {
            let live_version = live.borrow().version().to_owned();
            for d in &diagnostics {
                tracing::error!("{d}");
            }
            tracing::error!(
                errors = diagnostics.len(),
                version = %live_version,
                "menu reload refused: the live version stays"
            );
            false
        }
    }
}

/// Runs until aborted. Directory changes are found by polling once a second: enough for an admin's edit,
/// and it works where inotify does not (network and container mounts).
pub async fn run(
    menus_dir: PathBuf,
    _prompts_dir: PathBuf,
    prompts: PromptStore,
    live: watch::Sender<Arc<MenuSet>>,
    watch_dir: bool,
    counters: Option<ReloadCounters>,
    // Registered by the caller before the server says it listens (see `server::run`).
    mut hup: Option<tokio::signal::unix::Signal>,
) {
    let mut seen = fingerprint(&menus_dir);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let by_signal = tokio::select! {
            _ = async {
                match hup.as_mut() {
                    Some(s) => { s.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => true,
            _ = tick.tick(), if watch_dir => false,
        };
        let now = fingerprint(&menus_dir);
        if by_signal {
            tracing::info!("SIGHUP: reloading menus");
        } else if now == seen {
            continue;
        } else {
            tracing::info!(dir = %menus_dir.display(), "menu directory changed: reloading");
        }
        seen = now;
        reload_counted(&menus_dir, &prompts, &live, counters.as_ref());
    }
}
