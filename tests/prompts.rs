//! Prompt store: WAV formats in and out, resampler quality, error reports, and the shipped prompts.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use helpline::media::codec::{ulaw_to_linear, Law};
use helpline::prompts::{resample_to_8k, Prompt, PromptError, PromptStore, FRAME_SAMPLES};

/// A fresh, empty directory unique to this test process and test name.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("helpline-prompts-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f64> {
    let n = (f64::from(rate) * seconds).round() as usize;
    (0..n)
        .map(|i| amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin())
        .collect()
}

/// Writes `mono` (in the range ±1.0 of full scale) as an integer PCM WAV, duplicated on every channel.
fn write_wav(path: &Path, rate: u32, bits: u16, channels: u16, mono: &[f64]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in mono {
        for _ in 0..channels {
            if bits == 8 {
                w.write_sample((x * 127.0).round() as i8).unwrap();
            } else {
                w.write_sample((x * 32767.0).round() as i16).unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

fn decode_ulaw(p: &Prompt) -> Vec<i16> {
    (0..p.frame_count())
        .flat_map(|i| {
            p.frame(Law::Ulaw, i)
                .unwrap()
                .iter()
                .map(|&c| ulaw_to_linear(c))
        })
        .collect()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn every_supported_format_loads_to_the_right_length() {
    let dir = temp_dir("formats");
    let tone = |rate| sine(440.0, rate, 0.5, 0.5);
    for rate in [8000, 16000, 22050, 44100, 48000] {
        for bits in [8, 16] {
            for channels in [1, 2] {
                write_wav(
                    &dir.join(format!("xx/r{rate}-b{bits}-c{channels}.wav")),
                    rate,
                    bits,
                    channels,
                    &tone(rate),
                );
            }
        }
    }
    let store = PromptStore::load_dir(&dir).unwrap();
    assert_eq!(store.languages(), ["xx"]);
    assert_eq!(store.names("xx").len(), 20);
    for name in store.names("xx") {
        let p = store.get("xx", name).unwrap();
        // 0.5 s at 8 kHz is 4000 samples = exactly 25 frames of 20 ms.
        assert_eq!(p.sample_count(), 4000, "{name}");
        assert_eq!(p.frame_count(), 25, "{name}");
        assert_eq!(p.duration(), Duration::from_millis(500), "{name}");
        // The tone survives with its level: 0.5 of full scale is an RMS of about 11585 (8-bit: 0.5·127·256/√2).
        let level = rms(&decode_ulaw(&p)[400..3600]);
        assert!((level - 11_500.0).abs() < 400.0, "{name}: rms {level}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn frames_are_padded_with_silence_and_end_cleanly() {
    let pcm = vec![1000i16; 170]; // one full frame and 10 samples of the next
    let p = Prompt::from_samples("en", "short", &pcm);
    assert_eq!(p.frame_count(), 2);
    assert_eq!(p.duration(), Duration::from_millis(40));
    for law in [Law::Ulaw, Law::Alaw] {
        let last = p.frame(law, 1).unwrap();
        assert_eq!(last.len(), FRAME_SAMPLES);
        assert!(last[..10].iter().all(|&c| c != law.silence()));
        assert!(last[10..].iter().all(|&c| c == law.silence()));
        assert!(p.frame(law, 2).is_none());
        assert!(p.frame(law, usize::MAX).is_none());
    }
}

/// Frequency estimated from the positive-going zero crossings over the whole signal.
fn frequency(x: &[i16], rate: f64) -> f64 {
    let ups: Vec<usize> = (1..x.len())
        .filter(|&i| x[i - 1] < 0 && x[i] >= 0)
        .collect();
    let (first, last) = (ups[0], *ups.last().unwrap());
    (ups.len() - 1) as f64 * rate / (last - first) as f64
}

#[test]
fn resampling_44k1_keeps_a_1khz_tone_at_1khz_and_at_level() {
    let input: Vec<i16> = sine(1000.0, 44100, 1.0, 0.5)
        .iter()
        .map(|x| (x * 32767.0) as i16)
        .collect();
    let out = resample_to_8k(&input, 44100);
    assert_eq!(out.len(), 8000);
    let f = frequency(&out[100..7900], 8000.0);
    assert!((f - 1000.0).abs() < 0.5, "frequency {f}");
    let gain_db = 20.0 * (rms(&out[100..7900]) / rms(&input[1000..43000])).log10();
    assert!(gain_db.abs() < 0.1, "pass-band gain {gain_db} dB");
}

#[test]
fn resampling_22k05_keeps_speech_band_tones() {
    for freq in [300.0, 2000.0, 3000.0] {
        let input: Vec<i16> = sine(freq, 22050, 0.5, 0.5)
            .iter()
            .map(|x| (x * 32767.0) as i16)
            .collect();
        let out = resample_to_8k(&input, 22050);
        assert_eq!(out.len(), 4000);
        let f = frequency(&out[100..3900], 8000.0);
        assert!((f - freq).abs() < 1.0, "{freq} Hz came out at {f}");
        let gain_db = 20.0 * (rms(&out[100..3900]) / rms(&input[500..10500])).log10();
        assert!(gain_db.abs() < 0.5, "{freq} Hz: gain {gain_db} dB");
    }
}

#[test]
fn resampling_48k_removes_a_6khz_tone_that_would_alias() {
    // Without a low-pass, 6 kHz would fold to 2 kHz at 8 kHz sampling with its full level.
    let input: Vec<i16> = sine(6000.0, 48000, 0.5, 0.5)
        .iter()
        .map(|x| (x * 32767.0) as i16)
        .collect();
    let out = resample_to_8k(&input, 48000);
    let atten_db = 20.0 * (rms(&out[100..3900]) / rms(&input)).log10();
    assert!(atten_db < -40.0, "6 kHz only attenuated by {atten_db} dB");
    // The same holds end to end through a WAV file and the μ-law frames.
    let dir = temp_dir("alias");
    write_wav(
        &dir.join("xx/hf.wav"),
        48000,
        16,
        1,
        &sine(6000.0, 48000, 0.5, 0.5),
    );
    let store = PromptStore::load_dir(&dir).unwrap();
    let decoded = decode_ulaw(&store.get("xx", "hf").unwrap());
    let atten_db = 20.0 * (rms(&decoded[100..3900]) / rms(&input)).log10();
    assert!(
        atten_db < -40.0,
        "6 kHz through the store only attenuated by {atten_db} dB"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_bad_file_is_reported_at_once_with_its_name_and_reason() {
    let dir = temp_dir("bad");
    let tone = sine(440.0, 8000, 0.1, 0.5);
    write_wav(&dir.join("en/good.wav"), 8000, 16, 1, &tone);
    write_wav(&dir.join("en/rate.wav"), 11025, 16, 1, &tone);
    write_wav(&dir.join("en/three.wav"), 8000, 16, 3, &tone);
    write_wav(&dir.join("en/deep.wav"), 8000, 24, 1, &[]);
    let float_spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    std::fs::create_dir_all(dir.join("es")).unwrap();
    let mut w = hound::WavWriter::create(dir.join("es/float.wav"), float_spec).unwrap();
    w.write_sample(0.25f32).unwrap();
    w.finalize().unwrap();
    std::fs::write(dir.join("es/text.wav"), "this is not audio").unwrap();
    write_wav(&dir.join("es/empty.wav"), 8000, 16, 1, &[]);
    std::fs::write(dir.join("catalog.tsv"), "en\tgood\tignored at top level\n").unwrap();
    std::fs::write(dir.join("en/readme.txt"), "ignored: not a .wav").unwrap();

    let errors = PromptStore::load_dir(&dir).unwrap_err();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expect = [
        ("en/deep.wav", "unsupported sample format 24-bit integer"),
        ("en/rate.wav", "unsupported sample rate 11025 Hz"),
        ("en/three.wav", "unsupported channel count 3"),
        ("es/empty.wav", "contains no audio"),
        ("es/float.wav", "unsupported sample format 32-bit float"),
        ("es/text.wav", "not a readable WAV file"),
    ];
    assert_eq!(messages.len(), expect.len(), "{messages:#?}");
    for ((file, reason), msg) in expect.iter().zip(&messages) {
        assert!(
            msg.contains(&dir.join(file).display().to_string()),
            "{msg} should name {file}"
        );
        assert!(msg.contains(reason), "{msg} should say {reason}");
    }
    assert!(matches!(
        errors[1],
        PromptError::UnsupportedSampleRate { rate: 11025, .. }
    ));
    // The single-file check used by `helpline check` agrees with the directory loader.
    assert!(PromptStore::check_file(&dir.join("en/good.wav")).is_ok());
    let err = PromptStore::check_file(&dir.join("en/rate.wav")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: unsupported sample rate 11025 Hz",
            dir.join("en/rate.wav").display()
        )
    );
    assert!(matches!(
        PromptStore::check_file(&dir.join("en/missing.wav")),
        Err(PromptError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_directory_is_one_error_naming_it() {
    let dir = temp_dir("missing").join("nope");
    let errors = PromptStore::load_dir(&dir).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("nope"));
}

#[test]
fn store_clones_share_prompts_and_insert_does_not_disturb_clones() {
    let mut store = PromptStore::default();
    store.insert(Prompt::from_samples("en", "a", &[0; 160]));
    let snapshot = store.clone();
    store.insert(Prompt::from_samples("de", "b", &[0; 320]));
    assert!(Arc::ptr_eq(
        &store.get("en", "a").unwrap(),
        &snapshot.get("en", "a").unwrap()
    ));
    assert_eq!(store.languages(), ["de", "en"]);
    assert_eq!(snapshot.languages(), ["en"]);
    assert!(snapshot.get("de", "b").is_none());
    assert_eq!(store.get("de", "b").unwrap().frame_count(), 2);
    assert!(store.names("fr").is_empty());
}

#[test]
fn shipped_prompts_load_and_cover_the_first_call_flow() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let store = PromptStore::load_dir(&dir).unwrap_or_else(|errs| panic!("{errs:#?}"));
    let mut needed = vec![
        "welcome",
        "you-pressed",
        "goodbye",
        "no-input",
        "digit-star",
        "digit-pound",
    ];
    let digits: Vec<String> = (0..10).map(|d| format!("digit-{d}")).collect();
    needed.extend(digits.iter().map(String::as_str));
    for name in needed {
        let p = store
            .get("en", name)
            .unwrap_or_else(|| panic!("en/{name} missing"));
        assert!(
            p.duration() > Duration::from_millis(300),
            "en/{name} too short"
        );
        assert!(p.duration() < Duration::from_secs(10), "en/{name} too long");
        // Loud enough to hear: speech RMS well above the μ-law noise floor.
        assert!(rms(&decode_ulaw(&p)) > 500.0, "en/{name} is nearly silent");
    }
}
