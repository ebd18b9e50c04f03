//! Diagnostics for `helpline check`: `file:line:col: severity: message (hint: …)`.
//!
//! Turns byte offsets (from `toml::Spanned` and `toml::de::Error::span`) into 1-based line and column
//! numbers and suggests near spellings for unknown names. It does not read files or decide what is an
//! error; `compile` does.

use std::fmt;
use std::path::PathBuf;

/// How bad a diagnostic is: any `Error` stops `check` and `serve`; a `Warning` is printed only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration works but probably not as the admin meant (e.g. a language voice fallback).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about the menu configuration, located at `file:line:col` (both 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the finding is in, as it was given to the loader.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.severity,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// 1-based (line, column) of byte `offset` in `src`; offsets past the end point after the last character.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    // A span may in theory start inside a multi-byte character; move back to a boundary.
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Edit distance counting an adjacent swap as one edit (optimal string alignment), so `mian` is one
/// edit from `main`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `wrong` if it is close enough to be a plausible typo.
pub fn did_you_mean<'a, I>(wrong: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // `=` after the two-character key `bé` (three bytes) is column 4.
        assert_eq!(line_col(src, 10), (2, 4));
    }

    #[test]
    fn display_matches_check_format() {
        let d = Diagnostic {
            file: "ivr-menus/europe.toml".into(),
            line: 12,
            col: 5,
            message: "unknown menu `mian`".into(),
            hint: did_you_mean("mian", ["main", "closed"]),
            severity: Severity::Error,
        };
        assert_eq!(
            d.to_string(),
            "ivr-menus/europe.toml:12:5: error: unknown menu `mian` (hint: did you mean `main`?)"
        );
    }

    #[test]
    fn no_suggestion_for_unrelated_names() {
        assert_eq!(did_you_mean("refunds", ["tech", "english"]), None);
    }
}
