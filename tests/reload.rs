//! Issue 4 hot reload against the real binary: a new menu set (on SIGHUP, or when a file in the menu
//! directory changes) changes the route of new calls only, 20 calls in progress finish on the version
//! they started with and none is dropped, and an invalid edit is refused with file:line:col while the old
//! version stays live. It does not test reload of prompts or what happens to the queues behind a route.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::{
    run_sipp, sipp_call_id_args, sipp_dtmf_scenario, temp_dir, Server, SippRun, SippStep,
};
use serde_json::Value;

/// The UK number at 19:00 on a Friday (Paris time): Europe is open, English only.
const UK: &str = "08000289999";
const FRIDAY_EVENING: &str = "2026-11-27T19:00:00+01:00";
/// The block in the shipped `menus.toml` that sends key 2 (after the order number) to refunds.
const REFUNDS: &str = "[menus.main.keys.2.then]\naction = \"route\"\ndepartment = \"refunds\"";
/// Debug log line of every answered INVITE (200 sent): a call in progress.
const ANSWERED: &str = "invite server transaction from=Proceeding to=Accepted";
const RELOADED: &str = "menus reloaded: new calls use this version";
const REFUSED: &str = "menu reload refused: the live version stays";

/// A copy of the shipped menus in a temp dir, so the test can edit it.
fn copy_menus(name: &str) -> PathBuf {
    let dir = temp_dir(name).join("menus");
    std::fs::create_dir_all(&dir).expect("menus dir");
    for entry in std::fs::read_dir(common::root().join("ivr-menus")).expect("ivr-menus") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

/// Replaces `from` (which must be present) by `to` in `file`.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read menus");
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write menus");
}

/// The `version=` field of a (colour-stripped) log line.
fn version_in(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("version="))
        .unwrap_or_else(|| panic!("no version= in {line:?}"))
        .to_string()
}

/// Runs `calls` SIPp calls to the UK number, all at once, that wait `wait_ms` after the answer and then
/// press 2 and the order number `12345678#`; Call-IDs start with `prefix`.
fn uk_refund_calls(server: SocketAddr, prefix: &str, calls: usize, wait_ms: u64) -> SippRun {
    let dir = temp_dir(prefix);
    let steps = [
        SippStep::Pause(wait_ms),
        SippStep::Keys("2", 400),
        SippStep::Keys("12345678#", 400),
    ];
    let scenario = sipp_dtmf_scenario(&dir, prefix, &steps, 20_000);
    let cid = sipp_call_id_args(prefix);
    let n = calls.to_string();
    run_sipp(
        server,
        &scenario.display().to_string(),
        &[
            "-s",
            UK,
            "-m",
            &n,
            "-l",
            &n,
            "-r",
            "20",
            "-rp",
            "1000",
            "-buff_size",
            "4194304",
            &cid[0],
            &cid[1],
        ],
        Duration::from_secs(120),
    )
}

/// The CDRs whose Call-ID starts with `prefix`.
fn cdrs_of(cdrs: &[Value], prefix: &str) -> Vec<Value> {
    cdrs.iter()
        .filter(|c| {
            c["call_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .cloned()
        .collect()
}

/// Asserts every CDR routed to `route` on menu `version` with the order number.
fn assert_routed(cdrs: &[Value], count: usize, route: &str, version: &str, what: &str) {
    assert_eq!(cdrs.len(), count, "{what}: {cdrs:#?}");
    for c in cdrs {
        assert_eq!(c["final_status"], 200, "{what}: {c:#}");
        assert_eq!(c["route"], route, "{what}: {c:#}");
        assert_eq!(c["menu_version"], version, "{what}: {c:#}");
        assert_eq!(c["variables"]["order_id"], "12345678", "{what}: {c:#}");
    }
}

/// How the new set is announced to the server.
enum Trigger {
    Sighup,
    FileChange,
}

/// 20 calls in progress, then key 2 is re-routed to `escalation` and the server reloads (by `trigger`):
/// new calls route the new way, the 20 finish the old way on the old version, none dropped.
fn reload_during_live_calls(name: &str, trigger: Trigger) {
    const OLD_CALLS: usize = 20;
    let menus = copy_menus(name);
    // With --no-watch only the signal can cause the reload, so the SIGHUP case proves the signal works.
    let mut args = vec!["--pretend-time", FRIDAY_EVENING];
    if matches!(trigger, Trigger::Sighup) {
        args.push("--no-watch");
    }
    let server = Server::start(&menus, &args);
    let old_version = version_in(
        &server
            .wait_log_plain("menus live", 1, Duration::from_secs(5))
            .expect("menus live line"),
    );

    // The old calls wait 10 s in the main greeting before pressing keys: the reload happens meanwhile.
    let addr = server.addr;
    let old = thread::spawn(move || uk_refund_calls(addr, "old", OLD_CALLS, 10_000));
    assert!(
        server
            .wait_log_plain(ANSWERED, OLD_CALLS, Duration::from_secs(40))
            .is_some(),
        "the {OLD_CALLS} calls were not all answered:\n{}",
        server.log_text()
    );

    edit(
        &menus.join("menus.toml"),
        REFUNDS,
        &REFUNDS.replace("refunds\"", "escalation\""),
    );
    match trigger {
        Trigger::Sighup => {
            server.signal("HUP");
            assert!(
                server
                    .wait_log_plain("SIGHUP: reloading menus", 1, Duration::from_secs(10))
                    .is_some(),
                "no SIGHUP line:\n{}",
                server.log_text()
            );
        }
        Trigger::FileChange => {
            assert!(
                server
                    .wait_log_plain(
                        "menu directory changed: reloading",
                        1,
                        Duration::from_secs(10)
                    )
                    .is_some(),
                "the change was not noticed:\n{}",
                server.log_text()
            );
        }
    }
    let reloaded = server
        .wait_log_plain(RELOADED, 1, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload line:\n{}", server.log_text()));
    let new_version = version_in(&reloaded);
    assert_ne!(new_version, old_version, "{reloaded}");
    assert!(
        reloaded.contains(&format!("previous={old_version}")),
        "{reloaded}"
    );
    // All 20 old calls were still in progress when the new version went live.
    assert!(
        server.cdrs().is_empty(),
        "calls ended before the reload: {:#?}",
        server.cdrs()
    );

    let new = uk_refund_calls(server.addr, "new", 2, 1_200);
    assert!(new.status.success(), "new calls failed:\n{}", new.output);
    let old = old.join().expect("old calls thread");
    assert!(
        old.status.success(),
        "old calls failed (dropped?):\n{}\nlog:\n{}",
        old.output,
        server.log_text()
    );

    let cdrs = server.wait_cdrs(OLD_CALLS + 2, Duration::from_secs(20));
    assert_routed(
        &cdrs_of(&cdrs, "new-"),
        2,
        "europe.escalation",
        &new_version,
        "new calls",
    );
    assert_routed(
        &cdrs_of(&cdrs, "old-"),
        OLD_CALLS,
        "europe.refunds",
        &old_version,
        "old calls",
    );
}

/// SIGHUP (with directory watching off) makes the edited set live for new calls only.
#[test]
fn sighup_reload_during_20_live_calls_changes_new_calls_only() {
    reload_during_live_calls("reload-hup", Trigger::Sighup);
}

/// Writing a file in the menu directory, without any signal, makes the edited set live for new calls only.
#[test]
fn file_change_reload_during_20_live_calls_changes_new_calls_only() {
    reload_during_live_calls("reload-file", Trigger::FileChange);
}

/// An unknown menu reference is refused: the error is logged with file:line:col, the log says the old
/// version stays live, and a new call still routes the old way on the old version.
#[test]
fn invalid_edit_is_refused_and_old_version_stays_live() {
    let menus = copy_menus("reload-invalid");
    let server = Server::start(&menus, &["--pretend-time", FRIDAY_EVENING]);
    let old_version = version_in(
        &server
            .wait_log_plain("menus live", 1, Duration::from_secs(5))
            .expect("menus live line"),
    );

    let file = menus.join("menus.toml");
    edit(
        &file,
        "[menus.main.keys.4]\naction = \"menu\"\nmenu = \"tech\"",
        "[menus.main.keys.4]\naction = \"menu\"\nmenu = \"tehc\"",
    );
    let text = std::fs::read_to_string(&file).expect("read");
    let line = text
        .lines()
        .position(|l| l == "menu = \"tehc\"")
        .expect("edited line")
        + 1;
    server.signal("HUP");

    let refused = server
        .wait_log_plain(REFUSED, 1, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no refusal:\n{}", server.log_text()));
    assert_eq!(version_in(&refused), old_version, "{refused}");
    let error = server
        .wait_log_plain("unknown menu `tehc`", 1, Duration::from_secs(1))
        .unwrap_or_else(|| panic!("error not logged:\n{}", server.log_text()));
    assert!(
        error.contains(&format!("menus.toml:{line}:")),
        "no file:line:col (line {line}) in {error:?}"
    );
    assert!(
        server
            .wait_log_plain(RELOADED, 1, Duration::from_millis(10))
            .is_none(),
        "an invalid set went live:\n{}",
        server.log_text()
    );

    let run = uk_refund_calls(server.addr, "after", 1, 1_200);
    assert!(run.status.success(), "call failed:\n{}", run.output);
    let cdrs = server.wait_cdrs(1, Duration::from_secs(10));
    assert_routed(
        &cdrs_of(&cdrs, "after-"),
        1,
        "europe.refunds",
        &old_version,
        "call after refusal",
    );
}
