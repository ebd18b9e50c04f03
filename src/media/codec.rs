//! G.711 μ-law and A-law companding (ITU-T G.711) between 16-bit linear PCM and 8-bit codes.
//!
//! Encoding is computed (segment = position of the highest set bit); decoding uses two 256-entry tables
//! built at compile time, and so does transcoding between the laws (for the bridge, where the two legs
//! negotiated different laws). Nothing here allocates. It does not resample, mix or packetise: callers hand it
//! 8 kHz samples. Inputs are 16-bit two's complement; the quantiser works on sign and magnitude, so
//! `encode(-x)` differs from `encode(x)` only in the sign bit (the classic Sun `g711.c` A-law encoder
//! subtracts 8 from negative magnitudes, which maps −1…−7 to a large code; that quirk is not copied).

/// The two G.711 companding laws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    /// μ-law (PCMU, RTP payload type 0), used in North America and Japan.
    Ulaw,
    /// A-law (PCMA, RTP payload type 8), used in most other regions.
    Alaw,
}

impl Law {
    /// Encodes `pcm.len().min(out.len())` samples from `pcm` into `out`; extra entries are left alone.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        let encode = match self {
            Law::Ulaw => linear_to_ulaw,
            Law::Alaw => linear_to_alaw,
        };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = encode(s);
        }
    }

    /// Decodes `g711.len().min(out.len())` codes from `g711` into `out`; extra entries are left alone.
    pub fn decode_into(self, g711: &[u8], out: &mut [i16]) {
        let table = match self {
            Law::Ulaw => &ULAW_TO_LINEAR,
            Law::Alaw => &ALAW_TO_LINEAR,
        };
        for (o, &c) in out.iter_mut().zip(g711) {
            *o = table[usize::from(c)];
        }
    }

    /// The code for linear zero: 0xFF for μ-law, 0xD5 for A-law.
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }
}

/// μ-law bias added to the magnitude so that every segment starts at a power of two.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that still fits in segment 7 once the bias is added (0x7FFF − 0x84).
const ULAW_CLIP: i32 = 32635;

/// Encodes one 16-bit sample to μ-law. `const` so that the transcoding tables are built at compile time.
pub const fn linear_to_ulaw(s: i16) -> u8 {
    let s = s as i32;
    let sign: u8 = if s < 0 { 0x80 } else { 0 };
    let mag = s.unsigned_abs();
    let mag = if mag > ULAW_CLIP as u32 {
        ULAW_CLIP as u32
    } else {
        mag
    };
    // Biased magnitude lies in 0x84..=0x7FFF, so its top bit is bit 7..=14 and the segment is 0..=7.
    let biased = mag + ULAW_BIAS as u32;
    let seg = 31 - biased.leading_zeros() - 7;
    let mantissa = (biased >> (seg + 3)) & 0x0F;
    // G.711 transmits μ-law codes with every bit inverted (sign bit set means positive).
    !(sign | (seg << 4) as u8 | mantissa as u8)
}

/// Decodes one μ-law code to a 16-bit sample.
pub fn ulaw_to_linear(c: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(c)]
}

/// Encodes one 16-bit sample to A-law. `const` for the same reason as [`linear_to_ulaw`].
pub const fn linear_to_alaw(s: i16) -> u8 {
    let s = s as i32;
    let sign: u8 = if s < 0 { 0 } else { 0x80 };
    let mag = s.unsigned_abs();
    let mag = if mag > 0x7FFF { 0x7FFF } else { mag };
    // Segments 0 and 1 share one step size (the A-law linear region); above that each segment doubles.
    let (seg, mantissa) = if mag < 0x100 {
        (0, mag >> 4)
    } else {
        let seg = 31 - mag.leading_zeros() - 7;
        (seg, (mag >> (seg + 3)) & 0x0F)
    };
    // G.711 inverts the even bits of A-law codes (XOR 0x55).
    (sign | (seg << 4) as u8 | mantissa as u8) ^ 0x55
}

/// Decodes one A-law code to a 16-bit sample.
pub fn alaw_to_linear(c: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(c)]
}

/// μ-law code → linear, indexed by code.
pub static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
/// A-law code → linear, indexed by code.
pub static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();
/// μ-law code → A-law code via linear (`linear_to_alaw(ulaw_to_linear(c))`), indexed by μ-law code.
pub static ULAW_TO_ALAW: [u8; 256] = build_transcode_table(Law::Ulaw);
/// A-law code → μ-law code via linear (`linear_to_ulaw(alaw_to_linear(c))`), indexed by A-law code.
pub static ALAW_TO_ULAW: [u8; 256] = build_transcode_table(Law::Alaw);

/// The code-to-code table from `from` to `to`, or `None` when both are the same law (copy the bytes).
pub fn transcode_table(from: Law, to: Law) -> Option<&'static [u8; 256]> {
    match (from, to) {
        (Law::Ulaw, Law::Alaw) => Some(&ULAW_TO_ALAW),
        (Law::Alaw, Law::Ulaw) => Some(&ALAW_TO_ULAW),
        _ => None,
    }
}

const fn build_transcode_table(from: Law) -> [u8; 256] {
    // Decoding through the tables built above would need them in a const context too; build them again.
    let decode = match from {
        Law::Ulaw => build_ulaw_table(),
        Law::Alaw => build_alaw_table(),
    };
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match from {
            Law::Ulaw => linear_to_alaw(decode[c]),
            Law::Alaw => linear_to_ulaw(decode[c]),
        };
        c += 1;
    }
    t
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        let u = !(c as u8);
        let seg = ((u >> 4) & 0x07) as i32;
        // Reconstruct at the middle of the step: (mantissa + ½) · step, minus the encoder's bias.
        let mag = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS) << seg;
        let v = mag - ULAW_BIAS;
        t[c] = if u & 0x80 != 0 { -v as i16 } else { v as i16 };
        c += 1;
    }
    t
}

const fn build_alaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        let a = (c as u8) ^ 0x55;
        let seg = ((a >> 4) & 0x07) as i32;
        let mantissa = (a & 0x0F) as i32;
        // Middle of the step: segment 0 has step 16 from 0, segment n ≥ 1 has step 16·2^(n−1) from 256·2^(n−1).
        let v = if seg == 0 {
            (mantissa << 4) + 8
        } else {
            ((mantissa << 4) + 0x108) << (seg - 1)
        };
        t[c] = if a & 0x80 != 0 { v as i16 } else { -v as i16 };
        c += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference written from the G.711 segment tables in the style of the classic CCITT/Sun `g711.c`:
    // biased magnitude, linear search over segment end points, sign handled by XOR masks.
    const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];

    fn search(v: i32) -> usize {
        SEG_END.iter().position(|&end| v <= end).unwrap_or(8)
    }

    fn ref_linear_to_ulaw(pcm: i16) -> u8 {
        let pcm = i32::from(pcm);
        let (mag, mask): (i32, i32) = if pcm < 0 { (-pcm, 0x7F) } else { (pcm, 0xFF) };
        let v = mag.min(32635) + 0x84;
        let seg = search(v);
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let uval = ((seg as i32) << 4) | ((v >> (seg + 3)) & 0x0F);
        (uval ^ mask) as u8
    }

    fn ref_ulaw_to_linear(code: u8) -> i16 {
        let u = i32::from(!code);
        let mut t = ((u & 0x0F) << 3) + 0x84;
        t <<= (u & 0x70) >> 4;
        (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
    }

    fn ref_linear_to_alaw(pcm: i16) -> u8 {
        let pcm = i32::from(pcm);
        let (mag, mask): (i32, i32) = if pcm >= 0 { (pcm, 0xD5) } else { (-pcm, 0x55) };
        let seg = search(mag);
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let mut aval = (seg as i32) << 4;
        if seg < 2 {
            aval |= (mag >> 4) & 0x0F;
        } else {
            aval |= (mag >> (seg + 3)) & 0x0F;
        }
        (aval ^ mask) as u8
    }

    fn ref_alaw_to_linear(code: u8) -> i16 {
        let a = i32::from(code ^ 0x55);
        let mut t = (a & 0x0F) << 4;
        let seg = (a & 0x70) >> 4;
        match seg {
            0 => t += 8,
            1 => t += 0x108,
            _ => {
                t += 0x108;
                t <<= seg - 1;
            }
        }
        (if a & 0x80 != 0 { t } else { -t }) as i16
    }

    #[test]
    fn ulaw_encoder_matches_reference_on_every_input() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(s), ref_linear_to_ulaw(s), "sample {s}");
        }
    }

    #[test]
    fn alaw_encoder_matches_reference_on_every_input() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_alaw(s), ref_linear_to_alaw(s), "sample {s}");
        }
    }

    #[test]
    fn decoders_match_reference_on_every_code() {
        for c in 0..=255u8 {
            assert_eq!(
                ulaw_to_linear(c),
                ref_ulaw_to_linear(c),
                "μ-law code {c:#04x}"
            );
            assert_eq!(
                alaw_to_linear(c),
                ref_alaw_to_linear(c),
                "A-law code {c:#04x}"
            );
        }
    }

    #[test]
    fn zero_and_extremes_have_the_well_known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(Law::Ulaw.silence(), linear_to_ulaw(0));
        assert_eq!(Law::Alaw.silence(), linear_to_alaw(0));
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let x = i32::from(s);
            let mag = x.abs().min(32635);
            // μ-law step in segment n is 8·2^n on the biased scale; the decoder returns the middle.
            let useg = search(mag + 0x84) as u32;
            let ustep = 8 << useg;
            let ue = (i32::from(ulaw_to_linear(linear_to_ulaw(s))) - x.clamp(-32635, 32635)).abs();
            assert!(
                ue <= ustep / 2,
                "μ-law sample {s}: error {ue} > {}",
                ustep / 2
            );
            let amag = x.abs().min(0x7FFF);
            let aseg = search(amag).max(1) as u32;
            let astep = 8 << aseg;
            let ae = (i32::from(alaw_to_linear(linear_to_alaw(s))) - x.clamp(-32767, 32767)).abs();
            assert!(
                ae <= astep / 2,
                "A-law sample {s}: error {ae} > {}",
                astep / 2
            );
        }
    }

    #[test]
    fn sign_only_flips_the_sign_bit() {
        for s in 1..=i16::MAX {
            assert_eq!(linear_to_ulaw(-s) ^ 0x80, linear_to_ulaw(s));
            assert_eq!(linear_to_alaw(-s) ^ 0x80, linear_to_alaw(s));
        }
    }

    #[test]
    fn transcode_tables_go_through_linear() {
        assert_eq!(transcode_table(Law::Ulaw, Law::Ulaw), None);
        assert_eq!(transcode_table(Law::Alaw, Law::Alaw), None);
        for c in 0..=255u8 {
            let i = usize::from(c);
            assert_eq!(ULAW_TO_ALAW[i], linear_to_alaw(ulaw_to_linear(c)));
            assert_eq!(ALAW_TO_ULAW[i], linear_to_ulaw(alaw_to_linear(c)));
        }
        // μ-law silence is A-law silence; A-law's smallest step (±8) is a μ-law code of its own.
        assert_eq!(ULAW_TO_ALAW[0xFF], 0xD5);
        assert_eq!(ALAW_TO_ULAW[0xD5], 0xFE);
    }

    #[test]
    fn slice_helpers_encode_and_decode_the_overlap_only() {
        let pcm = [0i16, 1000, -1000, 32767, -32768];
        let mut out = [0u8; 4];
        Law::Ulaw.encode_into(&pcm, &mut out);
        assert_eq!(
            out,
            [0xFF, linear_to_ulaw(1000), linear_to_ulaw(-1000), 0x80]
        );
        let mut back = [7i16; 6];
        Law::Alaw.decode_into(&[0xD5, 0x55], &mut back);
        assert_eq!(back, [8, -8, 7, 7, 7, 7]);
    }
}
