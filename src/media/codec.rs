//! G.711 µ-law and A-law codecs (ITU-T G.711); PLACEHOLDER for the codec helper's file, not the real one.

/// Which G.711 companding law a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU, static payload type 0).
    Ulaw,
    /// A-law (PCMA, static payload type 8).
    Alaw,
}

impl Law {
    /// Encodes `pcm` into `out`, one byte per sample, up to the shorter of the two.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) {
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = match self {
                Law::Ulaw => linear_to_ulaw(s),
                Law::Alaw => linear_to_alaw(s),
            };
        }
    }

    /// Decodes `g711` into `out`, one sample per byte, up to the shorter of the two.
    pub fn decode_into(self, g711: &[u8], out: &mut [i16]) {
        for (o, &c) in out.iter_mut().zip(g711) {
            *o = match self {
                Law::Ulaw => ulaw_to_linear(c),
                Law::Alaw => alaw_to_linear(c),
            };
        }
    }

    /// The code for digital silence in this law.
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }
}

/// Encodes one 16-bit linear sample to µ-law.
pub fn linear_to_ulaw(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut v = i32::from(s);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(32635) + BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && v & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (v >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) | mant) as u8
}

/// Decodes one µ-law code to a 16-bit linear sample.
pub fn ulaw_to_linear(c: u8) -> i16 {
    let c = !c;
    let sign = c & 0x80;
    let exp = (c >> 4) & 0x07;
    let mant = i32::from(c & 0x0F);
    let v = (((mant << 3) + 0x84) << exp) - 0x84;
    (if sign != 0 { -v } else { v }) as i16
}

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(s: i16) -> u8 {
    let mut v = i32::from(s) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg_end = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = seg_end.iter().position(|&e| v <= e).unwrap_or(8) as i32;
    if seg >= 8 {
        return (0x7F ^ mask) as u8;
    }
    let aval = (seg << 4)
        | if seg < 2 {
            (v >> 1) & 0x0F
        } else {
            (v >> seg) & 0x0F
        };
    (aval ^ mask) as u8
}

/// Decodes one A-law code to a 16-bit linear sample.
pub fn alaw_to_linear(c: u8) -> i16 {
    let a = i32::from(c ^ 0x55);
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
