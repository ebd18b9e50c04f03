//! The server config file with the real binary: `check` reports a bad `helpline.toml` and a bad menu
//! file in one run, and `serve --server-config` runs with the file's settings and, on SIGHUP, applies a
//! live key and logs a restart-only one as needing a restart. Each key's mapping is tested in
//! `src/config_file.rs`.

mod common;

use common::{root, temp_dir, Server};
use std::process::Command;
use std::time::Duration;

#[test]
fn check_reports_a_bad_server_config_and_a_bad_menu_file_in_one_run() {
    let dir = temp_dir("server-config-check");
    let menus = dir.join("menus");
    std::fs::create_dir_all(&menus).expect("menus dir");
    common::copy_shipped_menus(&menus);
    let europe = menus.join("europe.toml");
    let text = std::fs::read_to_string(&europe).expect("europe.toml");
    let text = text.replacen(
        "[regions.europe]\n",
        "[regions.europe]\ntime_zon = \"x\"\n",
        1,
    );
    std::fs::write(&europe, &text).expect("write");
    let menu_line = text
        .lines()
        .position(|l| l == "time_zon = \"x\"")
        .expect("planted")
        + 1;
    let config = dir.join("helpline.toml");
    let prompts = root().join("prompts");
    std::fs::write(
        &config,
        format!(
            "[menus]\ndir = \"{}\"\nprompts = \"{}\"\n[sip]\nlisten = \"nowhere\"\n[defences]\nlimit_rat = 5\n",
            menus.display(),
            prompts.display()
        ),
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["check", "--server-config"])
        .arg(&config)
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let c = config.display();
    for prefix in [
        format!("{c}:5:10: error: `sip.listen`: invalid value 'nowhere'"),
        format!("{c}:7:1: error: unknown field `limit_rat`"),
        format!(
            "{}:{menu_line}:1: error: unknown field `time_zon`",
            europe.display()
        ),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&prefix)),
            "no `{prefix}` in:\n{err}"
        );
    }
    // The menu error also drops the region, so more follow; the total counts both files.
    let total: usize = err
        .lines()
        .find_map(|l| l.strip_suffix(" error(s)")?.parse().ok())
        .unwrap_or_else(|| panic!("no error count in:\n{err}"));
    assert!(total >= 3, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_runs_with_the_files_settings_and_sighup_applies_live_keys_only() {
    let dir = temp_dir("server-config-serve");
    let config = dir.join("helpline.toml");
    let cdr = dir.join("cdr.jsonl");
    let file = |rate: u32, listen: &str| {
        format!(
            "[menus]\ndir = \"{}\"\nprompts = \"{}\"\n[sip]\nlisten = \"{listen}\"\n[rtp]\nports = \"30000-39999\"\n[records]\ncdr = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[defences]\nlimit_rate = {rate}\n",
            root().join("ivr-menus").display(),
            root().join("prompts").display(),
            cdr.display()
        )
    };
    std::fs::write(&config, file(50, "127.0.0.1:0")).expect("write config");
    let args = vec![
        "serve".to_owned(),
        "--server-config".to_owned(),
        config.display().to_string(),
    ];
    let server = Server::spawn(&args, cdr.clone());
    // The file's port 0 and HTTP listener are in effect.
    assert_ne!(server.addr.port(), 0);
    let http = server.http_addr();
    assert_eq!(common::http_get(http, "/health/live").0, 200, "{http}");
    assert!(cdr.exists(), "the file's [records] cdr is opened");

    std::fs::write(&config, file(60, "127.0.0.1:1")).expect("rewrite config");
    server.signal("HUP");
    let applied = server
        .wait_log("server config: setting applied", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no applied line:\n{}", server.log_text()));
    assert!(
        applied.contains("key=defences.limit_rate") && applied.contains("new=60"),
        "{applied}"
    );
    let restart = server
        .wait_log("needs a restart", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no restart line:\n{}", server.log_text()));
    assert!(
        restart.contains("key=sip.listen") && restart.contains("new=127.0.0.1:1"),
        "{restart}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
