//! The sans-IO rule, checked: the protocol and call cores never touch tokio, sockets, files, the clock or
//! thread-local randomness. Only `transport`, `server`, `cli`, `config`, `prompts` and `clock` do I/O.
//! And the other way round: the shell (`server`) holds no dialog, SDP or SIP-reply logic — every call
//! decision is the call layer's.
use std::path::Path;

const CORES: &[&str] = &[
    "sip", "dialog", "sdp", "media", "call", "ivr", "queue", "agent", "guard",
];
const BANNED: &[&str] = &[
    "tokio::",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "Utc::now",
    "thread_rng",
    "thread::spawn",
    "thread::sleep",
];

/// What the shell must not touch: dialogs, SDP and building SIP responses belong to the call layer.
const SHELL: &str = "server";
const SHELL_BANNED: &[&str] = &[
    "crate::dialog",
    "crate::sdp",
    "Dialog",
    "SessionDescription",
    "Response::for_request",
    "Reply::",
];

fn visit(dir: &Path, banned: &[&str], found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read src dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            visit(&path, banned, found);
        } else if path.extension().is_some_and(|e| e == "rs")
            // `tests.rs` files are `#[cfg(test)]` modules: a simulated clock starts at `Instant::now()`.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            let text = std::fs::read_to_string(&path).expect("read source");
            // Unit tests inside a core may build a simulated clock from `Instant::now()`.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for banned in banned {
                    if line.contains(banned) {
                        found.push(format!("{}:{}: {banned}", path.display(), n + 1));
                    }
                }
            }
        }
    }
}

#[test]
fn sans_io_cores_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for core in CORES {
        visit(&src.join(core), BANNED, &mut found);
    }
    assert!(
        found.is_empty(),
        "I/O in a sans-IO core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shell_holds_no_call_logic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    visit(&src.join(SHELL), SHELL_BANNED, &mut found);
    assert!(
        found.is_empty(),
        "dialog, SDP or reply logic in the shell (it belongs in src/call/):\n{}",
        found.join("\n")
    );
}
