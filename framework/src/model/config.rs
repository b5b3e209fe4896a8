//! The model configuration: clip geometry, patch sizes and transformer widths. One code
//! path serves `tiny`, `small` and `base` (see `configs/model/`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors of a model configuration.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    /// The file could not be read or parsed.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A value is out of range.
    #[error("model config `{key}` = {value}: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it is wrong.
        why: String,
    },
}

/// Everything that fixes the model's shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A name for reports (`tiny`, `small`, `base`).
    pub name: String,
    /// Frames per clip.
    pub frames: usize,
    /// Frame height, px.
    pub height: usize,
    /// Frame width, px.
    pub width: usize,
    /// Frames per second.
    pub fps: f64,
    /// Audio sample rate, Hz (mono).
    pub sample_rate: u32,
    /// Frames per video patch.
    pub patch_t: usize,
    /// Patch height, px.
    pub patch_h: usize,
    /// Patch width, px.
    pub patch_w: usize,
    /// Waveform samples per audio token.
    pub audio_patch: usize,
    /// Side of a (square) reference image, px; patched by `patch_h × patch_w`.
    pub ref_size: usize,
    /// Transformer width.
    pub d_model: usize,
    /// Joint transformer blocks.
    pub depth: usize,
    /// Attention heads (d_model / heads must be divisible by 6 for 3D RoPE... see `head_dim`).
    pub heads: usize,
    /// MLP hidden width as a multiple of `d_model`.
    pub mlp_ratio: usize,
    /// Text encoder width.
    pub text_dim: usize,
    /// Text encoder layers.
    pub text_depth: usize,
    /// Text encoder heads.
    pub text_heads: usize,
    /// Longest caption in tokens (longer ones are truncated).
    pub text_max_len: usize,
    /// Tokenizer vocabulary size (trained from the dataset's captions).
    pub vocab_size: usize,
    /// Timestep shift used in training and sampling (`t ↦ s·t / (1 + (s − 1)·t)`); absent =
    /// `sqrt(tokens / 256)` ([`ModelConfig::timestep_shift`]). Larger values spend more of
    /// training and sampling near pure noise, where the clip's layout is decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    /// How audio becomes tokens: `waveform` (default) or `spectrogram`.
    #[serde(default, skip_serializing_if = "AudioCodec::is_waveform")]
    pub audio_codec: AudioCodec,
    /// STFT hop in samples of the `spectrogram` codec (window `2·hop`, `hop + 1` bins);
    /// must divide `audio_patch`. Absent = [`DEFAULT_AUDIO_HOP`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_hop: Option<usize>,
    /// Mel-spaced bands the `spectrogram` codec pools each frame's `hop + 1` bins into
    /// ([`super::spectrogram::MelBands`]); absent = one value per bin. With 32 bands an audio
    /// token of 16 frames is 512 values instead of 2 016.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_bands: Option<usize>,
    /// How image → video gives the model its first frame: `hold` (default) or `context`.
    #[serde(default, skip_serializing_if = "ImageCond::is_hold")]
    pub image_cond: ImageCond,
}

/// STFT hop of the spectrogram codec when `audio_hop` is absent (7.8 ms at 16 kHz).
pub const DEFAULT_AUDIO_HOP: usize = 125;

/// How audio becomes tokens (see [`super::patchify`] and [`super::spectrogram`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum AudioCodec {
    /// Raw waveform patches of `audio_patch` samples: exactly invertible.
    #[default]
    Waveform,
    /// Log-magnitude spectrogram frames every `audio_hop` samples; the phase is recovered by
    /// Griffin–Lim on decode. A small model learns impacts here that it averages away as
    /// waveforms.
    Spectrogram,
}

impl AudioCodec {
    /// True for the default codec (kept out of serialised configs).
    pub fn is_waveform(&self) -> bool {
        *self == Self::Waveform
    }
}

/// How the given first frame of image → video reaches the model (see
/// [`crate::diffusion::conditioning`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum ImageCond {
    /// The frame is held over the first `patch_t` frames and those tokens are given clean:
    /// no extra tokens, but the first video token row in time never moves.
    #[default]
    Hold,
    /// The held frame comes as a row of extra clean tokens in context, at the first row's
    /// positions, and every video token is generated, so motion starts at frame 1 (in-context
    /// conditioning tokens, as in LTX-Video); costs one token row more in image batches.
    Context,
}

impl ImageCond {
    /// True for the default (kept out of serialised configs, so older manifests still read).
    pub fn is_hold(&self) -> bool {
        *self == Self::Hold
    }
}

/// The longest clip a model config may describe, seconds.
pub const MAX_CLIP_S: f64 = 3600.0;

/// The most tokens (video + audio) one clip may make.
pub const MAX_TOKENS: usize = 1 << 22;

impl ModelConfig {
    /// Reads and checks a TOML model config.
    pub fn from_file(path: &Path) -> Result<Self, ModelConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ModelConfigError::Parse {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ModelConfigError::Parse {
            file,
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks divisibility and ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let bad = |key, value: &dyn std::fmt::Display, why: &str| {
            Err(ModelConfigError::Invalid {
                key,
                value: value.to_string(),
                why: why.into(),
            })
        };
        let positive: [(&'static str, usize); 15] = [
            ("frames", self.frames),
            ("height", self.height),
            ("width", self.width),
            ("patch_t", self.patch_t),
            ("patch_h", self.patch_h),
            ("patch_w", self.patch_w),
            ("audio_patch", self.audio_patch),
            ("ref_size", self.ref_size),
            ("d_model", self.d_model),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_ratio", self.mlp_ratio),
            ("text_dim", self.text_dim),
            ("text_heads", self.text_heads),
            ("text_max_len", self.text_max_len),
        ];
        for (k, v) in positive {
            if v == 0 {
                return bad(k, &v, "must be at least 1");
            }
        }
        if self.vocab_size < 16 {
            return bad("vocab_size", &self.vocab_size, "must be at least 16");
        }
        // upper bounds, so that every size derived from the config (tokens, widths,
        // parameter counts) is computed without overflow
        let at_most: [(&'static str, usize, usize); 16] = [
            ("frames", self.frames, 1 << 20),
            ("height", self.height, 1 << 16),
            ("width", self.width, 1 << 16),
            ("patch_t", self.patch_t, 1 << 10),
            ("patch_h", self.patch_h, 1 << 10),
            ("patch_w", self.patch_w, 1 << 10),
            ("audio_patch", self.audio_patch, 1 << 24),
            ("ref_size", self.ref_size, 1 << 16),
            ("d_model", self.d_model, 1 << 16),
            ("depth", self.depth, 1 << 10),
            ("mlp_ratio", self.mlp_ratio, 64),
            ("text_dim", self.text_dim, 1 << 16),
            ("text_depth", self.text_depth, 1 << 10),
            ("text_max_len", self.text_max_len, 1 << 16),
            ("vocab_size", self.vocab_size, 1 << 24),
            ("sample_rate", self.sample_rate as usize, 1 << 20),
        ];
        for (k, v, max) in at_most {
            if v > max {
                return bad(k, &v, &format!("must be at most {max}"));
            }
        }
        if self.frames as f64 / self.fps > MAX_CLIP_S {
            return bad(
                "frames",
                &self.frames,
                &format!(
                    "{} frames at fps = {} last {:.0} s; a clip may last at most {MAX_CLIP_S} s",
                    self.frames,
                    self.fps,
                    self.frames as f64 / self.fps
                ),
            );
        }
        let tokens = self.video_tokens() + self.audio_samples() / self.audio_patch;
        if tokens > MAX_TOKENS {
            return bad(
                "frames",
                &self.frames,
                &format!(
                    "the clip makes {tokens} tokens (frames / patch_t × height / patch_h × width / patch_w video + frames / fps × sample_rate / audio_patch audio); at most {MAX_TOKENS}: use larger patches or a smaller clip"
                ),
            );
        }
        if let Some(s) = self.shift
            && !(s.is_finite() && s > 0.0)
        {
            return bad("shift", &s, "must be positive");
        }
        if self.fps.is_nan() || self.fps <= 0.0 || !self.fps.is_finite() {
            return bad("fps", &self.fps, "must be positive");
        }
        if !self.frames.is_multiple_of(self.patch_t) {
            return bad(
                "frames",
                &self.frames,
                &format!("must be a multiple of patch_t = {}", self.patch_t),
            );
        }
        if !self.height.is_multiple_of(self.patch_h) || !self.ref_size.is_multiple_of(self.patch_h)
        {
            return bad(
                "height",
                &self.height,
                &format!(
                    "height and ref_size must be multiples of patch_h = {}",
                    self.patch_h
                ),
            );
        }
        if !self.width.is_multiple_of(self.patch_w) || !self.ref_size.is_multiple_of(self.patch_w) {
            return bad(
                "width",
                &self.width,
                &format!(
                    "width and ref_size must be multiples of patch_w = {}",
                    self.patch_w
                ),
            );
        }
        if !self.d_model.is_multiple_of(self.heads)
            || !(self.d_model / self.heads).is_multiple_of(8)
        {
            return bad(
                "heads",
                &self.heads,
                &format!(
                    "d_model / heads must be a multiple of 8 (d_model = {})",
                    self.d_model
                ),
            );
        }
        if !self.text_dim.is_multiple_of(self.text_heads) {
            return bad(
                "text_heads",
                &self.text_heads,
                &format!("must divide text_dim = {}", self.text_dim),
            );
        }
        if !self.audio_samples().is_multiple_of(self.audio_patch) {
            return bad(
                "audio_patch",
                &self.audio_patch,
                &format!(
                    "must divide the clip's {} samples (frames / fps × sample_rate)",
                    self.audio_samples()
                ),
            );
        }
        if let Some(hop) = self.audio_hop {
            if self.audio_codec != AudioCodec::Spectrogram {
                return bad(
                    "audio_hop",
                    &hop,
                    "only the spectrogram codec has a hop (set audio_codec = \"spectrogram\")",
                );
            }
            if hop < 8 || !self.audio_patch.is_multiple_of(hop) {
                return bad(
                    "audio_hop",
                    &hop,
                    &format!(
                        "must be at least 8 and divide audio_patch = {}",
                        self.audio_patch
                    ),
                );
            }
        } else if self.audio_codec == AudioCodec::Spectrogram
            && !self.audio_patch.is_multiple_of(DEFAULT_AUDIO_HOP)
        {
            return bad(
                "audio_patch",
                &self.audio_patch,
                &format!(
                    "the spectrogram codec's default hop {DEFAULT_AUDIO_HOP} must divide it (or set audio_hop)"
                ),
            );
        }
        if let Some(bands) = self.audio_bands {
            if self.audio_codec != AudioCodec::Spectrogram {
                return bad(
                    "audio_bands",
                    &bands,
                    "only the spectrogram codec has bands (set audio_codec = \"spectrogram\")",
                );
            }
            let bins = self.audio_hop() + 1;
            if !(4..=bins).contains(&bands) {
                return bad(
                    "audio_bands",
                    &bands,
                    &format!("must be between 4 and the STFT's {bins} bins (audio_hop + 1)"),
                );
            }
        }
        Ok(())
    }

    /// STFT hop of the spectrogram codec.
    pub fn audio_hop(&self) -> usize {
        self.audio_hop.unwrap_or(DEFAULT_AUDIO_HOP)
    }

    /// Values per audio token: `audio_patch` waveform samples, or
    /// `(audio_patch / hop) · v` spectrogram values, `v` = `audio_bands` or `hop + 1` bins.
    pub fn audio_token_dim(&self) -> usize {
        match self.audio_codec {
            AudioCodec::Waveform => self.audio_patch,
            AudioCodec::Spectrogram => {
                let hop = self.audio_hop();
                self.audio_patch / hop * self.audio_bands.unwrap_or(hop + 1)
            }
        }
    }

    /// Attention head width.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }

    /// Audio samples per clip.
    pub fn audio_samples(&self) -> usize {
        (self.frames as f64 / self.fps * self.sample_rate as f64).round() as usize
    }

    /// Video token grid `(t, h, w)`.
    pub fn video_grid(&self) -> (usize, usize, usize) {
        (
            self.frames / self.patch_t,
            self.height / self.patch_h,
            self.width / self.patch_w,
        )
    }

    /// Video tokens per clip.
    pub fn video_tokens(&self) -> usize {
        let (t, h, w) = self.video_grid();
        t * h * w
    }

    /// Tokens of one video token row in time: the in-context image of `image_cond =
    /// "context"`.
    pub fn image_tokens(&self) -> usize {
        let (_, h, w) = self.video_grid();
        h * w
    }

    /// Values per video token (`patch_t · patch_h · patch_w · 3`).
    pub fn video_patch_dim(&self) -> usize {
        self.patch_t * self.patch_h * self.patch_w * 3
    }

    /// Audio tokens per clip.
    pub fn audio_tokens(&self) -> usize {
        self.audio_samples() / self.audio_patch
    }

    /// Tokens per reference image.
    pub fn ref_tokens(&self) -> usize {
        (self.ref_size / self.patch_h) * (self.ref_size / self.patch_w)
    }

    /// Values per reference token (`patch_h · patch_w · 3`).
    pub fn ref_patch_dim(&self) -> usize {
        self.patch_h * self.patch_w * 3
    }

    /// Shift of the timestep schedule for a sequence of `tokens` (grows with resolution,
    /// as in SD3: `sqrt(tokens / 256)`, at least 1).
    pub fn timestep_shift(tokens: usize) -> f64 {
        (tokens as f64 / 256.0).sqrt().max(1.0)
    }

    /// The shift this model trains and samples with for `tokens` tokens: [`Self::shift`] if
    /// set, else [`Self::timestep_shift`].
    pub fn shift_for(&self, tokens: usize) -> f64 {
        self.shift.unwrap_or_else(|| Self::timestep_shift(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_shipped_model_config_is_valid() {
        for (name, text) in [
            ("tiny", include_str!("../../../configs/model/tiny.toml")),
            ("small", include_str!("../../../configs/model/small.toml")),
            ("base", include_str!("../../../configs/model/base.toml")),
            (
                "quickstart",
                include_str!("../../../configs/model/quickstart.toml"),
            ),
            (
                "quickstart-coarse",
                include_str!("../../../configs/model/quickstart-coarse.toml"),
            ),
        ] {
            parse(text)
                .validate()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_spectrogram_codec_sizes_tokens_by_frames_and_bins() {
        let mut c = parse(include_str!("../../../configs/model/tiny.toml"));
        assert_eq!(c.audio_token_dim(), c.audio_patch);
        c.audio_codec = AudioCodec::Spectrogram;
        c.audio_hop = Some(250);
        c.validate().unwrap();
        // 2000 samples per token = 8 frames of 251 bins
        assert_eq!(c.audio_token_dim(), 8 * 251);
        // a hop that does not divide the token is refused by name
        c.audio_hop = Some(300);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("audio_hop") && e.contains("divide audio_patch"),
            "{e}"
        );
        // a hop without the spectrogram codec is refused too
        c.audio_codec = AudioCodec::Waveform;
        c.audio_hop = Some(250);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("spectrogram"), "{e}");
        // bands pool each frame's bins: 8 frames of 32 bands
        c.audio_codec = AudioCodec::Spectrogram;
        c.audio_hop = Some(250);
        c.audio_bands = Some(32);
        c.validate().unwrap();
        assert_eq!(c.audio_token_dim(), 8 * 32);
        // more bands than bins, or bands without the spectrogram codec, are refused by name
        c.audio_bands = Some(252);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("audio_bands") && e.contains("251 bins"), "{e}");
        c.audio_bands = Some(32);
        c.audio_codec = AudioCodec::Waveform;
        c.audio_hop = None;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("audio_bands") && e.contains("spectrogram"),
            "{e}"
        );
        // the default codec is not written out, so older configs serialise unchanged
        c.audio_bands = None;
        assert!(!toml::to_string(&c).unwrap().contains("audio_codec"));
    }
}

crate::config_enum!(AudioCodec {
    "waveform" => AudioCodec::Waveform,
    "spectrogram" => AudioCodec::Spectrogram,
});

crate::config_enum!(ImageCond {
    "hold" => ImageCond::Hold,
    "context" => ImageCond::Context,
});
