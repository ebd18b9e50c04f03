//! Compiles the `[supervisors.NAME]` tables of `ivr-menus/` (who may log in to the supervisor web view)
//! and reports every mistake with its position: bad names, names declared twice, password hashes that
//! are not Argon2 PHC strings. It does not verify passwords (the web view does) nor know sessions.
use std::collections::BTreeMap;

use argon2::password_hash::PasswordHash;

use super::compile::{loc, Ctx, Loc};
use super::diag::line_col;
use super::menu::MenuFile;

/// Whether `name` can name a supervisor: 1 to 64 of letters, digits and `.` `_` `-` (it is typed into
/// a login form and written into logs, so nothing that needs escaping).
pub fn is_valid_supervisor_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `hash` is an Argon2 PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn is_argon2_phc(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") && h.hash.is_some()
    })
}

/// Every supervisor of every file: name → PHC string; on errors `cx` holds the diagnostics.
pub(super) fn compile_supervisors(
    cx: &mut Ctx,
    parsed: &[(usize, MenuFile)],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Loc> = BTreeMap::new();
    for (file, f) in parsed {
        for (name, s) in &f.supervisors {
            let here = loc(*file, name);
            if let Some(prev) = first_seen.get(name.get_ref()) {
                let (path, src) = &cx.files[prev.file];
                let (pl, _) = line_col(src, prev.span.start);
                let hint = format!("first definition is at {}:{pl}", path.display());
                cx.err(
                    &here,
                    format!("supervisor `{}` is defined twice", name.get_ref()),
                    Some(hint),
                );
                continue;
            }
            first_seen.insert(name.get_ref().clone(), here.clone());
            if !is_valid_supervisor_name(name.get_ref()) {
                cx.err(
                    &here,
                    format!("invalid supervisor name `{}`", name.get_ref()),
                    Some("use 1 to 64 letters, digits and . _ -".into()),
                );
                continue;
            }
            let hash = &s.get_ref().password_hash;
            if !is_argon2_phc(hash.get_ref()) {
                cx.err(
                    &loc(*file, hash),
                    "password_hash is not an Argon2 PHC string",
                    Some(format!(
                        "paste the line `helpline passwd --supervisor {}` prints",
                        name.get_ref()
                    )),
                );
                continue;
            }
            out.insert(name.get_ref().clone(), hash.get_ref().clone());
        }
    }
    out
}
