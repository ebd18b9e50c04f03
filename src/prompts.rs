//! Prompt store: loads every `prompts/<lang>/<name>.wav` once, converts it to 8 kHz mono and encodes it
//! to 20 ms G.711 frames in both μ-law and A-law. `prompts/tones/` ([`TONES`]) holds the sounds that
//! are the same in every language (call-progress tones); they load like a language of their own.
//!
//! This is an I/O module (it reads files, at start-up and on reload, never while a call waits). It does not
//! pace or send anything: `media` plays the frames it hands out. Callers share prompts as `Arc<Prompt>`, so
//! starting a prompt on a call copies nothing.
//!
//! Accepted input: integer PCM WAV, 8 or 16 bit, mono or stereo (channels are averaged), at 8000, 16000,
//! 22050, 44100 or 48000 Hz. Other rates are resampled to 8 kHz with a windowed-sinc low-pass FIR (cut-off
//! 3.5 kHz, Blackman window, 3 ms half-width), evaluated as a polyphase filter for the exact rational ratio.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::media::codec::Law;

/// The directory under `prompts/` (and the "language" in [`PromptStore::get`]) of language-neutral
/// sounds: call-progress tones such as the ringback a routed caller hears while an agent's phone rings.
pub const TONES: &str = "tones";

/// Samples in one 20 ms frame at 8 kHz (one RTP packet of G.711).
pub const FRAME_SAMPLES: usize = 160;

/// The sample rate every prompt is converted to.
pub const OUTPUT_RATE: u32 = 8000;

/// Input sample rates a prompt WAV may use.
pub const SUPPORTED_RATES: [u32; 5] = [8000, 16000, 22050, 44100, 48000];

/// Low-pass cut-off of the resampler (the −6 dB point), below the 4 kHz Nyquist limit of the output.
const CUTOFF_HZ: f64 = 3500.0;
/// Half-width of the FIR kernel in seconds; with a Blackman window this gives a transition band of about
/// 0.9 kHz (3.05–3.95 kHz) and more than 70 dB of stop-band attenuation at every supported rate.
const KERNEL_HALF_WIDTH_S: f64 = 0.003;

/// Why a prompt file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file or directory could not be read.
    #[error("{}: cannot read", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable WAV file (bad header, truncated data, unknown encoding).
    #[error("{}: not a readable WAV file", path.display())]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What the WAV reader reported.
        #[source]
        source: hound::Error,
    },
    /// The sample rate is not one of [`SUPPORTED_RATES`].
    #[error("{}: unsupported sample rate {rate} Hz", path.display())]
    UnsupportedSampleRate {
        /// The file.
        path: PathBuf,
        /// The rate found in the header.
        rate: u32,
    },
    /// The samples are floating point.
    #[error("{}: unsupported sample format {bits}-bit float (use 8 or 16-bit integer PCM)", path.display())]
    FloatSamples {
        /// The file.
        path: PathBuf,
        /// Bits per sample found in the header.
        bits: u16,
    },
    /// The samples are integers of a width other than 8 or 16 bits.
    #[error("{}: unsupported sample format {bits}-bit integer (use 8 or 16-bit integer PCM)", path.display())]
    UnsupportedBitDepth {
        /// The file.
        path: PathBuf,
        /// Bits per sample found in the header.
        bits: u16,
    },
    /// The file has neither one nor two channels.
    #[error("{}: unsupported channel count {channels} (use mono or stereo)", path.display())]
    UnsupportedChannels {
        /// The file.
        path: PathBuf,
        /// Channels found in the header.
        channels: u16,
    },
    /// The file holds no samples at all.
    #[error("{}: contains no audio", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The language directory or the file name is not valid UTF-8, so it cannot be referenced by menus.
    #[error("{}: language or prompt name is not valid UTF-8", path.display())]
    BadName {
        /// The file or directory.
        path: PathBuf,
    },
}

/// One prompt, converted and encoded once, shared between calls as `Arc<Prompt>`.
pub struct Prompt {
    /// Language code, the name of the directory under `prompts/` (e.g. `en`).
    pub lang: String,
    /// Prompt name, the file stem (e.g. `welcome` for `welcome.wav`).
    pub name: String,
    /// μ-law codes, `frame_count * FRAME_SAMPLES` long, padded with silence.
    ulaw: Box<[u8]>,
    /// A-law codes, same layout as `ulaw`.
    alaw: Box<[u8]>,
    /// Number of 8 kHz samples before padding.
    samples: usize,
}

impl Prompt {
    /// Builds a prompt from 8 kHz mono samples: pads to whole 20 ms frames with silence and encodes both laws.
    pub fn from_samples(lang: &str, name: &str, pcm_8k: &[i16]) -> Prompt {
        let frames = pcm_8k.len().div_ceil(FRAME_SAMPLES);
        let len = frames * FRAME_SAMPLES;
        let mut ulaw = vec![Law::Ulaw.silence(); len].into_boxed_slice();
        let mut alaw = vec![Law::Alaw.silence(); len].into_boxed_slice();
        Law::Ulaw.encode_into(pcm_8k, &mut ulaw);
        Law::Alaw.encode_into(pcm_8k, &mut alaw);
        Prompt {
            lang: lang.to_owned(),
            name: name.to_owned(),
            ulaw,
            alaw,
            samples: pcm_8k.len(),
        }
    }

    /// The encoded frame `index` (exactly [`FRAME_SAMPLES`] bytes), or `None` past the end.
    pub fn frame(&self, law: Law, index: usize) -> Option<&[u8]> {
        let codes = match law {
            Law::Ulaw => &self.ulaw,
            Law::Alaw => &self.alaw,
        };
        let start = index.checked_mul(FRAME_SAMPLES)?;
        codes.get(start..start.checked_add(FRAME_SAMPLES)?)
    }

    /// Number of 20 ms frames.
    pub fn frame_count(&self) -> usize {
        self.ulaw.len() / FRAME_SAMPLES
    }

    /// Playing time of all frames, including the silence that pads the last one (`frame_count` × 20 ms).
    pub fn duration(&self) -> Duration {
        Duration::from_millis(20) * u32::try_from(self.frame_count()).unwrap_or(u32::MAX)
    }

    /// Number of 8 kHz audio samples before padding.
    pub fn sample_count(&self) -> usize {
        self.samples
    }
}

impl std::fmt::Debug for Prompt {
    // The encoded audio is tens of kilobytes; show what identifies the prompt instead.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompt")
            .field("lang", &self.lang)
            .field("name", &self.name)
            .field("frames", &self.frame_count())
            .field("samples", &self.samples)
            .finish()
    }
}

type Catalog = BTreeMap<String, BTreeMap<String, Arc<Prompt>>>;

/// Every loaded prompt, by language and name. Cloning is cheap (one `Arc`).
#[derive(Clone, Default, Debug)]
pub struct PromptStore {
    prompts: Arc<Catalog>,
}

impl PromptStore {
    /// Loads every `<dir>/<lang>/<name>.wav`. Files in `dir` itself (such as `catalog.tsv`) and files not
    /// ending in `.wav` are ignored. On failure returns every bad file at once, in path order.
    pub fn load_dir(dir: &Path) -> Result<PromptStore, Vec<PromptError>> {
        let mut errors = Vec::new();
        let mut store = PromptStore::default();
        let lang_dirs = match sorted_entries(dir) {
            Ok(entries) => entries,
            Err(e) => return Err(vec![e]),
        };
        for lang_dir in lang_dirs.into_iter().filter(|p| p.is_dir()) {
            let Some(lang) = lang_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                errors.push(PromptError::BadName { path: lang_dir });
                continue;
            };
            let files = match sorted_entries(&lang_dir) {
                Ok(files) => files,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for file in files.into_iter().filter(|p| is_wav(p) && p.is_file()) {
                let Some(name) = file.file_stem().and_then(|n| n.to_str()).map(str::to_owned)
                else {
                    errors.push(PromptError::BadName { path: file });
                    continue;
                };
                match read_8k_mono(&file) {
                    Ok(pcm) => store.insert(Prompt::from_samples(&lang, &name, &pcm)),
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(store)
        } else {
            Err(errors)
        }
    }

    /// The prompt `name` in language `lang`.
    pub fn get(&self, lang: &str, name: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(lang)?.get(name).cloned()
    }

    /// Adds (or replaces) a prompt; meant for tests and for building a store without files.
    pub fn insert(&mut self, p: Prompt) {
        Arc::make_mut(&mut self.prompts)
            .entry(p.lang.clone())
            .or_default()
            .insert(p.name.clone(), Arc::new(p));
    }

    /// Language codes that have at least one prompt, sorted.
    pub fn languages(&self) -> Vec<&str> {
        self.prompts.keys().map(String::as_str).collect()
    }

    /// Prompt names available in `lang`, sorted (empty for an unknown language).
    pub fn names(&self, lang: &str) -> Vec<&str> {
        self.prompts
            .get(lang)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Total number of prompts over all languages.
    pub fn len(&self) -> usize {
        self.prompts.values().map(BTreeMap::len).sum()
    }

    /// True when no prompt is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that one file would load (format, rate, channels, readable samples) without keeping it.
    pub fn check_file(path: &Path) -> Result<(), PromptError> {
        read_8k_mono(path).map(|_| ())
    }
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, PromptError> {
    let io_err = |source| PromptError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        paths.push(entry.map_err(io_err)?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Reads one WAV file and returns its audio as 8 kHz mono 16-bit samples.
pub fn read_8k_mono(path: &Path) -> Result<Vec<i16>, PromptError> {
    let not_wav = |source| PromptError::NotWav {
        path: path.to_owned(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            PromptError::Io {
                path: path.to_owned(),
                source,
            }
        }
        other => not_wav(other),
    })?;
    let spec = reader.spec();
    let path_buf = || path.to_owned();
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, bits) => {
            return Err(PromptError::FloatSamples {
                path: path_buf(),
                bits,
            })
        }
        (hound::SampleFormat::Int, 8 | 16) => {}
        (hound::SampleFormat::Int, bits) => {
            return Err(PromptError::UnsupportedBitDepth {
                path: path_buf(),
                bits,
            })
        }
    }
    if !(1..=2).contains(&spec.channels) {
        return Err(PromptError::UnsupportedChannels {
            path: path_buf(),
            channels: spec.channels,
        });
    }
    if !SUPPORTED_RATES.contains(&spec.sample_rate) {
        return Err(PromptError::UnsupportedSampleRate {
            path: path_buf(),
            rate: spec.sample_rate,
        });
    }
    // 8-bit samples come back from hound as −128..=127; scale them to the 16-bit range.
    let shift = if spec.bits_per_sample == 8 { 8 } else { 0 };
    let channels = usize::from(spec.channels);
    // The header's length is only a hint (a damaged file may claim anything), so cap the reservation.
    let mut mono = Vec::with_capacity((reader.duration() as usize).min(1 << 22));
    let mut acc = 0i32;
    for (i, sample) in reader.into_samples::<i16>().enumerate() {
        acc += i32::from(sample.map_err(not_wav)?) << shift;
        if (i + 1) % channels == 0 {
            // Average the channels; the mean of i16 values always fits in i16.
            mono.push((acc / channels as i32) as i16);
            acc = 0;
        }
    }
    if mono.is_empty() {
        return Err(PromptError::Empty { path: path_buf() });
    }
    Ok(resample_to_8k(&mono, spec.sample_rate))
}

/// Converts mono samples at `rate` Hz to 8 kHz with a windowed-sinc low-pass (cut-off 3.5 kHz).
///
/// 8 kHz input is returned unchanged. The ratio `rate / 8000` is reduced to `p / q`; output sample `n` sits
/// at input position `n·p/q`, whose fractional part is one of `q` phases, and each phase has its own
/// precomputed, DC-normalised FIR kernel.
pub fn resample_to_8k(input: &[i16], rate: u32) -> Vec<i16> {
    if rate == OUTPUT_RATE || rate == 0 || input.is_empty() {
        return input.to_vec();
    }
    let g = gcd(rate, OUTPUT_RATE);
    let (p, q) = (u64::from(rate / g), u64::from(OUTPUT_RATE / g));
    let fs = f64::from(rate);
    let half = (KERNEL_HALF_WIDTH_S * fs).ceil() as i64;
    let fc = CUTOFF_HZ / fs; // cut-off in cycles per input sample
    let kernels: Vec<Vec<f64>> = (0..q)
        .map(|phase| {
            let frac = phase as f64 / q as f64;
            let mut k: Vec<f64> = (-half..=half)
                .map(|j| {
                    let t = j as f64 - frac; // distance from the output instant, in input samples
                    let u = t / (half as f64 + 1.0);
                    let window = 0.42 + 0.5 * (PI * u).cos() + 0.08 * (2.0 * PI * u).cos();
                    let x = 2.0 * fc * t;
                    let sinc = if x.abs() < 1e-12 {
                        1.0
                    } else {
                        (PI * x).sin() / (PI * x)
                    };
                    2.0 * fc * sinc * window
                })
                .collect();
            let sum: f64 = k.iter().sum();
            k.iter_mut().for_each(|c| *c /= sum);
            k
        })
        .collect();
    let out_len = (input.len() as u64 * q).div_ceil(p) as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len as u64 {
        let pos = n * p;
        let centre = (pos / q) as i64;
        let Some(kernel) = kernels.get((pos % q) as usize) else {
            break;
        };
        let mut acc = 0.0;
        for (j, c) in kernel.iter().enumerate() {
            let idx = centre + j as i64 - half;
            if let Some(&x) = usize::try_from(idx).ok().and_then(|i| input.get(i)) {
                acc += f64::from(x) * c;
            }
        }
        out.push(acc.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl crate::ivr::PromptCheck for PromptStore {
    /// A menu's prompt is usable when its file was found and decoded at load time (undecodable files are
    /// reported by [`PromptStore::load_dir`] itself).
    fn check(&self, lang: &str, name: &str) -> Result<(), String> {
        match self.get(lang, name) {
            Some(_) => Ok(()),
            None => Err(format!("prompts/{lang}/{name}.wav is missing")),
        }
    }
}
