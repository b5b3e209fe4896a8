//! Fitting a decoded clip to a target shape: frame sampling at the target fps, resize
//! to cover then crop, audio cut to the same span, channel mix and resampling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sonora_framework::media;
use sonora_framework::{Audio, Clip, Frames};

/// Where a window is taken from when the source is larger than the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum CropMode {
    /// Start of the clip / top-left.
    Start,
    /// Centred.
    #[default]
    Center,
    /// Uniformly random, seeded by (seed, epoch, clip position).
    Random,
}

/// Target of one bucket: frames × height × width at `fps`, audio at `sample_rate`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// Frames.
    pub frames: usize,
    /// Height px.
    pub height: usize,
    /// Width px.
    pub width: usize,
    /// Frames per second.
    pub fps: f64,
    /// Audio Hz.
    pub sample_rate: u32,
    /// Audio channels.
    pub channels: u16,
}

impl Target {
    /// Seconds of media the target covers.
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.fps
    }

    /// Audio samples per channel.
    pub fn audio_samples(&self) -> usize {
        (self.duration_s() * self.sample_rate as f64).round() as usize
    }
}

/// Fits `clip` to `target`. `rng_seed` drives random crops.
pub fn fit_clip(
    clip: &Clip,
    target: &Target,
    temporal: CropMode,
    spatial: CropMode,
    rng_seed: u64,
) -> Result<(Frames, Audio, f64), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let need = target.duration_s();
    let have = clip.duration_s();
    // Allow half a target frame of slack for rounding in the source's frame count.
    if have + 0.5 / target.fps < need {
        return Err(format!(
            "clip lasts {have:.3} s but the loader needs {need:.3} s ({} frames at {} fps)",
            target.frames, target.fps
        ));
    }
    let slack = (have - need).max(0.0);
    let t0 = match temporal {
        CropMode::Start => 0.0,
        CropMode::Center => slack / 2.0,
        CropMode::Random => {
            if slack > 0.0 {
                rng.random_range(0.0..=slack)
            } else {
                0.0
            }
        }
    };
    let frames = sample_frames(&clip.frames, clip.fps, t0, target.frames, target.fps);
    let frames = resize_cover(&frames, target.height, target.width, spatial, &mut rng)?;
    let audio = cut_audio(&clip.audio, t0, target)?;
    Ok((frames, audio, t0))
}

/// Picks `n` frames at `fps` starting at `t0`: frame k shows source time `t0 + k/fps`.
fn sample_frames(src: &Frames, src_fps: f64, t0: f64, n: usize, fps: f64) -> Frames {
    if (src_fps - fps).abs() < 1e-9 && t0 == 0.0 && src.t == n {
        return src.clone();
    }
    let mut out = Frames::zeros(n, src.h, src.w);
    for k in 0..n {
        let t = t0 + k as f64 / fps;
        let j = ((t * src_fps) + 1e-6).floor().max(0.0) as usize;
        let j = j.min(src.t - 1);
        out.frame_mut(k).copy_from_slice(src.frame(j));
    }
    out
}

/// Resizes so the frame covers `h×w`, then crops the excess.
fn resize_cover(
    f: &Frames,
    h: usize,
    w: usize,
    mode: CropMode,
    rng: &mut ChaCha8Rng,
) -> Result<Frames, String> {
    if (f.h, f.w) == (h, w) {
        return Ok(f.clone());
    }
    let scale = (h as f64 / f.h as f64).max(w as f64 / f.w as f64);
    let rh = ((f.h as f64 * scale).round() as usize).max(h);
    let rw = ((f.w as f64 * scale).round() as usize).max(w);
    let resized = media::resize_frames(f, rh, rw).map_err(|e| format!("resize: {e}"))?;
    if (rh, rw) == (h, w) {
        return Ok(resized);
    }
    let (top, left) = match mode {
        CropMode::Start => (0, 0),
        CropMode::Center => ((rh - h) / 2, (rw - w) / 2),
        CropMode::Random => (rng.random_range(0..=rh - h), rng.random_range(0..=rw - w)),
    };
    media::crop_frames(&resized, top, left, h, w).map_err(|e| format!("crop: {e}"))
}

/// Cuts the audio span `[t0, t0 + duration)` and converts it to the target rate and channels.
fn cut_audio(a: &Audio, t0: f64, target: &Target) -> Result<Audio, String> {
    let ch = a.channels.max(1) as usize;
    let start = (t0 * a.sample_rate as f64).round() as usize;
    let len = (target.duration_s() * a.sample_rate as f64).round() as usize;
    let mut span = vec![0.0f32; len * ch];
    let avail = a.num_frames().saturating_sub(start).min(len);
    span[..avail * ch].copy_from_slice(&a.samples[start * ch..(start + avail) * ch]);
    let cut = Audio {
        samples: span,
        channels: a.channels,
        sample_rate: a.sample_rate,
    };
    let mixed = match (a.channels, target.channels) {
        (c, t) if c == t => cut,
        (_, 1) => Audio {
            samples: cut.to_mono(),
            channels: 1,
            sample_rate: cut.sample_rate,
        },
        (1, 2) => Audio {
            samples: cut.samples.iter().flat_map(|&s| [s, s]).collect(),
            channels: 2,
            sample_rate: cut.sample_rate,
        },
        (c, t) => return Err(format!("cannot convert {c}-channel audio to {t} channels")),
    };
    let mut out =
        media::resample_audio(&mixed, target.sample_rate).map_err(|e| format!("resample: {e}"))?;
    out.samples
        .resize(target.audio_samples() * target.channels as usize, 0.0);
    Ok(out)
}

sonora_framework::config_enum!(CropMode {
    "start" => CropMode::Start,
    "center" => CropMode::Center,
    "random" => CropMode::Random,
});
