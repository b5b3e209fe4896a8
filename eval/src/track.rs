//! Object tracking for the physics suite: prompt-keyed colour segmentation, connected
//! components, and one track per prompted object.
//!
//! The synthetic world's prompts name each object's colour (and characters' colours), so
//! each frame is segmented by those colours: pixels near the object's primary colour, plus
//! its texture's secondary colour where it touches them; the largest 4-connected component
//! is the object. Only scene-level facts of the prompt are used — never the ground-truth
//! tracks or contacts.

use sonora_datasets::labels::PhysicsLabels;
use sonora_datasets::synth::{roster, secondary_color};
use sonora_framework::Frames;

/// Colours that identify one prompted object.
#[derive(Clone, Debug)]
pub struct ObjectKey {
    /// Main colour (prompt colour, or a character's primary colour).
    pub primary: [u8; 3],
    /// Texture / pattern colour, accepted only next to primary pixels.
    pub secondary: [u8; 3],
    /// Prompted radius, px (sets the smallest area that counts as visible).
    pub size: f64,
}

/// Where an object is in one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrackPoint {
    /// Enough pixels were found to call the object visible.
    pub visible: bool,
    /// Centroid x, px.
    pub cx: f64,
    /// Centroid y, px (down).
    pub cy: f64,
    /// Pixels in the object's component.
    pub area: f64,
    /// Lowest pixel row + 1 (the object's bottom edge), px.
    pub bottom: f64,
    /// Mean colour of the component's primary pixels.
    pub rgb: [f64; 3],
}

/// Keys for every object of a prompted scene.
pub fn keys_from_labels(l: &PhysicsLabels) -> Vec<ObjectKey> {
    let cast = roster();
    l.objects
        .iter()
        .map(|o| {
            let ch = o
                .character_id
                .as_ref()
                .and_then(|id| cast.iter().find(|c| &c.id == id));
            let primary = match ch {
                Some(c) => c.primary,
                None => [o.rgb[0], o.rgb[1], o.rgb[2]],
            };
            let secondary = ch.map_or_else(|| secondary_color(primary), |c| c.secondary);
            ObjectKey {
                primary,
                secondary,
                size: o.size,
            }
        })
        .collect()
}

/// Max-channel colour distance.
fn dist(p: &[u8], c: [f64; 3]) -> f64 {
    (0..3)
        .map(|i| (p[i] as f64 - c[i]).abs())
        .fold(0.0, f64::max)
}

/// Colour tolerance (max channel difference) for a pixel to match a key colour.
pub const TOLERANCE: f64 = 48.0;

/// Tracks every key through `frames`: `keys.len()` tracks of `T` points each. The key's
/// colour follows the object slowly (so gradual lighting changes do not lose it).
pub fn track_objects(frames: &Frames, keys: &[ObjectKey]) -> Vec<Vec<TrackPoint>> {
    keys.iter().map(|k| track_one(frames, k)).collect()
}

fn track_one(frames: &Frames, key: &ObjectKey) -> Vec<TrackPoint> {
    let (h, w) = (frames.h, frames.w);
    let min_area = (0.15 * std::f64::consts::PI * key.size * key.size).max(3.0);
    let mut primary = key.primary.map(f64::from);
    let secondary = key.secondary.map(f64::from);
    let mut out = Vec::with_capacity(frames.t);
    let mut mask = vec![0u8; h * w]; // 0 none, 1 primary, 2 secondary
    for k in 0..frames.t {
        let f = frames.frame(k);
        // primary pixels, then secondary pixels within 2 px of a primary one
        for (i, m) in mask.iter_mut().enumerate() {
            *m = u8::from(dist(&f[i * 3..i * 3 + 3], primary) <= TOLERANCE);
        }
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if mask[i] == 0
                    && dist(&f[i * 3..i * 3 + 3], secondary) <= TOLERANCE
                    && near_primary(&mask, h, w, y, x)
                {
                    mask[i] = 2;
                }
            }
        }
        let p = largest_component(&mask, f, h, w);
        let visible = p.area >= min_area;
        if visible {
            // follow slow colour changes
            for (c, seen) in primary.iter_mut().zip(p.rgb) {
                *c = 0.7 * *c + 0.3 * seen;
            }
        }
        out.push(TrackPoint { visible, ..p });
    }
    out
}

fn near_primary(mask: &[u8], h: usize, w: usize, y: usize, x: usize) -> bool {
    let (y0, y1, x0, x1) = (
        y.saturating_sub(2),
        (y + 2).min(h - 1),
        x.saturating_sub(2),
        (x + 2).min(w - 1),
    );
    (y0..=y1).any(|yy| (x0..=x1).any(|xx| mask[yy * w + xx] == 1))
}

/// The largest 4-connected component of a non-zero mask (`H×W`), measured on frame `f`.
fn largest_component(mask: &[u8], f: &[u8], h: usize, w: usize) -> TrackPoint {
    let mut label = vec![u32::MAX; h * w];
    let mut best = TrackPoint::default();
    let mut stack = Vec::new();
    for start in 0..h * w {
        if mask[start] == 0 || label[start] != u32::MAX {
            continue;
        }
        let (mut n, mut sx, mut sy, mut bottom) = (0.0, 0.0, 0.0, 0.0f64);
        let (mut rgb, mut np) = ([0.0f64; 3], 0.0f64);
        label[start] = start as u32;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (y, x) = (i / w, i % w);
            n += 1.0;
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
            bottom = bottom.max(y as f64 + 1.0);
            if mask[i] == 1 {
                np += 1.0;
                for c in 0..3 {
                    rgb[c] += f[i * 3 + c] as f64;
                }
            }
            let mut push = |j: usize| {
                if mask[j] != 0 && label[j] == u32::MAX {
                    label[j] = start as u32;
                    stack.push(j);
                }
            };
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < w {
                push(i + 1);
            }
            if y > 0 {
                push(i - w);
            }
            if y + 1 < h {
                push(i + w);
            }
        }
        if n > best.area {
            best = TrackPoint {
                visible: true,
                cx: sx / n,
                cy: sy / n,
                area: n,
                bottom,
                rgb: rgb.map(|v| v / np.max(1.0)),
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use sonora_datasets::synth::{Split, SynthConfig, generate_clip};

    use super::*;

    #[test]
    fn tracks_follow_the_ground_truth_centres() {
        let cfg = SynthConfig {
            occluder_prob: 0.0,
            ..SynthConfig::default()
        };
        let mut errs = Vec::new();
        for i in 0..6 {
            let s = generate_clip(&cfg, Split::Val, i).unwrap();
            let tracks = track_objects(&s.clip.frames, &keys_from_labels(&s.labels));
            for (tr, o) in tracks.iter().zip(&s.labels.objects) {
                for (k, p) in tr.iter().enumerate() {
                    if p.visible && o.visible[k] {
                        let d = ((p.cx - o.center_x[k] as f64).powi(2)
                            + (p.cy - o.center_y[k] as f64).powi(2))
                        .sqrt();
                        errs.push(d);
                    }
                }
            }
        }
        errs.sort_by(f64::total_cmp);
        let median = errs[errs.len() / 2];
        assert!(
            errs.len() > 100 && median < 1.5,
            "median centre error {median} px over {}",
            errs.len()
        );
    }
}
