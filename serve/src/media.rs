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

/// sonora's mark: a 5×7 "S" glyph, one row per byte, high bit first of 5.
const GLYPH: [u8; 7] = [
    0b01110, 0b10001, 0b10000, 0b01110, 0b00001, 0b10001, 0b01110,
];

/// Where the mark sits in frame `k` (top-left pixel): it walks a diagonal and bounces off
/// the edges, so it moves every frame and cannot be cropped out of one corner.
fn mark_position(k: usize, w: usize, h: usize, mw: usize, mh: usize) -> (usize, usize) {
    let bounce = |t: usize, span: usize| {
        if span == 0 {
            return 0;
        }
        let p = t % (2 * span);
        if p <= span { p } else { 2 * span - p }
    };
    (
        bounce(k, w.saturating_sub(mw)),
        bounce(k * 2 / 3 + 1, h.saturating_sub(mh)),
    )
}

/// The clip with sonora's visible, moving mark: an "S" in white on a dark plate, scaled
/// with the frame (at least 7 px tall), blended into every frame. It survives the H.264
/// encode (the plate and glyph differ from any scene by tens of levels) and shows in the
/// thumbnail and spritesheet made from the marked frames.
pub fn watermark(clip: &Clip) -> Clip {
    let mut out = clip.clone();
    let f = &mut out.frames;
    let s = (f.h / 32).max(1);
    let (mw, mh) = (7 * s, 9 * s);
    for k in 0..f.t {
        let (x0, y0) = mark_position(k, f.w, f.h, mw, mh);
        let (w, h) = (f.w, f.h);
        let fr = f.frame_mut(k);
        for y in 0..mh.min(h - y0) {
            for x in 0..mw.min(w - x0) {
                let (gx, gy) = (x / s, y / s);
                let on = (1..6).contains(&gx)
                    && (1..8).contains(&gy)
                    && GLYPH[gy - 1] >> (4 - (gx - 1)) & 1 == 1;
                let (target, alpha) = if on { (255.0, 0.85) } else { (0.0, 0.6) };
                let i = ((y0 + y) * w + x0 + x) * 3;
                for c in &mut fr[i..i + 3] {
                    *c = (*c as f32 * (1.0 - alpha) + target * alpha).round() as u8;
                }
            }
        }
    }
    out
}
