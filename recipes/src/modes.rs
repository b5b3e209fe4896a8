//! The training task mix: which generation mode each example is trained in. Every mode is
//! the same flow-matching loss with some tokens given clean (see
//! `sonora_framework::diffusion::conditioning`); a model only learns to use given frames or
//! given sound if it is trained with them.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sonora_framework::diffusion::Mode;
use sonora_framework::model::ModelConfig;

/// `[train.modes]`: relative weights of the modes (need not sum to 1). The default trains
/// text → video + audio only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeMix {
    /// Text → video + audio: nothing given.
    pub text: f64,
    /// Image → video: the first frame given.
    pub image: f64,
    /// Extension: the first half of the video and its audio given.
    pub extension: f64,
    /// Video → audio: the whole video given (learns the sound of what is seen).
    pub video_to_audio: f64,
    /// Audio → video: the whole sound track given.
    pub audio_to_video: f64,
}

impl Default for ModeMix {
    fn default() -> Self {
        Self {
            text: 1.0,
            image: 0.0,
            extension: 0.0,
            video_to_audio: 0.0,
            audio_to_video: 0.0,
        }
    }
}

impl ModeMix {
    /// `(key, weight)` in the order [`Self::draw`] indexes them.
    fn weights(&self) -> [(&'static str, f64); 5] {
        [
            ("text", self.text),
            ("image", self.image),
            ("extension", self.extension),
            ("video_to_audio", self.video_to_audio),
            ("audio_to_video", self.audio_to_video),
        ]
    }

    /// Checks the weights; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (k, w) in self.weights() {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!("train.modes.{k} must be a weight >= 0, got {w}"));
            }
        }
        if self.weights().iter().all(|(_, w)| *w == 0.0) {
            return Err("train.modes: at least one weight must be positive".into());
        }
        Ok(())
    }

    /// True when every example is text → video + audio (no random draw is made, so such
    /// runs consume the run's random stream exactly as before the mix existed).
    pub fn text_only(&self) -> bool {
        self.weights()[1..].iter().all(|(_, w)| *w == 0.0)
    }

    /// Draws one example's mode. Extension gives the first half of the clip, rounded down
    /// to whole video patches; a model with a single patch in time cannot be extended, so
    /// there an extension draw trains text → clip.
    pub fn draw(&self, cfg: &ModelConfig, rng: &mut impl Rng) -> Mode {
        if self.text_only() {
            return Mode::TextToAv;
        }
        let weights = self.weights();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut u = rng.random::<f64>() * total;
        // the index into weights(); rounding can leave u ≥ the last weight: text then
        let mut pick = 0;
        for (i, (_, w)) in weights.iter().enumerate() {
            if u < *w {
                pick = i;
                break;
            }
            u -= w;
        }
        let patches = cfg.frames / cfg.patch_t;
        match pick {
            1 => Mode::ImageToVideo,
            2 if patches >= 2 => Mode::Extension {
                prefix_frames: patches / 2 * cfg.patch_t,
            },
            3 => Mode::VideoToAudio,
            4 => Mode::AudioToVideo,
            _ => Mode::TextToAv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn cfg() -> ModelConfig {
        toml::from_str(include_str!("../../configs/model/quickstart.toml")).unwrap()
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix = ModeMix {
            text: 2.0,
            image: 1.0,
            extension: 1.0,
            video_to_audio: 0.0,
            audio_to_video: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 4000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            match mix.draw(&cfg(), &mut rng) {
                Mode::TextToAv => counts[0] += 1,
                Mode::ImageToVideo => counts[1] += 1,
                Mode::Extension { prefix_frames } => {
                    assert_eq!(prefix_frames, 8, "half of 16 frames");
                    counts[2] += 1
                }
                m => panic!("weight 0 drawn: {m:?}"),
            }
        }
        let frac = |c: usize| c as f64 / n as f64;
        assert!((frac(counts[0]) - 0.5).abs() < 0.03, "{counts:?}");
        assert!((frac(counts[1]) - 0.25).abs() < 0.03, "{counts:?}");
        assert!((frac(counts[2]) - 0.25).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn text_only_consumes_no_randomness_and_bad_weights_are_named() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(ModeMix::default().draw(&cfg(), &mut rng), Mode::TextToAv);
        assert_eq!(rng.get_word_pos(), 0);
        let e = ModeMix {
            image: -1.0,
            ..ModeMix::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("train.modes.image"), "{e}");
        let e = ModeMix {
            text: 0.0,
            ..ModeMix::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("at least one"), "{e}");
    }
}
