//! Perturbed copies of ground-truth synthetic clips, each breaking one property a metric
//! claims to measure. The copy keeps the real clip's labels (the prompt), so a metric
//! that reads the prompt sees a clip that no longer matches it.

use serde::Serialize;
use sonora_datasets::labels::PhysicsLabels;
use sonora_datasets::synth::{Scene, SynthClip, SynthConfig, clip_from_scene, roster};
use sonora_framework::{Clip, Frames};

/// One kind of corruption.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Perturbation {
    /// Frames and sound played backwards.
    TimeReversed,
    /// The first object jumps across the frame half way through.
    Teleported,
    /// The first object disappears half way through.
    Vanished,
    /// The middle three quarters of the clip repeat one frame, then jump on.
    Frozen,
    /// The whole clip is its first frame held (the sound kept): a still image.
    Still,
    /// One object stops in mid-air early in the clip and hangs there to the end (the
    /// rest of the scene and the sound go on).
    Hovering,
    /// The sound track of another scene (its impacts belong to other contacts).
    SoundSwapped,
    /// Audio delayed (positive) or advanced (negative) by this many ms.
    AudioShifted(i32),
    /// The scene re-simulated with gravity times this factor.
    GravityScaled(f64),
    /// Colours drift steadily over the clip.
    ColourDrift,
    /// Every other frame brightened.
    Flicker,
    /// The scene's character replaced by another roster character.
    CharacterSwapped,
}

impl Perturbation {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Self::TimeReversed => "time_reversed".into(),
            Self::Teleported => "teleported".into(),
            Self::Vanished => "vanished".into(),
            Self::Frozen => "frozen".into(),
            Self::Still => "still".into(),
            Self::Hovering => "hovering".into(),
            Self::SoundSwapped => "sound_swapped".into(),
            Self::AudioShifted(ms) => format!("audio_shift_{ms:+}ms"),
            Self::GravityScaled(k) => format!("gravity_x{k}"),
            Self::ColourDrift => "colour_drift".into(),
            Self::Flicker => "flicker".into(),
            Self::CharacterSwapped => "character_swapped".into(),
        }
    }
}

/// The perturbed copy of `real` (made from `scene` under `cfg`), or `None` when the
/// perturbation does not apply (no character to swap, no object in the air to stop, no
/// `donor` clip whose sound to take).
pub fn perturb(
    cfg: &SynthConfig,
    scene: &Scene,
    real: &SynthClip,
    p: Perturbation,
    donor: Option<&Clip>,
) -> Option<Clip> {
    let mut clip = real.clip.clone();
    let t = clip.frames.t;
    match p {
        Perturbation::TimeReversed => {
            let f = &real.clip.frames;
            for k in 0..t {
                clip.frames.frame_mut(k).copy_from_slice(f.frame(t - 1 - k));
            }
            clip.audio.samples.reverse();
        }
        Perturbation::Teleported | Perturbation::Vanished => {
            // the object that goes is one in view at the midpoint whose colour no other
            // object shares (else a tracker could not tell it went); the same scene without
            // it supplies the background behind it (a lone object is shrunk to a 1 px speck
            // at the top instead, since a scene needs one object)
            let j = target_object(&real.labels, t / 2);
            let bg = without_object(cfg, scene, real, j);
            let teleport = p == Perturbation::Teleported;
            move_object(
                &mut clip.frames,
                &real.labels,
                j,
                t / 2,
                teleport,
                bg.as_ref(),
            );
        }
        Perturbation::Frozen => {
            let still = real.clip.frames.frame(t / 8).to_vec();
            for k in t / 8..7 * t / 8 {
                clip.frames.frame_mut(k).copy_from_slice(&still);
            }
        }
        Perturbation::Still => {
            let first = real.clip.frames.frame(0).to_vec();
            for k in 1..t {
                clip.frames.frame_mut(k).copy_from_slice(&first);
            }
        }
        Perturbation::Hovering => {
            let (j, from) = airborne_object(&real.labels, t)?;
            let bg = without_object(cfg, scene, real, j);
            hold_object(&mut clip.frames, &real.labels, j, from, bg.as_ref());
        }
        Perturbation::SoundSwapped => {
            // the donor's track, looped or cut to this clip's length
            let d = &donor?.audio;
            if d.channels != clip.audio.channels
                || d.sample_rate != clip.audio.sample_rate
                || d.samples.is_empty()
            {
                return None;
            }
            for (i, s) in clip.audio.samples.iter_mut().enumerate() {
                *s = d.samples[i % d.samples.len()];
            }
        }
        Perturbation::AudioShifted(ms) => {
            let n = clip.audio.samples.len();
            let shift = (ms as f64 / 1000.0 * clip.audio.sample_rate as f64).round() as i64
                * clip.audio.channels as i64;
            let src = real.clip.audio.samples.clone();
            for (i, s) in clip.audio.samples.iter_mut().enumerate() {
                let j = i as i64 - shift;
                *s = if (0..n as i64).contains(&j) {
                    src[j as usize]
                } else {
                    0.0
                };
            }
        }
        Perturbation::GravityScaled(k) => {
            let mut s = scene.clone();
            s.gravity *= k;
            clip = clip_from_scene(cfg, real.split, 0, &s).ok()?.clip;
        }
        Perturbation::ColourDrift => {
            for k in 0..t {
                let d = 90.0 * k as f64 / (t.max(2) - 1) as f64;
                for px in clip.frames.frame_mut(k).chunks_mut(3) {
                    px[0] = (px[0] as f64 + d).min(255.0) as u8;
                    px[2] = (px[2] as f64 - d).max(0.0) as u8;
                }
            }
        }
        Perturbation::Flicker => {
            for k in (1..t).step_by(2) {
                for v in clip.frames.frame_mut(k) {
                    *v = v.saturating_add(28);
                }
            }
        }
        Perturbation::CharacterSwapped => {
            let i = scene.objects.iter().position(|o| o.character.is_some())?;
            let current = scene.objects[i].character.as_ref()?.id.clone();
            let cast = roster();
            let taken: Vec<_> = scene
                .objects
                .iter()
                .filter_map(|o| o.character.as_ref().map(|c| c.id.clone()))
                .collect();
            // the roster character least like the current one in colour
            let cur = cast.iter().find(|c| c.id == current)?;
            let other = cast
                .iter()
                .filter(|c| !taken.contains(&c.id))
                .max_by_key(|c| {
                    (0..3)
                        .map(|j| (c.primary[j] as i32 - cur.primary[j] as i32).abs())
                        .sum::<i32>()
                })?;
            let mut s = scene.clone();
            let o = &s.objects[i];
            s.objects[i] =
                sonora_datasets::synth::SceneObject::character(other.clone(), o.size, o.pos, o.vel);
            clip = clip_from_scene(cfg, real.split, 0, &s).ok()?.clip;
        }
    }
    Some(clip)
}

/// The index of the object to remove or teleport: the first one visible at frame `at`
/// whose colour (and character) no other object shares, else object 0.
fn target_object(labels: &PhysicsLabels, at: usize) -> usize {
    let objs = &labels.objects;
    (0..objs.len())
        .find(|&i| {
            let o = &objs[i];
            let seen = o.visible.get(at).copied().unwrap_or(false);
            let unique = objs.iter().enumerate().all(|(k, q)| {
                k == i
                    || (q.color != o.color
                        && (o.character_id.is_none() || q.character_id != o.character_id))
            });
            seen && unique && o.character_id.is_none()
        })
        .or_else(|| (0..objs.len()).find(|&i| objs[i].visible.get(at).copied().unwrap_or(false)))
        .unwrap_or(0)
}

/// The frames of `scene` rendered without object `j` (a lone object is shrunk to a 1 px
/// speck at the top instead, since a scene needs one object).
fn without_object(cfg: &SynthConfig, scene: &Scene, real: &SynthClip, j: usize) -> Option<Frames> {
    let mut s = scene.clone();
    if s.objects.len() > 1 {
        s.objects.remove(j);
    } else {
        s.objects[0].size = 1.0;
        s.objects[0].pos = [cfg.width as f64 / 2.0, 1.5];
        s.objects[0].vel = [0.0, 0.0];
    }
    clip_from_scene(cfg, real.split, 0, &s)
        .ok()
        .map(|b| b.clip.frames)
}

/// An object to stop in mid-air and the frame to stop it at: the first object whose
/// colour no other object shares that is in view, clear of the floor by more than its
/// own size and not behind the occluder at some frame in the first half of the clip (the
/// highest such frame of that half). `None` when no object is ever in the air there.
fn airborne_object(labels: &PhysicsLabels, t: usize) -> Option<(usize, usize)> {
    let objs = &labels.objects;
    let behind = |x: f64, y: f64, r: f64| {
        labels
            .occluder
            .as_ref()
            .is_some_and(|p| x > p.x0 - r && x < p.x1 + r && y > p.y0 - r && y < p.y1 + r)
    };
    (0..objs.len())
        .filter(|&i| {
            objs.iter()
                .enumerate()
                .all(|(k, q)| k == i || q.rgb != objs[i].rgb)
        })
        .find_map(|i| {
            let o = &objs[i];
            (1..t / 2)
                .filter(|&k| {
                    let (Some(&x), Some(&y)) = (o.center_x.get(k), o.center_y.get(k)) else {
                        return false;
                    };
                    o.visible.get(k).copied().unwrap_or(false)
                        && y as f64 + 2.0 * o.size < labels.floor_y
                        && !behind(x as f64, y as f64, o.size)
                })
                .min_by(|&a, &b| o.center_y[a].total_cmp(&o.center_y[b]))
                .map(|k| (i, k))
        })
}

/// From frame `from` on, object `which` stays where it was at `from`: it is removed from
/// every later frame as [`move_object`] removes it, and the pixels it covered at `from` are
/// drawn again at the same place.
fn hold_object(
    frames: &mut Frames,
    labels: &PhysicsLabels,
    which: usize,
    from: usize,
    background: Option<&Frames>,
) {
    let Some(o) = labels.objects.get(which) else {
        return;
    };
    let (h, w) = (frames.h, frames.w);
    let r = o.size * 1.3 + 1.0;
    let (cx, cy) = (o.center_x[from] as f64, o.center_y[from] as f64);
    let held: Vec<(usize, [u8; 3])> = (0..h * w)
        .filter(|i| {
            let (px, py) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            (px - cx).powi(2) + (py - cy).powi(2) <= r * r
        })
        .map(|i| {
            let f = frames.frame(from);
            (i, [f[3 * i], f[3 * i + 1], f[3 * i + 2]])
        })
        .collect();
    move_object(frames, labels, which, from + 1, false, background);
    for k in from + 1..frames.t {
        for (i, rgb) in &held {
            frames.frame_mut(k)[3 * i..3 * i + 3].copy_from_slice(rgb);
        }
    }
}

/// From frame `from` on, removes object `which` (filling its disc from `background`, the scene
/// rendered without it, or else from the frame where it is farthest away) and, if
/// `teleport`, draws it again displaced by half the width and a third of the height.
fn move_object(
    frames: &mut Frames,
    labels: &PhysicsLabels,
    which: usize,
    from: usize,
    teleport: bool,
    background: Option<&Frames>,
) {
    let Some(o) = labels.objects.get(which) else {
        return;
    };
    let (h, w) = (frames.h, frames.w);
    let r = o.size * 1.3 + 1.0;
    let orig = frames.clone();
    let far = |x: f64, y: f64| {
        (0..orig.t)
            .max_by(|&a, &b| {
                let da = (o.center_x[a] as f64 - x).powi(2) + (o.center_y[a] as f64 - y).powi(2);
                let db = (o.center_x[b] as f64 - x).powi(2) + (o.center_y[b] as f64 - y).powi(2);
                da.total_cmp(&db)
            })
            .unwrap_or(0)
    };
    let (dx, dy) = ((w / 2) as i64, -((h / 3) as i64));
    for k in from..orig.t {
        let (cx, cy) = (o.center_x[k] as f64, o.center_y[k] as f64);
        let mut patch = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                if (px - cx).powi(2) + (py - cy).powi(2) <= r * r {
                    let i = (y * w + x) * 3;
                    patch.push((
                        x as i64,
                        y as i64,
                        [orig.frame(k)[i], orig.frame(k)[i + 1], orig.frame(k)[i + 2]],
                    ));
                    let bg = match background {
                        Some(b) => [b.frame(k)[i], b.frame(k)[i + 1], b.frame(k)[i + 2]],
                        None => {
                            let j = far(px, py);
                            [orig.frame(j)[i], orig.frame(j)[i + 1], orig.frame(j)[i + 2]]
                        }
                    };
                    frames.frame_mut(k)[i..i + 3].copy_from_slice(&bg);
                }
            }
        }
        if teleport {
            for (x, y, rgb) in patch {
                let (nx, ny) = ((x + dx).rem_euclid(w as i64), y + dy);
                if (0..h as i64).contains(&ny) {
                    let i = (ny as usize * w + nx as usize) * 3;
                    frames.frame_mut(k)[i..i + 3].copy_from_slice(&rgb);
                }
            }
        }
    }
}
