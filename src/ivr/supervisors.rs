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

#[cfg(test)]
mod tests {
    //! `[supervisors.*]` in the shipped menus plus one test file: what compiles, and every mistake at its
    //! line and column.
    use std::path::PathBuf;

    use crate::ivr::{compile, PromptCheck, Severity};

    struct AllPrompts;
    impl PromptCheck for AllPrompts {
        fn check(&self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    /// A well-formed Argon2id PHC string, shaped as `helpline passwd --supervisor` prints them.
    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3o5x5jC1tzKfQXx3j1y7bGrmzTDk2H3d8L1GJmz3T1M";

    fn shipped_plus(extra: &str) -> Vec<(PathBuf, String)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ivr-menus");
        let mut files: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
            .expect("ivr-menus/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("a menu file");
                (p, text)
            })
            .collect();
        files.sort();
        files.push((PathBuf::from("zz-supervisors.toml"), extra.to_owned()));
        files
    }

    #[test]
    fn a_supervisor_with_an_argon2_hash_compiles() {
        assert!(super::is_argon2_phc(HASH));
        let text = format!("[supervisors.mei]\npassword_hash = \"{HASH}\"\n");
        let (set, _) = compile(&shipped_plus(&text), &AllPrompts).expect("compiles");
        assert_eq!(set.supervisor_hash("mei"), Some(HASH));
        assert_eq!(set.supervisor_hash("raj"), None);
    }

    #[test]
    fn bad_names_hashes_duplicates_and_unknown_keys_are_reported_at_their_place() {
        let text = format!(
            "[supervisors.\"bad name\"]\npassword_hash = \"{HASH}\"\n\
             \n[supervisors.raj]\npassword_hash = \"5f4dcc3b5aa765d61d8327deb882cf99\"\n\
             \n[supervisors.ok]\npassword_hash = \"{HASH}\"\n"
        );
        let errors = compile(&shipped_plus(&text), &AllPrompts).expect_err("refused");
        let mine: Vec<(usize, usize, &str)> = errors
            .iter()
            .filter(|d| d.file == std::path::Path::new("zz-supervisors.toml"))
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.line, d.col, d.message.as_str()))
            .collect();
        assert_eq!(
            mine,
            [
                (1, 14, "invalid supervisor name `bad name`"),
                (5, 17, "password_hash is not an Argon2 PHC string"),
            ],
            "{errors:#?}"
        );
        let unknown = "[supervisors.mei]\npassword = \"x\"\n";
        let errors = compile(&shipped_plus(unknown), &AllPrompts).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|d| d.line == 2 && d.message.contains("unknown field `password`")),
            "{errors:#?}"
        );
        let twice = format!("[supervisors.mei]\npassword_hash = \"{HASH}\"\n");
        let mut files = shipped_plus(&twice);
        files.push((PathBuf::from("zz-more.toml"), twice.clone()));
        let errors = compile(&files, &AllPrompts).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|d| d.message == "supervisor `mei` is defined twice"),
            "{errors:#?}"
        );
    }
}
