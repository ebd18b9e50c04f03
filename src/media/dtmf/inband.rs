//! In-band DTMF detector: finds the 16 DTMF keys in 8 kHz linear audio (decoded G.711) and reports each key
//! press once, with the sample index where its tone began.
//!
//! It does not decode G.711, read RTP or the clock, or handle RFC 4733 telephone-events: callers feed it
//! decoded samples in chunks of any size, and the sample count is its clock. No allocation happens after
//! [`InbandDetector::new`].
//!
//! # Method
//!
//! The 8 DTMF frequencies are measured with a DFT over windows of 102 samples (12.75 ms, bins 78 Hz wide,
//! so each neighbouring DTMF frequency sits near the first null of the other). Windows slide by 17 samples:
//! the detector keeps the complex DFT of each 17-sample sub-block and combines the last six with a phase
//! rotation, which gives the exact 102-point DFT (the Goertzel result, with phase) every 2.125 ms at the
//! cost of one pass over the samples. A window holds a key when all of these hold:
//!
//! * the strongest row tone and the strongest column tone are each at least [`MIN_TONE_DBM0`];
//! * twist and group margin are roughly within limits (with [`WINDOW_SLACK_DB`] of slack; the exact limits
//!   are applied to the average over the whole run of windows, see below);
//! * the two tones carry at least [`MIN_TONE_SHARE`] of the window's energy (rejects speech and music);
//! * the window's thirds hold comparable energy, so a window only partly covered by a tone does not count
//!   (this is what keeps the duration check independent of the level).
//!
//! A key is reported after [`ON_WINDOWS`] consecutive windows agree and the tone energies averaged over
//! those windows pass the exact limits: the row (low-group) tone at most [`NORMAL_TWIST_DB`] above the
//! column (high-group) tone, the column tone at most [`REVERSE_TWIST_DB`] above the row tone, and each
//! group's second-strongest frequency at least [`GROUP_MARGIN_DB`] below its strongest. Averaging matters:
//! in one short window the strong tone's side lobes beat against the weak tone and move the measured levels
//! by more than ±1 dB, and at 8 dB of twist they lift a neighbouring bin to within 8 dB of the weak tone.
//!
//! A reported key is released after [`OFF_WINDOWS`] consecutive windows without it, so one long tone is
//! one key and a new key (even the same one) needs a pause first. A different key that follows with no
//! pause (key roll-over) counts as such a pause for the first one, so it is reported after about 70 ms.
//!
//! Measured on tones and pauses at every alignment, at −3, −20 and −30 dBm0 (see `tests/inband_dtmf.rs`):
//! tones of 35 ms or more are always keys and tones of 31 ms or less never are (so 40 ms is accepted and
//! 30 ms rejected); pauses of 35 ms or more always separate two presses and pauses of 25 ms or less never
//! do (a short dropout inside a press does not make a second key). The reported start is within 2 ms.
//!
//! # Levels
//!
//! Levels are in dBm0 per tone with the G.711 convention that a full-scale sine (peak 32767 here) is
//! +3.17 dBm0; so 0 dBm0 is a sine of peak ≈ 22 745 and −20 dBm0 one of peak ≈ 2 275.

use std::f32::consts::PI;

/// Row (low-group) frequencies in Hz, top to bottom of the keypad.
pub const ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high-group) frequencies in Hz, left to right of the keypad.
pub const COL_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keys by row then column.
pub const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Level of a full-scale sine in dBm0 (ITU-T G.711 digital milliwatt convention).
pub const FULL_SCALE_SINE_DBM0: f64 = 3.17;
/// Quietest tone (per frequency) that is accepted: 8 dB below the usual −25 dBm0 sensitivity requirement.
pub const MIN_TONE_DBM0: f64 = -33.0;
/// Largest accepted excess of the row tone over the column tone (8 dB, plus 1 dB for measurement error).
pub const NORMAL_TWIST_DB: f64 = 9.0;
/// Largest accepted excess of the column tone over the row tone (4 dB, plus 1 dB for measurement error).
pub const REVERSE_TWIST_DB: f64 = 5.0;
/// How far below the strongest tone of a group the second-strongest must be (on the run average).
pub const GROUP_MARGIN_DB: f64 = 8.0;
/// How far a single window may miss the twist and group-margin limits; the run average must meet them.
pub const WINDOW_SLACK_DB: f64 = 3.0;
/// Share of the window's energy that the two tones must carry.
pub const MIN_TONE_SHARE: f32 = 0.7;
/// Consecutive agreeing windows needed to report a key (102 + 11·17 = 289 samples ≈ 36 ms of full windows).
pub const ON_WINDOWS: u32 = 12;
/// Consecutive windows without the key needed to release it (19 · 17 samples ≈ 40 ms of decisions; windows
/// that straddle the tone's end already fail, so the silence needed is shorter, 26–35 ms).
pub const OFF_WINDOWS: u32 = 19;

/// Samples per sub-block; windows advance by this much.
const SUB: usize = 17;
/// Sub-blocks per window.
const SUBS: usize = 6;
/// Samples per window.
const WINDOW: usize = SUB * SUBS;
/// Keys found within one `process` call beyond the first wait here for [`InbandDetector::poll_digit`].
const PENDING: usize = 8;
/// Sample rate the detector expects.
const RATE: f32 = 8000.0;

/// Peak amplitude (16-bit linear) of a sine at `dbm0`.
pub fn dbm0_to_amplitude(dbm0: f64) -> f64 {
    32767.0 * 10f64.powf((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0)
}

/// One detected key press.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InbandDigit {
    /// The key: '0'–'9', '*', '#', 'A'–'D'.
    pub digit: char,
    /// Index in the fed stream (counting from the first sample ever fed) where the tone began, ±2 ms.
    pub start_sample: u64,
}

impl InbandDigit {
    /// Offset of the tone's start from the first sample fed, at 8 kHz.
    pub fn start_offset(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.start_sample.saturating_mul(125))
    }
}

/// A key seen in consecutive windows but not reported yet.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    key: char,
    windows: u32,
    /// Where the first window of the run began.
    start: u64,
    /// Energies of the two tones and of each group's runner-up, summed over the run.
    sums: Energies,
}

/// Energies of the detected row and column tones and of the second-strongest frequency in each group.
#[derive(Clone, Copy, Debug, Default)]
struct Energies {
    row: f32,
    col: f32,
    row_second: f32,
    col_second: f32,
}

/// What one window holds: a key and its two tone energies.
#[derive(Clone, Copy, Debug)]
struct WindowKey {
    key: char,
    energies: Energies,
}

/// Complex value as (re, im).
type Cplx = (f32, f32);

/// The detector's fixed tables, computed once for every session (184 `sin`/`cos` and 1.5 kB each
/// were a measurable share of a call's setup on the media thread).
#[derive(Debug)]
struct Tables {
    /// `e^{-jωn}` for each frequency and each position in a sub-block.
    basis: [[Cplx; SUB]; 8],
    /// `e^{-jω·SUB·m}`: moves sub-block `m` (0 = oldest) to its place in the window.
    rotation: [[Cplx; SUBS]; 8],
}

static TABLES: std::sync::LazyLock<Tables> = std::sync::LazyLock::new(|| {
    let mut basis = [[(0.0, 0.0); SUB]; 8];
    let mut rotation = [[(0.0, 0.0); SUBS]; 8];
    for (k, hz) in ROW_HZ.iter().chain(COL_HZ.iter()).enumerate() {
        let w = 2.0 * PI * hz / RATE;
        for (n, b) in basis[k].iter_mut().enumerate() {
            let phase = w * n as f32;
            *b = (phase.cos(), -phase.sin());
        }
        for (m, r) in rotation[k].iter_mut().enumerate() {
            // Reduce the phase in f64 first: w·SUB·m reaches ~40 rad, where f32 loses digits.
            let phase = (f64::from(w) * (SUB * m) as f64).rem_euclid(2.0 * std::f64::consts::PI);
            *r = (phase.cos() as f32, -phase.sin() as f32);
        }
    }
    Tables { basis, rotation }
});

/// Streaming DTMF detector for 8 kHz linear samples; see the module documentation for the method.
///
/// A sub-block's DFT is computed only when a window that holds it has the energy a key needs (each
/// tone's energy is at most twice the window's, so a quieter window cannot pass the level check): the
/// silence and line noise a caller sends while listening cost one multiply-add per sample, not eight
/// complex ones. The DFT, when computed, is the same arithmetic in the same order as before.
#[derive(Clone, Debug)]
pub struct InbandDetector {
    tables: &'static Tables,
    /// Energy (sum of squares) of the sub-block being filled.
    acc_energy: f32,
    /// Position in the sub-block being filled.
    pos: usize,
    /// Slot of the ring the sub-block being filled goes to.
    next: usize,
    /// Samples of the last `SUBS` sub-blocks (and of the one being filled, in slot `next`).
    samples_ring: [[i16; SUB]; SUBS],
    /// DFTs of the last `SUBS` completed sub-blocks, a ring indexed from `head` (oldest); valid where
    /// `dft_done` says so.
    subs: [[Cplx; 8]; SUBS],
    dft_done: [bool; SUBS],
    /// Energies of the same sub-blocks.
    sub_energy: [f32; SUBS],
    head: usize,
    /// Completed sub-blocks so far, saturating at `SUBS`.
    filled: usize,
    /// Samples fed so far.
    samples: u64,
    /// Key seen in the last windows, in a row.
    candidate: Option<Candidate>,
    /// Key reported and not yet released, and how many windows in a row have lacked it.
    active: Option<(char, u32)>,
    pending: [Option<InbandDigit>; PENDING],
    pending_len: usize,
    min_tone_energy: f32,
    normal_twist: f32,
    reverse_twist: f32,
    window_slack: f32,
    group_margin: f32,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    /// A detector at sample index 0 with no key in progress.
    pub fn new() -> Self {
        let amp = dbm0_to_amplitude(MIN_TONE_DBM0);
        let db = |d: f64| 10f64.powf(d / 10.0) as f32;
        InbandDetector {
            tables: &TABLES,
            acc_energy: 0.0,
            pos: 0,
            next: 0,
            samples_ring: [[0; SUB]; SUBS],
            subs: [[(0.0, 0.0); 8]; SUBS],
            dft_done: [false; SUBS],
            sub_energy: [0.0; SUBS],
            head: 0,
            filled: 0,
            samples: 0,
            candidate: None,
            active: None,
            pending: [None; PENDING],
            pending_len: 0,
            // A sine of peak A carries A²·N/2 of energy over N samples.
            min_tone_energy: (amp * amp * WINDOW as f64 / 2.0) as f32,
            normal_twist: db(NORMAL_TWIST_DB),
            reverse_twist: db(REVERSE_TWIST_DB),
            window_slack: db(WINDOW_SLACK_DB),
            group_margin: db(GROUP_MARGIN_DB),
        }
    }

    /// Feeds the next samples of the stream; returns the first key completed during this call, if any.
    ///
    /// Further keys completed in the same call (only possible when feeding more than about 60 ms at once)
    /// wait for [`poll_digit`](Self::poll_digit); up to 8 are kept, later ones are dropped.
    pub fn process(&mut self, samples: &[i16]) -> Option<InbandDigit> {
        for &s in samples {
            self.samples_ring[self.next][self.pos] = s;
            let x = f32::from(s);
            self.acc_energy += x * x;
            self.pos += 1;
            self.samples += 1;
            if self.pos == SUB {
                self.finish_sub_block();
            }
        }
        self.poll_digit()
    }

    /// Takes the oldest key not yet returned.
    pub fn poll_digit(&mut self) -> Option<InbandDigit> {
        if self.pending_len == 0 {
            return None;
        }
        let first = self.pending[0];
        self.pending.copy_within(1.., 0);
        self.pending_len -= 1;
        self.pending[self.pending_len] = None;
        first
    }

    /// Number of samples fed so far.
    pub fn samples_processed(&self) -> u64 {
        self.samples
    }

    fn finish_sub_block(&mut self) {
        let slot = self.next;
        self.sub_energy[slot] = self.acc_energy;
        self.dft_done[slot] = false;
        if self.filled < SUBS {
            self.filled += 1;
        } else {
            self.head = (self.head + 1) % SUBS;
        }
        self.next = (self.head + self.filled) % SUBS;
        self.acc_energy = 0.0;
        self.pos = 0;
        if self.filled == SUBS {
            let key = self.classify_window();
            let window_start = self.samples - WINDOW as u64;
            self.track(key, window_start);
        }
    }

    /// The DFT of each sub-block of the window that has none yet (per frequency, samples in order).
    fn compute_dfts(&mut self) {
        let basis = &self.tables.basis;
        for slot in 0..SUBS {
            if self.dft_done[slot] {
                continue;
            }
            let samples = &self.samples_ring[slot];
            for (acc, b) in self.subs[slot].iter_mut().zip(basis.iter()) {
                let mut a = (0.0f32, 0.0f32);
                for (&s, &(c, si)) in samples.iter().zip(b.iter()) {
                    let x = f32::from(s);
                    a.0 += x * c;
                    a.1 += x * si;
                }
                *acc = a;
            }
            self.dft_done[slot] = true;
        }
    }

    /// The key held by the current window, if it passes every check.
    fn classify_window(&mut self) -> Option<WindowKey> {
        let total: f32 = self.sub_energy.iter().sum();
        // |X|² ≤ N·Σx² (Cauchy–Schwarz), so a tone's energy |X|²·2/N is at most twice the window's:
        // below half the minimum no tone can pass the level check (the margin covers rounding).
        if 2.0 * total * 1.001 < self.min_tone_energy {
            return None;
        }
        self.compute_dfts();
        let mut tone = [0f32; 8];
        for (k, t) in tone.iter_mut().enumerate() {
            let (mut re, mut im) = (0.0f32, 0.0f32);
            for m in 0..SUBS {
                let (a, b) = self.subs[(self.head + m) % SUBS][k];
                let (c, d) = self.tables.rotation[k][m];
                re += a * c - b * d;
                im += a * d + b * c;
            }
            // |X|²·2/N is the energy the tone contributes to the window (Parseval for one sinusoid).
            *t = (re * re + im * im) * 2.0 / WINDOW as f32;
        }
        let (row, row_e, row_second) = strongest(&tone[..4]);
        let (col, col_e, col_second) = strongest(&tone[4..]);
        if row_e < self.min_tone_energy || col_e < self.min_tone_energy {
            return None;
        }
        let energies = Energies {
            row: row_e,
            col: col_e,
            row_second,
            col_second,
        };
        if !self.limits_ok(&energies, self.window_slack) {
            return None;
        }
        if row_e + col_e < MIN_TONE_SHARE * total {
            return None;
        }
        // Energy per third of the window, oldest first; a tone that starts or stops inside the window
        // leaves one third short.
        let third = |i: usize| {
            self.sub_energy[(self.head + 2 * i) % SUBS]
                + self.sub_energy[(self.head + 2 * i + 1) % SUBS]
        };
        let thirds = [third(0), third(1), third(2)];
        let max = thirds.iter().copied().fold(0.0, f32::max);
        if thirds.iter().any(|&t| t < 0.5 * max) {
            return None;
        }
        KEYS.get(row)
            .and_then(|r| r.get(col))
            .map(|&key| WindowKey { key, energies })
    }

    /// Twist and group-margin limits, each loosened by the power ratio `slack` (1.0 = exact).
    fn limits_ok(&self, e: &Energies, slack: f32) -> bool {
        e.row <= e.col * self.normal_twist * slack
            && e.col <= e.row * self.reverse_twist * slack
            && e.row_second * self.group_margin <= e.row * slack
            && e.col_second * self.group_margin <= e.col * slack
    }

    /// Debounces window decisions into key presses.
    fn track(&mut self, window: Option<WindowKey>, window_start: u64) {
        let key = window.map(|w| w.key);
        if let Some((active, misses)) = self.active {
            if key == Some(active) {
                self.active = Some((active, 0));
            } else if misses + 1 >= OFF_WINDOWS {
                self.active = None;
            } else {
                self.active = Some((active, misses + 1));
            }
            return;
        }
        let Some(w) = window else {
            self.candidate = None;
            return;
        };
        let mut c = match self.candidate {
            Some(c) if c.key == w.key => c,
            _ => Candidate {
                key: w.key,
                windows: 0,
                start: window_start,
                sums: Energies::default(),
            },
        };
        c.windows += 1;
        c.sums.row += w.energies.row;
        c.sums.col += w.energies.col;
        c.sums.row_second += w.energies.row_second;
        c.sums.col_second += w.energies.col_second;
        if c.windows < ON_WINDOWS {
            self.candidate = Some(c);
            return;
        }
        self.candidate = None;
        // A run that fails on average is dropped and a fresh run starts with the next window.
        if self.limits_ok(&c.sums, 1.0) {
            self.active = Some((c.key, 0));
            self.push(InbandDigit {
                digit: c.key,
                start_sample: c.start,
            });
        }
    }

    fn push(&mut self, d: InbandDigit) {
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = Some(d);
            self.pending_len += 1;
        }
    }
}

/// Index and energy of the strongest entry, and the energy of the second strongest.
fn strongest(e: &[f32]) -> (usize, f32, f32) {
    let mut best = (0, f32::MIN, f32::MIN);
    for (i, &v) in e.iter().enumerate() {
        if v > best.1 {
            best = (i, v, best.1);
        } else if v > best.2 {
            best.2 = v;
        }
    }
    best
}
