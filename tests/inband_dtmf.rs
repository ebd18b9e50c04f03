//! In-band DTMF detection through G.711: all keys, durations, levels, twist, debouncing, and no false keys
//! on any shipped prompt.

use std::f64::consts::PI;
use std::path::Path;

use helpline::media::codec::Law;
use helpline::media::dtmf::inband::{
    dbm0_to_amplitude, InbandDetector, InbandDigit, COL_HZ, KEYS, ROW_HZ,
};
use helpline::prompts::PromptStore;

const RATE: f64 = 8000.0;
const ALL_KEYS: &str = "123A456B789C*0#D";

fn freqs(key: char) -> (f64, f64) {
    for (r, row) in KEYS.iter().enumerate() {
        if let Some(c) = row.iter().position(|&k| k == key) {
            return (f64::from(ROW_HZ[r]), f64::from(COL_HZ[c]));
        }
    }
    panic!("no such key {key}");
}

/// A DTMF tone: `ms` long, row tone at `row_dbm0`, column tone at `col_dbm0`.
fn tone(key: char, ms: u32, row_dbm0: f64, col_dbm0: f64) -> Vec<f64> {
    let (fr, fc) = freqs(key);
    let (ar, ac) = (dbm0_to_amplitude(row_dbm0), dbm0_to_amplitude(col_dbm0));
    let n = (ms * 8) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE;
            ar * (2.0 * PI * fr * t).sin() + ac * (2.0 * PI * fc * t + 1.0).sin()
        })
        .collect()
}

fn key(k: char, ms: u32) -> Vec<f64> {
    tone(k, ms, -20.0, -20.0)
}

fn silence_samples(n: usize) -> Vec<f64> {
    vec![0.0; n]
}

fn silence(ms: u32) -> Vec<f64> {
    silence_samples((ms * 8) as usize)
}

/// Quantises to 16 bits, then passes through the G.711 law (encode and decode), as the detector sees RTP.
fn through(law: Law, signal: &[f64]) -> Vec<i16> {
    let pcm: Vec<i16> = signal
        .iter()
        .map(|x| x.round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let mut codes = vec![0u8; pcm.len()];
    law.encode_into(&pcm, &mut codes);
    let mut out = vec![0i16; pcm.len()];
    law.decode_into(&codes, &mut out);
    out
}

/// Feeds `pcm` in chunks of `chunk` samples and collects every key reported.
fn detect(pcm: &[i16], chunk: usize) -> Vec<InbandDigit> {
    let mut det = InbandDetector::new();
    let mut found = Vec::new();
    for c in pcm.chunks(chunk) {
        found.extend(det.process(c));
        found.extend(std::iter::from_fn(|| det.poll_digit()));
    }
    found
}

fn digits(found: &[InbandDigit]) -> String {
    found.iter().map(|d| d.digit).collect()
}

fn concat(parts: &[Vec<f64>]) -> Vec<f64> {
    parts.concat()
}

#[test]
fn all_sixteen_keys_at_40_and_100_ms_through_both_laws_and_any_chunking() {
    for law in [Law::Ulaw, Law::Alaw] {
        for ms in [40, 100] {
            for k in ALL_KEYS.chars() {
                // Lead-in of 50 ms plus an odd number of samples, so the tone is not aligned to any block.
                let lead = 400 + 13;
                let pcm = through(
                    law,
                    &concat(&[silence_samples(lead), key(k, ms), silence(60)]),
                );
                for chunk in [160, 1, 7, 33, 161, 1000] {
                    let found = detect(&pcm, chunk);
                    assert_eq!(
                        digits(&found),
                        k.to_string(),
                        "{law:?} {ms} ms key {k} chunk {chunk}"
                    );
                    let err = found[0].start_sample.abs_diff(lead as u64);
                    assert!(
                        err <= 16,
                        "{law:?} {k}: start {} vs {lead}",
                        found[0].start_sample
                    );
                }
            }
        }
    }
}

#[test]
fn a_40_ms_tone_is_found_at_every_alignment_and_a_30_ms_tone_at_none() {
    for law in [Law::Ulaw, Law::Alaw] {
        for k in ALL_KEYS.chars() {
            for offset in 0..17 {
                let long = through(
                    law,
                    &concat(&[silence_samples(200 + offset), key(k, 40), silence(60)]),
                );
                assert_eq!(
                    digits(&detect(&long, 160)),
                    k.to_string(),
                    "{law:?} 40 ms {k} offset {offset}"
                );
                let short = through(
                    law,
                    &concat(&[silence_samples(200 + offset), key(k, 30), silence(60)]),
                );
                assert_eq!(
                    digits(&detect(&short, 160)),
                    "",
                    "{law:?} 30 ms {k} offset {offset}"
                );
            }
        }
    }
}

#[test]
fn quiet_keys_down_to_minus_30_dbm0_are_found_and_minus_36_dbm0_ignored() {
    for law in [Law::Ulaw, Law::Alaw] {
        for k in ALL_KEYS.chars() {
            let quiet = through(
                law,
                &concat(&[silence(20), tone(k, 60, -30.0, -30.0), silence(60)]),
            );
            assert_eq!(
                digits(&detect(&quiet, 160)),
                k.to_string(),
                "{law:?} −30 dBm0 {k}"
            );
            let too_quiet = through(
                law,
                &concat(&[silence(20), tone(k, 60, -36.0, -36.0), silence(60)]),
            );
            assert_eq!(digits(&detect(&too_quiet, 160)), "", "{law:?} −36 dBm0 {k}");
        }
    }
}

#[test]
fn loud_keys_near_full_scale_are_found() {
    for k in ALL_KEYS.chars() {
        let loud = through(
            Law::Ulaw,
            &concat(&[silence(20), tone(k, 60, -3.0, -3.0), silence(60)]),
        );
        assert_eq!(digits(&detect(&loud, 160)), k.to_string(), "−3 dBm0 {k}");
    }
}

#[test]
fn twist_limits_normal_8_db_and_reverse_4_db() {
    for law in [Law::Ulaw, Law::Alaw] {
        for k in ALL_KEYS.chars() {
            // Normal twist: the row (low-group) tone is the stronger one.
            let run = |row: f64, col: f64| {
                digits(&detect(
                    &through(
                        law,
                        &concat(&[silence(20), tone(k, 80, row, col), silence(60)]),
                    ),
                    160,
                ))
            };
            assert_eq!(run(-10.0, -18.0), k.to_string(), "{law:?} {k} normal 8 dB");
            assert_eq!(run(-10.0, -20.0), "", "{law:?} {k} normal 10 dB");
            assert_eq!(run(-14.0, -10.0), k.to_string(), "{law:?} {k} reverse 4 dB");
            assert_eq!(run(-16.0, -10.0), "", "{law:?} {k} reverse 6 dB");
        }
    }
}

#[test]
fn one_long_tone_is_one_key() {
    let pcm = through(
        Law::Ulaw,
        &concat(&[silence(20), key('5', 500), silence(100)]),
    );
    for chunk in [160, 80, 4000] {
        let found = detect(&pcm, chunk);
        assert_eq!(digits(&found), "5", "chunk {chunk}");
    }
}

#[test]
fn keys_separated_by_50_ms_pauses_are_each_reported() {
    let signal = concat(&[
        silence(20),
        key('1', 60),
        silence(50),
        key('2', 60),
        silence(50),
        key('1', 60),
        silence(50),
        key('1', 60),
        silence(100),
    ]);
    for law in [Law::Ulaw, Law::Alaw] {
        let pcm = through(law, &signal);
        let found = detect(&pcm, 160);
        assert_eq!(digits(&found), "1211", "{law:?}");
        // Tones start at 20, 130, 240 and 350 ms.
        let starts: Vec<u64> = found
            .iter()
            .map(|d| d.start_offset().as_millis() as u64)
            .collect();
        for (got, want) in starts.iter().zip([20, 130, 240, 350]) {
            assert!(got.abs_diff(want) <= 2, "{law:?}: starts {starts:?}");
        }
    }
}

#[test]
fn several_keys_in_one_call_are_all_delivered_in_order() {
    let pcm = through(
        Law::Ulaw,
        &concat(&[
            key('1', 60),
            silence(50),
            key('2', 60),
            silence(50),
            key('#', 60),
            silence(60),
        ]),
    );
    let mut det = InbandDetector::new();
    assert_eq!(det.process(&pcm).map(|d| d.digit), Some('1'));
    assert_eq!(det.poll_digit().map(|d| d.digit), Some('2'));
    assert_eq!(det.poll_digit().map(|d| d.digit), Some('#'));
    assert_eq!(det.poll_digit(), None);
    assert_eq!(det.samples_processed(), pcm.len() as u64);
}

#[test]
fn a_short_dropout_inside_a_tone_does_not_make_a_second_key() {
    // 10 ms of silence inside a key press (a lost RTP packet half) is shorter than the required pause.
    let pcm = through(
        Law::Ulaw,
        &concat(&[key('7', 100), silence(10), key('7', 100), silence(60)]),
    );
    assert_eq!(digits(&detect(&pcm, 160)), "7");
}

#[test]
fn single_tones_dial_tone_and_three_tone_chords_are_not_keys() {
    let sine = |f: f64, dbm0: f64, ms: u32| -> Vec<f64> {
        let a = dbm0_to_amplitude(dbm0);
        (0..(ms * 8) as usize)
            .map(|i| a * (2.0 * PI * f * i as f64 / RATE).sin())
            .collect()
    };
    let mix = |parts: &[Vec<f64>]| -> Vec<f64> {
        (0..parts[0].len())
            .map(|i| parts.iter().map(|p| p[i]).sum())
            .collect()
    };
    let cases = [
        ("697 Hz alone", sine(697.0, -10.0, 300)),
        ("1209 Hz alone", sine(1209.0, -10.0, 300)),
        (
            "dial tone 350+440 Hz",
            mix(&[sine(350.0, -13.0, 300), sine(440.0, -13.0, 300)]),
        ),
        (
            "697+770+1209 Hz",
            mix(&[
                sine(697.0, -15.0, 300),
                sine(770.0, -15.0, 300),
                sine(1209.0, -15.0, 300),
            ]),
        ),
        (
            "697+1209+1336 Hz",
            mix(&[
                sine(697.0, -15.0, 300),
                sine(1209.0, -15.0, 300),
                sine(1336.0, -15.0, 300),
            ]),
        ),
        // A key buried in a strong 500 Hz tone fails the share-of-energy check.
        (
            "key 1 under 500 Hz",
            mix(&[tone('1', 300, -20.0, -20.0), sine(500.0, -8.0, 300)]),
        ),
    ];
    for (name, signal) in cases {
        assert_eq!(
            digits(&detect(&through(Law::Ulaw, &signal), 160)),
            "",
            "{name}"
        );
    }
}

#[test]
fn no_false_keys_on_any_shipped_prompt() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let store = PromptStore::load_dir(&dir).unwrap_or_else(|errs| panic!("{errs:#?}"));
    // The language-neutral tones are checked too: the hold music plays for minutes on end.
    for tone in ["ringback", "hold-music"] {
        assert!(
            store.get("tones", tone).is_some(),
            "tones/{tone} is shipped"
        );
    }
    let mut checked = 0;
    for lang in store.languages() {
        for name in store.names(lang) {
            let prompt = store.get(lang, name).unwrap();
            for law in [Law::Ulaw, Law::Alaw] {
                let mut det = InbandDetector::new();
                let mut pcm = [0i16; 160];
                let mut found = Vec::new();
                for i in 0..prompt.frame_count() {
                    law.decode_into(prompt.frame(law, i).unwrap(), &mut pcm);
                    found.extend(det.process(&pcm));
                }
                assert!(
                    found.is_empty(),
                    "{lang}/{name} ({law:?}) produced {found:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} prompts shipped");
}

#[test]
fn duration_and_pause_thresholds_do_not_depend_on_level() {
    // Measured limits (every alignment within a 17-sample hop): tones of 35 ms or more are keys, 31 ms or
    // less are not; pauses of 35 ms or more separate two presses, 25 ms or less do not.
    let samples = |k: char, n: usize, dbm0: f64| -> Vec<f64> {
        let t = tone(k, 1000, dbm0, dbm0);
        t[..n].to_vec()
    };
    for dbm0 in [-3.0, -20.0, -30.0] {
        for offset in 0..17 {
            let lead = silence_samples(200 + offset);
            let run =
                |parts: &[Vec<f64>]| digits(&detect(&through(Law::Ulaw, &concat(parts)), 160));
            assert_eq!(
                run(&[lead.clone(), samples('#', 280, dbm0), silence(60)]),
                "#",
                "35 ms at {dbm0}"
            );
            assert_eq!(
                run(&[lead.clone(), samples('#', 248, dbm0), silence(60)]),
                "",
                "31 ms at {dbm0}"
            );
            let press = samples('#', 480, dbm0);
            let two = run(&[
                lead.clone(),
                press.clone(),
                silence(35),
                press.clone(),
                silence(60),
            ]);
            assert_eq!(two, "##", "35 ms pause at {dbm0} offset {offset}");
            let one = run(&[
                lead.clone(),
                press.clone(),
                silence(25),
                press.clone(),
                silence(60),
            ]);
            assert_eq!(one, "#", "25 ms pause at {dbm0} offset {offset}");
        }
    }
}

#[test]
fn a_different_key_rolled_over_without_a_pause_is_reported_once_it_lasts() {
    let long = through(
        Law::Ulaw,
        &concat(&[key('1', 100), key('2', 100), silence(60)]),
    );
    assert_eq!(digits(&detect(&long, 160)), "12");
    // 50 ms of the second key is not enough: it first has to stand in for the pause after the first.
    let short = through(
        Law::Ulaw,
        &concat(&[key('1', 100), key('2', 50), silence(60)]),
    );
    assert_eq!(digits(&detect(&short, 160)), "1");
}

#[test]
fn keys_off_frequency_by_1_5_percent_are_still_found() {
    // ITU-T Q.24 asks receivers to accept tones within ±1.5 % of the nominal frequencies.
    for factor in [0.985, 1.015] {
        for k in ALL_KEYS.chars() {
            let (fr, fc) = freqs(k);
            let a = dbm0_to_amplitude(-20.0);
            let signal: Vec<f64> = (0..480)
                .map(|i| {
                    let t = i as f64 / RATE;
                    a * (2.0 * PI * fr * factor * t).sin() + a * (2.0 * PI * fc * factor * t).sin()
                })
                .collect();
            let pcm = through(Law::Alaw, &concat(&[silence(20), signal, silence(60)]));
            assert_eq!(
                digits(&detect(&pcm, 160)),
                k.to_string(),
                "{k} at ×{factor}"
            );
        }
    }
}

#[test]
fn a_key_must_carry_most_of_the_energy() {
    use rand::{rngs::SmallRng, Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(7);
    // White noise of a given total level (uniform samples have RMS = peak/√3).
    let mut noise = |dbm0: f64, n: usize| -> Vec<f64> {
        let rms = dbm0_to_amplitude(dbm0) / 2f64.sqrt();
        (0..n)
            .map(|_| rng.gen_range(-1.0..1.0) * rms * 3f64.sqrt())
            .collect()
    };
    let add =
        |a: Vec<f64>, b: Vec<f64>| -> Vec<f64> { a.iter().zip(&b).map(|(x, y)| x + y).collect() };
    for k in ALL_KEYS.chars() {
        // Two tones at −20 dBm0 are −17 dBm0 together; noise 20 dB below that leaves the key intact.
        let clean_enough = add(key(k, 100), noise(-37.0, 800));
        let pcm = through(
            Law::Ulaw,
            &concat(&[silence(20), clean_enough, silence(60)]),
        );
        assert_eq!(
            digits(&detect(&pcm, 160)),
            k.to_string(),
            "{k} with noise 20 dB down"
        );
        // Noise 3 dB above the tones: every bin is still clear, but the tones are only a third of the energy.
        let noisy = add(key(k, 100), noise(-14.0, 800));
        let pcm = through(Law::Ulaw, &concat(&[silence(20), noisy, silence(60)]));
        assert_eq!(digits(&detect(&pcm, 160)), "", "{k} drowned in noise");
    }
}
