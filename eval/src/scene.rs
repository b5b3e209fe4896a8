//! Fitting ground truth to what a model generates: a generated clip covers a window of the
//! scene its prompt describes, at the model's size. The scene's labels are cut to that
//! window, and the clip is scaled back up to the labels' pixel grid so the tracker's pixel
//! thresholds mean what they mean on ground truth.

use sonora_datasets::labels::PhysicsLabels;
use sonora_framework::media::resize_rgb;
use sonora_framework::{Clip, Frames};

use crate::EvalError;

/// The labels of frames `[start, start + frames)` (contacts re-timed to the window start).
pub fn window_labels(l: &PhysicsLabels, start: usize, frames: usize, fps: f64) -> PhysicsLabels {
    let cut = |v: &[f32]| {
        v.iter()
            .skip(start)
            .take(frames)
            .copied()
            .collect::<Vec<_>>()
    };
    let t0 = start as f64 / fps;
    let t1 = (start + frames) as f64 / fps;
    let mut out = l.clone();
    for o in &mut out.objects {
        o.center_x = cut(&o.center_x);
        o.center_y = cut(&o.center_y);
        o.visible = o.visible.iter().skip(start).take(frames).copied().collect();
    }
    out.contacts = l
        .contacts
        .iter()
        .filter(|c| c.time_s >= t0 && c.time_s < t1)
        .map(|c| {
            let mut c = c.clone();
            c.time_s -= t0;
            c.frame = c.frame.saturating_sub(start as u32);
            c
        })
        .collect();
    out
}

/// `clip` with every frame resized to `h × w` (bilinear).
pub fn upscale(clip: &Clip, h: usize, w: usize) -> Result<Clip, EvalError> {
    let f = &clip.frames;
    if (f.h, f.w) == (h, w) {
        return Ok(clip.clone());
    }
    let mut out = Frames::zeros(f.t, h, w);
    for k in 0..f.t {
        let px = resize_rgb(f.frame(k), f.h, f.w, h, w)
            .map_err(|e| EvalError::Invalid(format!("resizing frame {k}: {e}")))?;
        out.frame_mut(k).copy_from_slice(&px);
    }
    Ok(Clip {
        frames: out,
        ..clip.clone()
    })
}
