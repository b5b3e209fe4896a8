//! The autoencoder boundary: clips ↔ token matrices. Today the encoder is the identity
//! (spacetime pixel patches for video, waveform patches for audio); a learned VAE can
//! implement [`Autoencoder`] later without the transformer changing.
//!
//! Audio has two codecs ([`AudioCodec`]): raw waveform patches, exactly invertible, and
//! log-magnitude spectrogram frames ([`super::spectrogram`]), which a small model learns far
//! better (an impact's magnitudes do not average away as its phase does) at the price of a
//! Griffin–Lim phase guess on decode. Either way an audio token holds the sound of the
//! `audio_patch` samples its RoPE time names (see [`super::rope`]).

use crate::{Audio, Clip, Frames};

use super::config::{AudioCodec, ModelConfig};
use super::spectrogram::{MelBands, Stft};

/// Tokens of one clip, row-major `[tokens, dim]` on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTokens {
    /// `[video_tokens, video_patch_dim]`, values in [−1, 1].
    pub video: Vec<f32>,
    /// `[audio_tokens, audio_token_dim]`: waveform, or log-magnitude spectrogram frames
    /// (`[audio_patch / hop, hop + 1 bins or audio_bands]` per token), in [−1, 1].
    pub audio: Vec<f32>,
}

/// A clip that does not fit the model.
#[derive(Debug, thiserror::Error)]
#[error("clip `{clip}` does not fit model `{model}`: {why}")]
pub struct ShapeError {
    /// The clip id.
    pub clip: String,
    /// The model config name.
    pub model: String,
    /// What differs.
    pub why: String,
}

/// Encodes clips to tokens and decodes tokens back to clips.
pub trait Autoencoder {
    /// Clip → tokens.
    fn encode(&self, clip: &Clip) -> Result<ClipTokens, ShapeError>;
    /// Tokens → frames and audio.
    fn decode(&self, tokens: &ClipTokens) -> (Frames, Audio);
}

/// The identity autoencoder: pixel patches, and waveform patches or spectrogram frames.
#[derive(Clone)]
pub struct PatchCodec {
    cfg: ModelConfig,
    stft: Option<std::sync::Arc<Stft>>,
}

impl std::fmt::Debug for PatchCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchCodec")
            .field("model", &self.cfg.name)
            .field("audio_codec", &self.cfg.audio_codec)
            .finish()
    }
}

impl PatchCodec {
    /// A codec for `cfg`'s geometry.
    pub fn new(cfg: &ModelConfig) -> Self {
        let stft = (cfg.audio_codec == AudioCodec::Spectrogram).then(|| {
            let stft = Stft::new(cfg.audio_hop());
            // a validated config's band count fits its bins
            let bands = cfg
                .audio_bands
                .and_then(|b| MelBands::new(stft.bins(), b, cfg.sample_rate));
            std::sync::Arc::new(match bands {
                Some(b) => stft.with_bands(b),
                None => stft,
            })
        });
        Self {
            cfg: cfg.clone(),
            stft,
        }
    }

    /// A reference image (`size×size` RGB bytes, `size = ref_size`) → `[ref_tokens, ref_patch_dim]`.
    pub fn encode_reference(&self, rgb: &[u8]) -> Result<Vec<f32>, String> {
        let s = self.cfg.ref_size;
        if rgb.len() != s * s * 3 {
            return Err(format!(
                "reference image has {} bytes, expected {s}×{s}×3 = {}",
                rgb.len(),
                s * s * 3
            ));
        }
        let (ph, pw) = (self.cfg.patch_h, self.cfg.patch_w);
        let mut out = Vec::with_capacity(rgb.len());
        for gy in 0..s / ph {
            for gx in 0..s / pw {
                for y in 0..ph {
                    for x in 0..pw {
                        let i = ((gy * ph + y) * s + gx * pw + x) * 3;
                        out.extend(rgb[i..i + 3].iter().map(|v| *v as f32 / 127.5 - 1.0));
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Autoencoder for PatchCodec {
    fn encode(&self, clip: &Clip) -> Result<ClipTokens, ShapeError> {
        let c = &self.cfg;
        let err = |why: String| ShapeError {
            clip: clip.metadata.clip_id.clone(),
            model: c.name.clone(),
            why,
        };
        let f = &clip.frames;
        if (f.t, f.h, f.w) != (c.frames, c.height, c.width) {
            return Err(err(format!(
                "frames are {}×{}×{}, the model takes {}×{}×{}",
                f.t, f.h, f.w, c.frames, c.height, c.width
            )));
        }
        if clip.audio.sample_rate != c.sample_rate {
            return Err(err(format!(
                "audio is at {} Hz, the model takes {} Hz",
                clip.audio.sample_rate, c.sample_rate
            )));
        }
        let (gt, gh, gw) = c.video_grid();
        let (pt, ph, pw) = (c.patch_t, c.patch_h, c.patch_w);
        let mut video = Vec::with_capacity(c.video_tokens() * c.video_patch_dim());
        // [T,H,W,3] → [gt,gh,gw, pt,ph,pw,3]
        for a in 0..gt {
            for b in 0..gh {
                for d in 0..gw {
                    for k in 0..pt {
                        let fr = f.frame(a * pt + k);
                        for y in 0..ph {
                            let row = ((b * ph + y) * f.w + d * pw) * 3;
                            video.extend(
                                fr[row..row + pw * 3]
                                    .iter()
                                    .map(|v| *v as f32 / 127.5 - 1.0),
                            );
                        }
                    }
                }
            }
        }
        // mono waveform, cut or zero-padded to the model's length (within one video frame)
        let mut mono = clip.audio.to_mono();
        let n = c.audio_samples();
        let slack = (c.sample_rate as f64 / c.fps).ceil() as usize;
        if mono.len() + slack < n || mono.len() > n + slack {
            return Err(err(format!(
                "audio has {} samples, the model takes {n}",
                mono.len()
            )));
        }
        mono.resize(n, 0.0);
        mono.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        // waveform [n] → [audio_tokens, audio_patch]; spectrogram [n / hop, hop + 1] is
        // already token-major, audio_patch / hop frames per token
        let audio = match &self.stft {
            None => mono,
            Some(stft) => stft.encode(&mono),
        };
        Ok(ClipTokens { video, audio })
    }

    fn decode(&self, tokens: &ClipTokens) -> (Frames, Audio) {
        let c = &self.cfg;
        let (gt, gh, gw) = c.video_grid();
        let (pt, ph, pw) = (c.patch_t, c.patch_h, c.patch_w);
        let mut frames = Frames::zeros(c.frames, c.height, c.width);
        let mut it = tokens.video.iter();
        for a in 0..gt {
            for b in 0..gh {
                for d in 0..gw {
                    for k in 0..pt {
                        let w = frames.w;
                        let fr = frames.frame_mut(a * pt + k);
                        for y in 0..ph {
                            let row = ((b * ph + y) * w + d * pw) * 3;
                            for v in &mut fr[row..row + pw * 3] {
                                let x = *it.next().unwrap_or(&-1.0);
                                *v = ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                            }
                        }
                    }
                }
            }
        }
        let samples = match &self.stft {
            None => tokens.audio.iter().map(|v| v.clamp(-1.0, 1.0)).collect(),
            Some(stft) => stft.decode(&tokens.audio, c.audio_samples()),
        };
        (
            frames,
            Audio {
                samples,
                channels: 1,
                sample_rate: c.sample_rate,
            },
        )
    }
}

/// RoPE positions `(t, h, w)` of every token: video `(τ + ½, row, col)` in video-patch time
/// units; audio at the centre time of its samples in the same units (so a sound and the
/// frames it belongs to share a time position) and `(h, w) = (0, 0)`; reference tokens at
/// `t = 0` (no time) with their own grid; then, when `image`, the in-context image tokens
/// at the first video row's positions.
pub fn positions(c: &ModelConfig, refs: usize, image: bool) -> Vec<[f32; 3]> {
    let (gt, gh, gw) = c.video_grid();
    let mut p = Vec::new();
    for a in 0..gt {
        for b in 0..gh {
            for d in 0..gw {
                p.push([a as f32 + 0.5, b as f32, d as f32]);
            }
        }
    }
    let samples_per_patch_time = c.sample_rate as f64 / c.fps * c.patch_t as f64;
    for i in 0..c.audio_tokens() {
        let centre = (i as f64 + 0.5) * c.audio_patch as f64;
        p.push([(centre / samples_per_patch_time) as f32, 0.0, 0.0]);
    }
    let g = c.ref_size / c.patch_h;
    let gw2 = c.ref_size / c.patch_w;
    for _ in 0..refs {
        for b in 0..g {
            for d in 0..gw2 {
                p.push([0.0, b as f32, d as f32]);
            }
        }
    }
    if image {
        p.extend_from_within(..c.image_tokens());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClipMetadata;

    fn cfg() -> ModelConfig {
        toml::from_str(include_str!("../../../configs/model/tiny.toml")).unwrap()
    }

    #[test]
    fn patchify_round_trips_exactly() {
        let c = cfg();
        let mut frames = Frames::zeros(c.frames, c.height, c.width);
        for (i, v) in frames.data.iter_mut().enumerate() {
            *v = (i * 7 % 251) as u8;
        }
        let n = c.audio_samples();
        let audio = Audio {
            samples: (0..n).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect(),
            channels: 1,
            sample_rate: c.sample_rate,
        };
        let clip = Clip {
            frames: frames.clone(),
            audio: audio.clone(),
            fps: c.fps,
            caption: String::new(),
            metadata: ClipMetadata::default(),
        };
        let codec = PatchCodec::new(&c);
        let tok = codec.encode(&clip).unwrap();
        assert_eq!(tok.video.len(), c.video_tokens() * c.video_patch_dim());
        assert_eq!(tok.audio.len(), c.audio_tokens() * c.audio_token_dim());
        let (f2, a2) = codec.decode(&tok);
        assert_eq!(f2, frames);
        assert_eq!(a2.samples, audio.samples);
    }

    #[test]
    fn the_spectrogram_codec_keeps_an_impact_where_it_was() {
        // per bin, and pooled into 32 mel bands
        for bands in [None, Some(32)] {
            impact_stays_in_its_token(bands);
        }
    }

    fn impact_stays_in_its_token(bands: Option<usize>) {
        let mut c = cfg();
        c.audio_codec = AudioCodec::Spectrogram;
        c.audio_hop = Some(125);
        c.audio_bands = bands;
        c.validate().unwrap();
        let n = c.audio_samples();
        // silence, then a decaying 600 Hz ping starting in audio token 3
        let start = 3 * c.audio_patch + 500;
        let samples: Vec<f32> = (0..n)
            .map(|i| match i.checked_sub(start) {
                Some(k) => {
                    let t = k as f32 / c.sample_rate as f32;
                    0.6 * (std::f32::consts::TAU * 600.0 * t).sin() * (-t / 0.05).exp()
                }
                None => 0.0,
            })
            .collect();
        let clip = Clip {
            frames: Frames::zeros(c.frames, c.height, c.width),
            audio: Audio {
                samples,
                channels: 1,
                sample_rate: c.sample_rate,
            },
            fps: c.fps,
            caption: String::new(),
            metadata: ClipMetadata::default(),
        };
        let codec = PatchCodec::new(&c);
        let tok = codec.encode(&clip).unwrap();
        assert_eq!(tok.audio.len(), c.audio_tokens() * c.audio_token_dim());
        // token 3 is loud, the tokens before it are at the floor
        let token_max = |i: usize| {
            let d = c.audio_token_dim();
            tok.audio[i * d..(i + 1) * d]
                .iter()
                .copied()
                .fold(f32::MIN, f32::max)
        };
        assert!(token_max(1) < -0.9 && token_max(3) > 0.7);
        let (_, audio) = codec.decode(&tok);
        assert_eq!(audio.samples.len(), n);
        let peak =
            |r: std::ops::Range<usize>| audio.samples[r].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak(0..start - 200) < 0.01, "{}", peak(0..start - 200));
        assert!(
            peak(start..start + 800) > 0.3,
            "{}",
            peak(start..start + 800)
        );
    }

    #[test]
    fn audio_and_video_share_the_time_axis() {
        let c = cfg();
        let p = positions(&c, 1, false);
        let nv = c.video_tokens();
        // the audio token of video frame 5 (samples 10000..12000) sits in video patch 1 (frames 4..8)
        let a5 = p[nv + 5][0];
        assert!(a5 > 1.0 && a5 < 2.0, "{a5}");
        assert_eq!(p.len(), nv + c.audio_tokens() + c.ref_tokens());
    }

    #[test]
    fn a_clip_of_the_wrong_size_is_refused_by_name() {
        let c = cfg();
        let clip = Clip {
            frames: Frames::zeros(8, 64, 64),
            audio: Audio::silence(16000, 1, 16000),
            fps: 8.0,
            caption: String::new(),
            metadata: ClipMetadata {
                clip_id: "x7".into(),
                ..ClipMetadata::default()
            },
        };
        let e = PatchCodec::new(&c).encode(&clip).unwrap_err().to_string();
        assert!(e.contains("x7") && e.contains("8×64×64"), "{e}");
    }
}
