//! Prompt store; PLACEHOLDER for the codec helper's file: prompts held as pre-encoded 20 ms G.711 frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::media::codec::Law;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// One audio prompt, pre-encoded in both laws.
#[derive(Debug)]
pub struct Prompt {
    /// Language tag.
    pub lang: String,
    /// Prompt name.
    pub name: String,
    ulaw: Vec<u8>,
    alaw: Vec<u8>,
    frames: usize,
}

impl Prompt {
    /// Builds a prompt from 8 kHz linear samples; the last frame is padded with silence.
    pub fn from_samples(lang: &str, name: &str, pcm_8k: &[i16]) -> Prompt {
        let frames = pcm_8k.len().div_ceil(FRAME_SAMPLES);
        let mut ulaw = vec![Law::Ulaw.silence(); frames * FRAME_SAMPLES];
        let mut alaw = vec![Law::Alaw.silence(); frames * FRAME_SAMPLES];
        Law::Ulaw.encode_into(pcm_8k, &mut ulaw);
        Law::Alaw.encode_into(pcm_8k, &mut alaw);
        Prompt {
            lang: lang.to_owned(),
            name: name.to_owned(),
            ulaw,
            alaw,
            frames,
        }
    }

    /// Frame `index` (160 bytes) in `law`, or `None` past the end.
    pub fn frame(&self, law: Law, index: usize) -> Option<&[u8]> {
        let data = match law {
            Law::Ulaw => &self.ulaw,
            Law::Alaw => &self.alaw,
        };
        data.get(index * FRAME_SAMPLES..(index + 1) * FRAME_SAMPLES)
    }

    /// Number of 20 ms frames.
    pub fn frame_count(&self) -> usize {
        self.frames
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(20 * self.frames as u64)
    }
}

/// Prompts by (language, name).
#[derive(Clone, Default)]
pub struct PromptStore {
    prompts: HashMap<(String, String), Arc<Prompt>>,
}

impl PromptStore {
    /// Looks a prompt up.
    pub fn get(&self, lang: &str, name: &str) -> Option<Arc<Prompt>> {
        self.prompts
            .get(&(lang.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Adds or replaces a prompt.
    pub fn insert(&mut self, p: Prompt) {
        self.prompts
            .insert((p.lang.clone(), p.name.clone()), Arc::new(p));
    }
}
