//! Clips in and out of the server: an MP4 fitted to the model's frame size and sample
//! rate, frame and sample slicing for stitching, thumbnails and spritesheets.

use sonora_framework::media::{decode_mp4, encode_png, resample_audio, resize_frames};
use sonora_framework::model::ModelConfig;
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

/// An MP4 (a video of this server or an upload) as a clip of the model's frame size,
/// frame rate and sample rate, any length. The frame rate must match (frames are not
/// re-timed); frames are resized; the sound is mixed to mono and resampled (silence when
/// the file has none).
pub fn clip_from_mp4(bytes: &[u8], cfg: &ModelConfig) -> Result<Clip, String> {
    let d = decode_mp4(bytes).map_err(|e| format!("not a playable MP4: {e}"))?;
    if d.frames.t == 0 {
        return Err("the MP4 has no video frames".into());
    }
    if (d.fps - cfg.fps).abs() > 0.01 * cfg.fps {
        return Err(format!(
            "the MP4 runs at {:.3} fps; this model makes {} fps clips and does not re-time frames",
            d.fps, cfg.fps
        ));
    }
    let frames = if (d.frames.h, d.frames.w) == (cfg.height, cfg.width) {
        d.frames
    } else {
        resize_frames(&d.frames, cfg.height, cfg.width).map_err(|e| format!("resizing: {e}"))?
    };
    let n = audio_len(frames.t, cfg);
    let mut mono = match d.audio {
        Some(a) => {
            let m = Audio {
                samples: a.to_mono(),
                channels: 1,
                sample_rate: a.sample_rate,
            };
            resample_audio(&m, cfg.sample_rate)
                .map_err(|e| format!("resampling the sound: {e}"))?
                .samples
        }
        None => Vec::new(),
    };
    mono.resize(n, 0.0);
    Ok(Clip {
        frames,
        audio: Audio {
            samples: mono,
            channels: 1,
            sample_rate: cfg.sample_rate,
        },
        fps: cfg.fps,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    })
}

/// Audio samples that go with `frames` frames.
pub fn audio_len(frames: usize, cfg: &ModelConfig) -> usize {
    (frames as f64 / cfg.fps * cfg.sample_rate as f64).round() as usize
}

/// Frames `start..end` of `clip` and their sound.
pub fn slice(clip: &Clip, start: usize, end: usize, cfg: &ModelConfig) -> Clip {
    let f = &clip.frames;
    let end = end.min(f.t);
    let fl = f.frame_len();
    let frames = Frames {
        data: f.data[start * fl..end * fl].to_vec(),
        t: end - start,
        h: f.h,
        w: f.w,
    };
    let (a0, a1) = (audio_len(start, cfg), audio_len(end, cfg));
    let s = &clip.audio.samples;
    let mut samples = s[a0.min(s.len())..a1.min(s.len())].to_vec();
    samples.resize(a1 - a0, 0.0);
    Clip {
        frames,
        audio: Audio {
            samples,
            channels: 1,
            sample_rate: clip.audio.sample_rate,
        },
        fps: clip.fps,
        caption: clip.caption.clone(),
        metadata: ClipMetadata::default(),
    }
}

/// `tail` appended to `clip`.
pub fn append(clip: &mut Clip, tail: &Clip) {
    clip.frames.data.extend_from_slice(&tail.frames.data);
    clip.frames.t += tail.frames.t;
    clip.audio.samples.extend_from_slice(&tail.audio.samples);
}

/// A model-length clip whose first frames (and their sound) are `prefix`, the rest the
/// last frame held and silence: what an extension is given (only its prefix is read).
pub fn padded(prefix: &Clip, cfg: &ModelConfig) -> Clip {
    let mut c = prefix.clone();
    let last = prefix.frames.frame(prefix.frames.t - 1).to_vec();
    while c.frames.t < cfg.frames {
        c.frames.data.extend_from_slice(&last);
        c.frames.t += 1;
    }
    c.audio.samples.resize(cfg.audio_samples(), 0.0);
    c
}

/// The first frame as a PNG (the `thumbnail` variant).
pub fn thumbnail(clip: &Clip) -> Result<Vec<u8>, String> {
    let f = &clip.frames;
    encode_png(f.frame(0), f.h, f.w).map_err(|e| e.to_string())
}

/// Every frame on a grid of at most 8 columns, left to right then down, as a PNG (the
/// `spritesheet` variant).
pub fn spritesheet(clip: &Clip) -> Result<Vec<u8>, String> {
    let f = &clip.frames;
    let cols = f.t.clamp(1, 8);
    let rows = f.t.div_ceil(cols);
    let (w, h) = (cols * f.w, rows * f.h);
    let mut px = vec![0u8; w * h * 3];
    for k in 0..f.t {
        let (r, c) = (k / cols, k % cols);
        let src = f.frame(k);
        for y in 0..f.h {
            let dst = ((r * f.h + y) * w + c * f.w) * 3;
            px[dst..dst + f.w * 3].copy_from_slice(&src[y * f.w * 3..(y + 1) * f.w * 3]);
        }
    }
    encode_png(&px, h, w).map_err(|e| e.to_string())
}
