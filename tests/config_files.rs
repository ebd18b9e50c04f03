//! The shipped `ivr-menus/` configuration: it loads, every table (and every table of the sample agents in
//! `examples/agents/`) rejects unknown keys at the right line, a broken copy reports every planted error
//! with its position, and the published scenarios route where the directory says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use helpline::agent::{Algorithm, Ha1};
use helpline::ivr::{self, Diagnostic, PromptCheck, Severity};

/// Prompts as the generator will produce them: every catalog line whose language has a
/// speech-synthesis voice (the issue lists the voiced languages; Tagalog has none), and the
/// language-neutral tones it renders (`prompts/tones/`, as shipped).
struct CatalogPrompts(BTreeSet<(String, String)>);

const VOICED: [&str; 12] = [
    "en", "zh", "es", "pt", "vi", "th", "id", "ms", "hi", "de", "fr", "it",
];

impl CatalogPrompts {
    fn load() -> Self {
        let text = std::fs::read_to_string(root().join("prompts/catalog.tsv")).expect("catalog");
        let set = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_owned(), f.next()?.to_owned()))
            })
            .filter(|(lang, _)| VOICED.contains(&lang.as_str()))
            .chain(
                std::fs::read_dir(root().join("prompts/tones"))
                    .expect("prompts/tones")
                    .filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        Some(("tones".to_owned(), name.strip_suffix(".wav")?.to_owned()))
                    }),
            )
            .collect();
        CatalogPrompts(set)
    }
}

impl PromptCheck for CatalogPrompts {
    fn check(&self, lang: &str, name: &str) -> Result<(), String> {
        if self.0.contains(&(lang.to_owned(), name.to_owned())) {
            Ok(())
        } else {
            Err("missing".into())
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> PathBuf {
    root().join("ivr-menus")
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// The sample agents, a menus fragment meant to be copied into `ivr-menus/`.
fn sample_agents() -> PathBuf {
    root().join("examples/agents/agents.toml")
}

/// A fresh copy of the shipped config in a temp dir, with `edit(file name, text)` applied.
fn copy_with(edit: impl Fn(&str, String) -> String) -> PathBuf {
    copy_with_extra(&[], edit)
}

/// Like [`copy_with`], with the `extra` files copied in too.
fn copy_with_extra(extra: &[PathBuf], edit: impl Fn(&str, String) -> String) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("helpline-ivr-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let shipped_files = std::fs::read_dir(shipped())
        .unwrap()
        .map(|e| e.unwrap().path());
    for p in shipped_files.chain(extra.iter().cloned()) {
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(dir.join(&name), edit(&name, text)).unwrap();
        }
    }
    dir
}

fn toml_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    v.sort();
    v
}

fn errors(d: &[Diagnostic]) -> Vec<&Diagnostic> {
    d.iter().filter(|d| d.severity == Severity::Error).collect()
}

#[test]
fn shipped_config_loads_and_reports_the_tagalog_fallback() {
    let (set, warnings) =
        helpline::config::load_menus_with_warnings(&shipped(), &CatalogPrompts::load())
            .unwrap_or_else(|d| {
                panic!(
                    "{}",
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
    assert_eq!(set.region_names().len(), 9);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].to_string();
    assert!(w.contains("southeast-asia.toml:"), "{w}");
    assert!(w.contains("warning: language `tl`"), "{w}");
    assert!(w.contains("hear `en`"), "{w}");
    // Tagalog prompts are never played; English ones are.
    let used = set.prompts_used();
    assert!(!used.iter().any(|(l, _)| l == "tl"));
    assert!(used.contains(&("de".into(), "for-language".into())));
}

#[test]
fn every_published_number_reaches_its_region() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    let cases = [
        ("4000009999", "china"),
        ("+86 21 6195 9999", "international"),
        ("tel:+86-21-6195-8888", "english-line"),
        ("1-800-881-0888", "north-america"),
        ("+18008810888", "north-america"),
        ("011 44 800 028 9999", "europe"),
        ("00448000289999", "europe"),
        ("08001839999", "europe"),
        ("+33800910999", "europe"),
        ("+34900810999", "europe"),
        ("sip:+39800977999@helpline.invalid", "europe"),
        ("1800 639 999", "oceania"),
        ("+64800456999", "oceania"),
        ("0800 188 9999", "southeast-asia"),
        ("001 800 101 9999", "southeast-asia"),
        ("1800 120 999", "southeast-asia"),
        ("+63 1800 888 9999", "southeast-asia"),
        ("1800 81 9999", "southeast-asia"),
        ("1800 200 9999", "south-asia"),
        ("+880 800 888 9999", "south-asia"),
        ("0800 777 999", "south-asia"),
        ("0800 001 9999", "south-asia"),
        ("01 800 842 9999", "latin-america"),
        ("+55 800 891 9999", "latin-america"),
        ("01 800 009 9999", "latin-america"),
        ("0800 555 9999", "latin-america"),
    ];
    for (dialed, region) in cases {
        let id = set
            .route_dialed(dialed)
            .unwrap_or_else(|e| panic!("{dialed}: {e}"));
        assert_eq!(set.region_name(id), region, "{dialed}");
    }
    assert!(set.route_dialed("+4930123456").is_err());
    assert!(set.route_dialed("support").is_err());
}

#[test]
fn unknown_key_in_every_table_of_every_shipped_file_is_reported_at_its_line() {
    let prompts = CatalogPrompts::load();
    let mut checked = 0;
    let mut agent_tables = 0;
    // Every shipped file, plus the sample agents (the shipped menus declare none).
    let mut files: Vec<PathBuf> = toml_files(&shipped())
        .into_iter()
        .map(|f| shipped().join(f))
        .collect();
    files.push(sample_agents());
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        // Line index (0-based) after which to insert: before the first header (root table), and
        // after every `[table]` / `[[array]]` header.
        let mut positions = vec![None];
        for (i, l) in text.lines().enumerate() {
            if l.trim_start().starts_with('[') {
                positions.push(Some(i));
            }
        }
        for pos in positions {
            if pos.is_some_and(|i| text.lines().nth(i).unwrap().starts_with("[agents.")) {
                agent_tables += 1;
            }
            let dir = copy_with_extra(&[sample_agents()], |name, t| {
                if name != file {
                    return t;
                }
                let mut lines: Vec<&str> = t.lines().collect();
                let at = pos.map_or(0, |i| i + 1);
                lines.insert(at, "bogus_key = 1");
                lines.join("\n") + "\n"
            });
            let expected_line = pos.map_or(1, |i| i + 2);
            let diags =
                helpline::config::load_menus(&dir, &prompts).expect_err("bogus key accepted");
            let hit = diags.iter().any(|d| {
                d.file.ends_with(&file)
                    && d.line == expected_line
                    && d.col == 1
                    && d.message.contains("unknown field `bogus_key`")
            });
            assert!(
                hit,
                "{file}: bogus_key at line {expected_line} not reported: {diags:?}"
            );
            let _ = std::fs::remove_dir_all(&dir);
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} tables checked");
    assert_eq!(agent_tables, 3, "every sample agent's table is mutated");
}

#[test]
fn no_agent_ships_and_the_sample_agents_load_typed_with_their_published_passwords() {
    let prompts = CatalogPrompts::load();
    let live = helpline::config::load_menus(&shipped(), &prompts).unwrap();
    assert_eq!(
        live.agents().count(),
        0,
        "the live ivr-menus/ must declare no agent"
    );
    let dir = copy_with_extra(&[sample_agents()], |_, t| t);
    let set = helpline::config::load_menus(&dir, &prompts).unwrap();
    assert_eq!(set.realm(), "helpline");
    let ids: Vec<&str> = set.agents().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["ana", "li.wei", "sam"]);
    let ana = set.agent("ana").unwrap();
    let queues: Vec<String> = ana.queues.iter().map(|q| q.to_string()).collect();
    assert_eq!(queues, ["europe.refunds", "europe.orders"]);
    assert_eq!(
        (ana.queues[0].region(), ana.queues[0].department()),
        ("europe", "refunds")
    );
    assert_eq!(ana.languages, ["en", "fr"]);
    assert!(set.agent("sam").unwrap().ha1_sha256.is_none());
    // The README's passwords are the ones the hashes were made from.
    let readme = std::fs::read_to_string(root().join("examples/agents/README.md")).unwrap();
    let mut rows = 0;
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        let (id, password) = (cells[1], cells[3]);
        let agent = set.agent(id).unwrap_or_else(|| panic!("README agent {id}"));
        let md5 = Ha1::compute(Algorithm::Md5, id, "helpline", password);
        assert_eq!(agent.ha1, md5, "{id}");
        if let Some(sha) = &agent.ha1_sha256 {
            assert_eq!(
                *sha,
                Ha1::compute(Algorithm::Sha256, id, "helpline", password)
            );
        }
        rows += 1;
    }
    assert_eq!(rows, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_agents_report_every_error_with_its_position() {
    let plants: [(&str, &str); 6] = [
        (
            "\"6bd423651bea1777d0f5df2996135143\"",
            "\"6BD423651BEA1777D0F5DF2996135143\"",
        ),
        ("\"europe.orders\"", "\"europa.orders\""),
        ("\"china.seller-disputes\"", "\"china.seller-dispute\""),
        ("[\"zh\", \"en\"]", "[\"zh\", \"xx\"]"),
        (
            "\"2bcd64c10c911736d80436fbd71c9529f5377b359c5c65950e224b39965101c3\"",
            "\"2bcd64\"",
        ),
        ("[agents.sam]", "[agents.\"sam taylor\"]"),
    ];
    let dir = copy_with_extra(&[sample_agents()], |name, mut t| {
        if name == "agents.toml" {
            for (from, to) in plants {
                assert!(t.contains(from), "{from}");
                t = t.replacen(from, to, 1);
            }
        }
        t
    });
    // A second file declaring an agent the first already has.
    std::fs::write(
        dir.join("zz-more.toml"),
        "[agents.ana]\nname = \"Ana again\"\nha1 = \"6bd423651bea1777d0f5df2996135143\"\nqueues = [\"europe.refunds\"]\n",
    )
    .unwrap();
    let diags = helpline::config::load_menus(&dir, &CatalogPrompts::load())
        .expect_err("broken agents accepted");
    let text = std::fs::read_to_string(dir.join("agents.toml")).unwrap();
    let pos = |needle: &str| {
        let off = text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        let line = text[..off].matches('\n').count() + 1;
        let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    let expect = |file: &str, (line, col): (usize, usize), message: &str| {
        assert!(
            diags.iter().any(|d| d.file.ends_with(file)
                && d.line == line
                && d.col == col
                && d.message.contains(message)),
            "expected {file}:{line}:{col}: {message}\n got:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    expect(
        "agents.toml",
        pos("\"6BD4"),
        "`ha1` must be 32 lowercase hex digits",
    );
    expect(
        "agents.toml",
        pos("\"europa.orders"),
        "unknown region `europa` in queue `europa.orders`",
    );
    expect(
        "agents.toml",
        pos("\"china.seller-dispute\""),
        "unknown department `seller-dispute` in queue `china.seller-dispute`",
    );
    expect(
        "agents.toml",
        pos("\"xx\""),
        "language `xx` is not declared by any region",
    );
    expect(
        "agents.toml",
        pos("\"2bcd64\""),
        "`ha1_sha256` must be 64 lowercase hex digits",
    );
    expect(
        "agents.toml",
        pos("\"sam taylor\""),
        "invalid agent ID `sam taylor`",
    );
    expect("zz-more.toml", (1, 9), "agent `ana` is defined twice");
    let dup = diags
        .iter()
        .find(|d| d.message.contains("defined twice"))
        .unwrap();
    let first = pos("ana]");
    assert!(
        dup.hint
            .as_deref()
            .is_some_and(|h| h.ends_with(&format!("agents.toml:{}", first.0))),
        "{dup:?}"
    );
    assert_eq!(errors(&diags).len(), 7, "{diags:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_copy_reports_every_planted_error_with_its_position() {
    // Each plant: file, text to replace, replacement. Positions are asserted below by searching for
    // the replacement in the broken text, so the test stays correct if comments move.
    let plants: [(&str, &str, &str); 10] = [
        (
            "europe.toml",
            "open_menu = \"main\"",
            "open_menu = \"mian\"",
        ),
        (
            "europe.toml",
            "time_zone = \"Europe/Paris\"",
            "time_zone = \"Europe/Pariss\"",
        ),
        ("oceania.toml", "close = \"17:00\"", "close = \"17:70\""),
        ("oceania.toml", "\"2026-12-25\"", "\"2026-12-32\""),
        (
            "menus.toml",
            "department = \"seller-disputes\"",
            "department = \"seller-dispute\"",
        ),
        (
            "menus.toml",
            "greeting = [\"tech-greeting\"]",
            "greeting = [\"tech-greting\"]",
        ),
        (
            "menus.toml",
            "inter_digit_timeout = \"3s\"\nmax_failures",
            "max_failures",
        ),
        ("menus.toml", "[menus.main.keys.0]", "[menus.main.keys.8]"),
        (
            "south-asia.toml",
            "country = \"LK\"\nnumber = \"0800 777 999\"",
            "country = \"BD\"\nnumber = \"0800 888 9999\"",
        ),
        ("latin-america.toml", "country = \"AR\"", "country = \"RA\""),
    ];
    let dir = copy_with(|name, mut t| {
        for (f, from, to) in plants {
            if f == name {
                assert!(t.contains(from), "{from} not in {f}");
                t = t.replacen(from, to, 1);
            }
        }
        if name == "menus.toml" {
            // An orphan menu (unreachable, and with no way out).
            t.push_str("\n[menus.orphan]\ngreeting = [\"goodbye\"]\n");
        }
        t
    });
    let diags = helpline::config::load_menus(&dir, &CatalogPrompts::load())
        .expect_err("broken config accepted");
    let text = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let pos = |f: &str, needle: &str| {
        let t = text(f);
        let off = t
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {f}"));
        let line = t[..off].matches('\n').count() + 1;
        let col = off - t[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    let expect = |f: &str, needle: &str, message: &str| {
        let (line, col) = pos(f, needle);
        assert!(
            diags.iter().any(|d| d.file.ends_with(f)
                && d.line == line
                && d.col == col
                && d.message.contains(message)),
            "expected {f}:{line}:{col}: {message}\n got:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    expect("europe.toml", "\"mian\"", "unknown menu `mian`");
    expect("europe.toml", "\"Europe/Pariss\"", "unknown time zone");
    expect("oceania.toml", "\"17:70\"", "invalid time `17:70`");
    expect("oceania.toml", "\"2026-12-32\"", "invalid date");
    expect(
        "menus.toml",
        "\"seller-dispute\"",
        "unknown department `seller-dispute`",
    );
    // Europe (de, fr, it) is absent: its planted `mian` cuts the tech menu off from it.
    expect(
        "menus.toml",
        "\"tech-greting\"",
        "prompt `tech-greting` is missing in en, es, hi, id, ms, pt, th, vi, zh",
    );
    assert_eq!(
        diags
            .iter()
            .filter(|d| d.message.contains("tech-greting"))
            .count(),
        1
    );
    expect(
        "menus.toml",
        "8]",
        "key `8` is both an option and the prefix of `8888`",
    );
    let south = text("south-asia.toml");
    let second = south.rfind("\"0800 888 9999\"").unwrap();
    let line = south[..second].matches('\n').count() + 1;
    assert!(
        diags.iter().any(|d| d.file.ends_with("south-asia.toml")
            && d.line == line
            && d.message.contains("+8808008889999 is listed twice")),
        "{diags:?}"
    );
    expect("latin-america.toml", "\"RA\"", "unknown country `RA`");
    expect("menus.toml", "orphan]", "menu `orphan` is unreachable");
    expect("menus.toml", "orphan]", "menu `orphan` has no way out");
    // Hints are part of the report.
    let mian = diags.iter().find(|d| d.message.contains("mian")).unwrap();
    assert_eq!(mian.hint.as_deref(), Some("did you mean `main`?"));
    // Nothing else: the planted mistakes cause no follow-on noise.
    assert_eq!(errors(&diags).len(), 11, "{diags:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn uk_caller_on_friday_evening_reaches_europe_refunds_with_order_number() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    // Friday 2026-11-20 19:00 in London is 20:00 in Paris: open.
    let r = ivr::simulate(
        &set,
        "+44 800 028 9999",
        utc("2026-11-20T19:00:00Z"),
        "2,123456#",
        Instant::now(),
        &|_, _| None,
    );
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert!(!r.ended_nowhere, "{lines:#?}");
    assert_eq!(r.route.as_deref(), Some("europe.refunds"));
    assert_eq!(lines[1], "t=0.000 play en/main-greeting");
    assert!(lines.contains(&"t=1.200 key 2".to_owned()), "{lines:#?}");
    let s = r.summary.unwrap();
    assert_eq!(s.language, "en");
    assert_eq!(
        s.variables.get("order_id").map(String::as_str),
        Some("123456")
    );
    assert_eq!(s.menu_path, ["main"]);
}

#[test]
fn closed_europe_says_goodbye_and_ends_nowhere() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    // Sunday.
    let r = ivr::simulate(
        &set,
        "+448000289999",
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
        "",
        Instant::now(),
        &|_, _| None,
    );
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert!(r.ended_nowhere);
    assert_eq!(
        &lines[1..],
        [
            "t=0.000 play en/closed",
            "t=3.000 timer first-key fired",
            "t=3.000 play en/goodbye",
            "t=4.000 hangup closed",
        ]
    );
}

#[test]
fn german_caller_chooses_english_then_dials_the_english_team() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    let r = ivr::simulate(
        &set,
        "+49 800 183 9999",
        utc("2026-11-18T10:00:00Z"),
        "2,8888",
        Instant::now(),
        &|_, _| None,
    );
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        &lines[1..5],
        [
            "t=0.000 play de/for-language",
            "t=0.000 play de/digit-1",
            "t=0.000 play en/for-language",
            "t=0.000 play en/digit-2",
        ]
    );
    assert_eq!(r.route.as_deref(), Some("europe.english"), "{lines:#?}");
    assert_eq!(r.summary.unwrap().language, "en");
}

#[test]
fn international_weekend_offers_emergency_refunds_only() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    // Saturday 2026-11-21 12:00 Shanghai = 04:00 UTC.
    let r = ivr::simulate(
        &set,
        "+862161959999",
        utc("2026-11-21T04:00:00Z"),
        "1,2,98765432#",
        Instant::now(),
        &|_, _| None,
    );
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert!(
        lines.contains(&"t=0.000 play zh/weekend-greeting".to_owned()),
        "{lines:#?}"
    );
    // `1` is not an option on weekends: invalid prompt, then 2 leads to refunds.
    assert!(lines.iter().any(|l| l.ends_with("play zh/invalid-option")));
    assert_eq!(r.route.as_deref(), Some("international.refunds"));
}

#[test]
fn philippine_callers_hear_english_without_a_language_question() {
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).unwrap();
    let r = ivr::simulate(
        &set,
        "+63 1800 888 9999",
        utc("2026-11-18T03:00:00Z"),
        "3",
        Instant::now(),
        &|_, _| None,
    );
    let lines: Vec<String> = r.transcript.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines[1], "t=0.000 play en/main-greeting");
    assert_eq!(r.route.as_deref(), Some("southeast-asia.seller-disputes"));
}

#[test]
fn agent_settings_load_and_every_bad_value_is_reported_at_its_position() {
    // The shipped values are the defaults.
    let set = helpline::config::load_menus(&shipped(), &CatalogPrompts::load()).expect("shipped");
    assert_eq!(*set.agent_settings(), ivr::AgentSettings::default());
    assert_eq!(set.agent_settings().ring_timeout.as_secs(), 15);
    assert_eq!(set.agent_settings().wrap_up.as_secs(), 10);

    let good = copy_with(|name, t| {
        if name != "00-routing.toml" {
            return t;
        }
        t.replace(
            "departments = [",
            "auth_algorithms = [\"SHA-256\", \"md5\"]\nmin_expires = 120\nmax_expires = 1800\n\
             max_no_answer = 0\ndepartments = [",
        )
        .replace("ring_timeout = \"15s\"", "ring_timeout = \"20s\"")
        .replace("wrap_up = \"10s\"", "wrap_up = \"0s\"")
    });
    let set = helpline::config::load_menus(&good, &CatalogPrompts::load()).expect("good settings");
    let s = set.agent_settings();
    assert_eq!(s.auth_algorithms, [Algorithm::Sha256, Algorithm::Md5]);
    assert_eq!(
        (s.min_expires, s.max_expires, s.max_no_answer),
        (120, 1800, 0)
    );
    assert_eq!((s.ring_timeout.as_secs(), s.wrap_up.as_secs()), (20, 0));
    let _ = std::fs::remove_dir_all(&good);

    let bad = copy_with(|name, t| {
        if name != "00-routing.toml" {
            return t;
        }
        t.replace(
            "departments = [",
            "auth_algorithms = [\"MD5\", \"SHA-512\", \"MD5\"]\nmin_expires = 600\nmax_expires = 300\n\
             max_no_answer = -1\ndepartments = [",
        )
        .replace("ring_timeout = \"15s\"", "ring_timeout = \"0s\"")
        .replace("wrap_up = \"10s\"", "wrap_up = \"ten\"")
    });
    std::fs::write(
        bad.join("zz-more.toml"),
        "[queue_defaults]\nwrap_up = \"5s\"\n",
    )
    .unwrap();
    let diags =
        helpline::config::load_menus(&bad, &CatalogPrompts::load()).expect_err("bad settings");
    let text = std::fs::read_to_string(bad.join("00-routing.toml")).unwrap();
    let pos = |needle: &str| {
        let off = text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        let line = text[..off].matches('\n').count() + 1;
        let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    let expect = |file: &str, (line, col): (usize, usize), message: &str| {
        assert!(
            diags.iter().any(|d| d.file.ends_with(file)
                && d.line == line
                && d.col == col
                && d.message.contains(message)),
            "expected {file}:{line}:{col}: {message}\n got:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    let routing = "00-routing.toml";
    expect(
        routing,
        pos("\"SHA-512\""),
        "unknown digest algorithm `SHA-512`",
    );
    expect(routing, pos("\"MD5\"]"), "algorithm `MD5` is listed twice");
    expect(
        routing,
        pos("300\n"),
        "min_expires (600) is above max_expires (300)",
    );
    expect(
        routing,
        pos("-1"),
        "max_no_answer must be between 0 and 100, not -1",
    );
    expect(routing, pos("\"0s\""), "ring_timeout cannot be zero");
    expect(routing, pos("\"ten\""), "invalid duration `ten`");
    expect("zz-more.toml", (1, 1), "second [queue_defaults] table");
    assert_eq!(errors(&diags).len(), 7, "{diags:#?}");
    let _ = std::fs::remove_dir_all(&bad);
}

#[test]
fn route_set_is_checked_like_collected_variables() {
    let shipped_set = "set = { category = \"app-and-website\" }";
    let dir = copy_with(|name, t| {
        if name != "menus.toml" {
            return t;
        }
        assert!(t.contains(shipped_set));
        t.replacen(
            shipped_set,
            "set = { category = 7, Kind = \"x\", queue = \"vip\", note = \"two\\nlines\" }",
            1,
        )
        .replacen(
            "[menus.tech.keys.0]\naction = \"repeat\"",
            "[menus.tech.keys.0]\naction = \"repeat\"\nset = { category = \"none\" }",
            1,
        )
    });
    let diags = helpline::config::load_menus(&dir, &CatalogPrompts::load()).expect_err("bad set");
    let text = std::fs::read_to_string(dir.join("menus.toml")).unwrap();
    let pos = |needle: &str| {
        let off = text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        let line = text[..off].matches('\n').count() + 1;
        let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    let expect = |(line, col): (usize, usize), message: &str| {
        assert!(
            diags.iter().any(|d| d.file.ends_with("menus.toml")
                && d.line == line
                && d.col == col
                && d.message.contains(message)),
            "expected menus.toml:{line}:{col}: {message}\n got:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    expect(pos("7,"), "`set.category` must be a string");
    expect(pos("Kind"), "invalid variable name `Kind`");
    expect(pos("queue ="), "variable `queue` is set by helpline itself");
    expect(
        pos("\"two"),
        "`set.note` must be 1 to 64 printable characters",
    );
    expect(
        pos("{ category = \"none\" }"),
        "key `set` does nothing for action `repeat`",
    );
    assert_eq!(errors(&diags).len(), 5, "{diags:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shipped_queues_compile_with_defaults_overrides_and_penalties() {
    use helpline::agent::QueueName;
    use helpline::queue::{OverflowTarget, Strategy, WhenNoAgents};
    use std::time::Duration;
    let dir = copy_with_extra(&[sample_agents()], |name, t| {
        if name != "agents.toml" {
            return t;
        }
        t + "\n[agents.ana.penalty]\n\"europe.orders\" = 2\n"
    });
    let set = helpline::config::load_menus(&dir, &CatalogPrompts::load()).expect("shipped");
    let (default, queues) = set.queue_configs();
    assert_eq!(default.strategy, Strategy::LongestIdleAgent);
    assert_eq!(default.ring_timeout, Duration::from_secs(15));
    assert_eq!(default.max_wait, Some(Duration::from_secs(20 * 60)));
    assert_eq!(default.max_length, None, "max_length = 0 is no limit");
    assert_eq!(default.announce_every, Some(Duration::from_secs(60)));
    assert_eq!(default.music.as_deref(), Some("hold-music"));
    assert_eq!(
        default.overflow,
        Some(OverflowTarget::HangUp {
            prompts: vec!["goodbye".into()]
        })
    );
    let refunds = &queues[&QueueName::from("europe.refunds")];
    assert_eq!(refunds.strategy, Strategy::RoundRobin);
    assert_eq!(refunds.max_length, Some(15));
    assert_eq!(refunds.max_wait, Some(Duration::from_secs(600)));
    assert_eq!(
        refunds.overflow,
        Some(OverflowTarget::Queue("english-line.refunds".into()))
    );
    assert_eq!(refunds.music.as_deref(), Some("hold-music"), "inherited");
    let orders = &queues[&QueueName::from("south-asia.orders")];
    assert_eq!(orders.when_no_agents, WhenNoAgents::Overflow);
    assert_eq!(
        orders.overflow,
        Some(OverflowTarget::Queue("southeast-asia.orders".into()))
    );
    let tech = &queues[&QueueName::from("southeast-asia.tech")];
    assert_eq!(
        (tech.strategy, tech.ring_timeout),
        (Strategy::RingAll, Duration::from_secs(20))
    );
    assert!(!queues.contains_key(&QueueName::from("china.orders")));
    let ana = set.agent("ana").expect("ana");
    assert_eq!(
        ana.penalties.get(&QueueName::from("europe.orders")),
        Some(&2)
    );
    assert_eq!(ana.penalties.get(&QueueName::from("europe.refunds")), None);
    // The hold music is preloaded as a tone.
    assert!(set
        .prompts_used()
        .contains(&("tones".to_owned(), "hold-music".to_owned())));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_queues_report_every_error_with_its_position() {
    let dir = copy_with_extra(&[sample_agents()], |name, t| {
        match name {
        "00-routing.toml" => {
            t.replace("strategy = \"longest-idle-agent\"", "strategy = \"longest-idle\"")
                + "\n[queues.\"europe.refundz\"]\nstrategy = \"round-robbin\"\n\
                   \n[queues.\"china.orders\"]\nmax_wait = \"forever\"\nmax_length = -1\n\
                   when_no_agents = \"overflwo\"\noverflow = \"mars.orders\"\n\
                   announce_every = \"3s\"\nmusic = \"elevator\"\n\
                   \n[queues.\"china.refunds\"]\noverflow = \"china.refunds\"\n\
                   \n[queues.\"oceania.tech\"]\noverflow = { action = \"transfer\", prompts = [\"nope\"] }\n"
        }
        "agents.toml" => {
            t + "\n[agents.ana.penalty]\n\"china.orders\" = 1\n\"europe.orders\" = -3\n"
        }
        _ => t,
    }
    });
    let diags = helpline::config::load_menus(&dir, &CatalogPrompts::load()).expect_err("broken");
    let at = |file: &str, needle: &str, nth: usize| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let off = text
            .match_indices(needle)
            .nth(nth)
            .unwrap_or_else(|| panic!("{needle}"))
            .0;
        let line = text[..off].matches('\n').count() + 1;
        let col = off - text[..off].rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, col)
    };
    let expect = |file: &str, needle: &str, message: &str| {
        let (line, col) = at(file, needle, 0);
        assert!(
            diags.iter().any(|d| d.file.ends_with(file)
                && d.line == line
                && d.col == col
                && format!("{} {:?}", d.message, d.hint).contains(message)),
            "expected {file}:{line}:{col}: {message}\n got:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    let r = "00-routing.toml";
    expect(r, "\"longest-idle\"", "did you mean `longest-idle-agent`?");
    expect(r, "\"europe.refundz\"", "did you mean `europe.refunds`?");
    expect(r, "\"round-robbin\"", "did you mean `round-robin`?");
    expect(r, "\"forever\"", "invalid duration `forever`");
    expect(r, "-1", "max_length must be from 0");
    expect(r, "\"overflwo\"", "did you mean `overflow`?");
    expect(r, "\"mars.orders\"", "`mars.orders` is not a queue");
    expect(r, "\"3s\"", "announce_every must be at least 10s");
    expect(r, "\"elevator\"", "music `elevator` is neither a tone");
    expect(
        r,
        "\"china.refunds\"\n",
        "queue `china.refunds` overflows into itself",
    );
    expect(
        r,
        "{ action = \"transfer\"",
        "unknown overflow action `transfer`",
    );
    expect(
        r,
        "{ action = \"transfer\"",
        "overflow prompt `nope` is missing",
    );
    let a = "agents.toml";
    expect(a, "\"china.orders\" = 1", "a queue it does not serve");
    expect(a, "-3", "penalty must be an integer from 0");
    assert_eq!(errors(&diags).len(), 14, "{diags:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn route_priority_reaches_the_engine_and_is_bounded() {
    let shipped = "department = \"escalation\"\n";
    let dir = copy_with(|name, t| {
        if name != "menus.toml" {
            return t;
        }
        assert!(t.contains("priority = 10"), "the escalation is prioritised");
        t.replacen("priority = 10", "priority = 100000", 1)
    });
    let diags = helpline::config::load_menus(&dir, &CatalogPrompts::load()).expect_err("bounded");
    assert!(
        diags.iter().any(|d| d.file.ends_with("menus.toml")
            && d.message
                .contains("priority must be between -1000 and 1000")),
        "{diags:#?}"
    );
    assert!(std::fs::read_to_string(shipped_file("menus.toml"))
        .unwrap()
        .contains(shipped));
    let _ = std::fs::remove_dir_all(&dir);
}

fn shipped_file(name: &str) -> PathBuf {
    shipped().join(name)
}
