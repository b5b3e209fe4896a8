//! The physics suite, on the synthetic world's domain: gravity, bounces, object
//! permanence, appearance constancy, audio-visual impact sync and prompt adherence.
//!
//! Inputs are a decoded clip and the scene its prompt describes ([`PhysicsLabels`]):
//! gravity, floor line, occluder, and each object's colour and size. The per-frame
//! ground-truth tracks and contacts in the labels are never read: objects are tracked
//! from pixels ([`crate::track`]) and impacts found in the audio ([`crate::onsets`]).

use sonora_datasets::labels::PhysicsLabels;
use sonora_framework::Clip;

use crate::error::{EvalError, check_clip};
use crate::metric::{MetricInfo, Scores};
use crate::onsets::detect_onsets;
use crate::track::{TrackPoint, keys_from_labels, track_objects};

/// The physics metrics.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "physics.gravity_rel_error",
        range: "[0, ∞)",
        higher_is_better: false,
        measures: "|fitted free-flight acceleration − the scene's gravity| / gravity (median second difference of tracked heights in free flight), blended with error 1 for every frame triple in which an object hangs still in mid-air with nothing under it",
    },
    MetricInfo {
        name: "physics.bounce_violation",
        range: "[0, ∞) (fraction of frame height)",
        higher_is_better: false,
        measures: "energy gained between successive bounce apexes plus sinking below the floor line, in frame heights",
    },
    MetricInfo {
        name: "physics.permanence_violation",
        range: "[0, 1]",
        higher_is_better: false,
        measures: "share of object-frames where an object is missing while not behind the occluder or out of frame, or lands over 0.3 frame heights from where gravity, floor and walls would carry it",
    },
    MetricInfo {
        name: "physics.appearance_drift",
        range: "[0, ∞)",
        higher_is_better: false,
        measures: "largest change of an object's mean colour (/255) plus the spread of its visible size, relative to its first appearance",
    },
    MetricInfo {
        name: "physics.av_offset_ms",
        range: "[0, 500] ms",
        higher_is_better: false,
        measures: "|shift| of the audio that best lines its onsets up with the visible floor contacts (±500 ms search)",
    },
    MetricInfo {
        name: "physics.av_match_rate",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "share of the floor contacts seen in the pixels (timed by extrapolating the fall) with an audio onset within ±50 ms",
    },
    MetricInfo {
        name: "physics.contacts_heard",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "share of the scene's audible labelled contacts (floor, walls, objects, hidden ones too; at least a fifth of the fastest contact's speed) with an audio onset within ±50 ms; scored only where the video is the real one",
    },
    MetricInfo {
        name: "physics.prompt_adherence",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "share of prompted objects seen (≥ 10% of frames) with their prompted colour, times the floor colour's match to the prompted material",
    },
];

/// Scores `clip` against the scene its prompt describes.
pub fn physics_scores(clip: &Clip, scene: &PhysicsLabels) -> Result<Scores, EvalError> {
    check_clip(clip)?;
    let f = &clip.frames;
    let keys = keys_from_labels(scene);
    if keys.is_empty() {
        return Err(EvalError::Invalid("the scene has no objects".into()));
    }
    let tracks = track_objects(f, &keys);
    let (h, w, fps) = (f.h as f64, f.w as f64, clip.fps);
    let mut s = Scores::new();

    if let Some(e) = gravity_error(&tracks, scene, fps) {
        s.insert("physics.gravity_rel_error".into(), e);
    }
    s.insert(
        "physics.bounce_violation".into(),
        bounce_violation(&tracks, scene.floor_y) / h,
    );
    s.insert(
        "physics.permanence_violation".into(),
        permanence_violation(&tracks, scene, h, w, fps),
    );
    s.insert("physics.appearance_drift".into(), appearance_drift(&tracks));
    let contacts = visual_contacts(&tracks, scene, fps);
    if !contacts.is_empty() {
        let onsets = detect_onsets(&clip.audio);
        let (offset, rate) = av_sync(&contacts, &onsets);
        if let Some(o) = offset {
            s.insert("physics.av_offset_ms".into(), o * 1000.0);
        }
        s.insert("physics.av_match_rate".into(), rate);
    }
    s.insert(
        "physics.prompt_adherence".into(),
        prompt_adherence(clip, &tracks, scene),
    );
    Ok(s)
}

/// The gravity error: the relative error of the fitted free-flight acceleration over its
/// `n` frame triples, blended with error 1 for each of the `m` triples in which an object
/// hangs unsupported in mid-air (acceleration 0 where gravity says `g`):
/// `(n·e + m) / (n + m)`. `None` when neither kind of triple was seen.
fn gravity_error(tracks: &[Vec<TrackPoint>], scene: &PhysicsLabels, fps: f64) -> Option<f64> {
    let fitted = fitted_gravity(tracks, scene.floor_y, fps);
    let m = hovering_triples(tracks, scene) as f64;
    match fitted {
        Some((g, n)) => {
            let e = (g - scene.gravity).abs() / scene.gravity;
            Some((n as f64 * e + m) / (n as f64 + m))
        }
        None if m >= 2.0 => Some(1.0),
        None => None,
    }
}

/// Frame triples in which an object is visible and still (its centre moves ≤ 0.5 px) with
/// its bottom clear of the floor and no other object right under it: an object that
/// stops in mid-air. Objects resting on the floor or on another object are supported.
fn hovering_triples(tracks: &[Vec<TrackPoint>], scene: &PhysicsLabels) -> usize {
    let mut n = 0;
    for (i, tr) in tracks.iter().enumerate() {
        let r = scene.objects.get(i).map_or(1.0, |o| o.size);
        for k in 1..tr.len().saturating_sub(1) {
            let (a, b, c) = (tr[k - 1], tr[k], tr[k + 1]);
            if !(a.visible && b.visible && c.visible) {
                continue;
            }
            let still = [(a, b), (b, c)]
                .iter()
                .all(|(p, q)| (q.cy - p.cy).abs() <= 0.5 && (q.cx - p.cx).abs() <= 0.5);
            let airborne = b.bottom < scene.floor_y - 2.0;
            let on_another = tracks.iter().enumerate().any(|(j, other)| {
                let (Some(q), Some(o)) = (other.get(k), scene.objects.get(j)) else {
                    return false;
                };
                let top = q.cy - o.size;
                j != i
                    && q.visible
                    && (q.cx - b.cx).abs() < r + o.size
                    && (top - b.bottom).abs() < 3.0
            });
            if still && airborne && !on_another {
                n += 1;
            }
        }
    }
    n
}

/// Labelled contacts heard: the share of the scene's audible contacts before `until_s`
/// (the part of the clip whose video is real) with an audio onset within
/// [`HEARD_WINDOW_S`]. Audible: at least a fifth of the clip's fastest contact's speed
/// (an impact's loudness grows with its speed, so slower ones drown in the ring of the
/// last), and contacts closer than [`MERGE_S`] count as one. `None` when no audible
/// contact falls in that part. Unlike `av_match_rate`, which times the floor contacts it
/// can see in the pixels, this reads the scene's labels: it counts contacts behind the
/// occluder and against walls and other objects, and is exact in time, so it needs a
/// video whose events are the labelled ones.
pub fn contacts_heard(clip: &Clip, scene: &PhysicsLabels, until_s: f64) -> Option<f64> {
    let loudest = scene.contacts.iter().map(|c| c.speed).fold(0.0, f64::max);
    let mut times: Vec<f64> = scene
        .contacts
        .iter()
        .filter(|c| c.time_s < until_s && c.speed >= 0.2 * loudest)
        .map(|c| c.time_s)
        .collect();
    times.sort_by(f64::total_cmp);
    let mut events: Vec<f64> = Vec::new();
    for t in times {
        if events.last().is_none_or(|&l| t - l >= MERGE_S) {
            events.push(t);
        }
    }
    if events.is_empty() {
        return None;
    }
    let onsets = detect_onsets(&clip.audio);
    let heard = events
        .iter()
        .filter(|&&c| onsets.iter().any(|&o| (o - c).abs() <= HEARD_WINDOW_S))
        .count();
    Some(heard as f64 / events.len() as f64)
}

/// How far (s) an onset may lie from a labelled contact to count as its sound (people
/// notice sound leading picture by about 45 ms and lagging it by about 125 ms; 50 ms
/// either way also keeps another scene's impacts from landing on these contacts by chance).
pub const HEARD_WINDOW_S: f64 = 0.05;

/// Labelled contacts closer than this (s) make one sound event (the onset detector's own
/// refractory time).
pub const MERGE_S: f64 = 0.04;

/// Free-flight acceleration: the median of `Δ²y · fps²` over frame triples where the
/// object is visible, whole, moving and clear of the floor, and does not turn from falling
/// to rising (which would put a bounce inside the triple); with the number of triples.
fn fitted_gravity(tracks: &[Vec<TrackPoint>], floor_y: f64, fps: f64) -> Option<(f64, usize)> {
    let mut acc = Vec::new();
    for tr in tracks {
        for k in 1..tr.len().saturating_sub(1) {
            let (a, b, c) = (tr[k - 1], tr[k], tr[k + 1]);
            let clear = [a, b, c]
                .iter()
                .all(|p| p.visible && p.bottom < floor_y - 1.0);
            let moving = (c.cy - a.cy).abs() > 0.5 || (b.cy - a.cy).abs() > 0.5;
            let whole = (a.area - c.area).abs() < 0.25 * a.area.max(c.area);
            let bounced = b.cy - a.cy > 0.5 && c.cy - b.cy < -0.5;
            if clear && moving && whole && !bounced {
                acc.push((a.cy - 2.0 * b.cy + c.cy) * fps * fps);
            }
        }
    }
    if acc.len() < 3 {
        return None;
    }
    acc.sort_by(f64::total_cmp);
    Some((acc[acc.len() / 2], acc.len()))
}

/// Sum over objects of apex-height gains (> 2 px) between successive bounces, plus the
/// deepest sinking of an object's bottom below the floor (> 1.5 px), in px.
fn bounce_violation(tracks: &[Vec<TrackPoint>], floor_y: f64) -> f64 {
    let mut total = 0.0;
    for tr in tracks {
        // apexes: visible local minima of y (highest points) between falls
        let mut apex_heights = Vec::new();
        for k in 1..tr.len().saturating_sub(1) {
            let (a, b, c) = (tr[k - 1], tr[k], tr[k + 1]);
            if a.visible && b.visible && c.visible && b.cy < a.cy && b.cy <= c.cy {
                apex_heights.push(floor_y - b.bottom);
            }
        }
        for pair in apex_heights.windows(2) {
            total += (pair[1] - pair[0] - 2.0).max(0.0);
        }
        let sink = tr
            .iter()
            .filter(|p| p.visible)
            .map(|p| p.bottom - floor_y)
            .fold(0.0, f64::max);
        total += (sink - 1.5).max(0.0);
    }
    total
}

/// Share of object-frames with an unexplained disappearance or an implausible jump.
fn permanence_violation(
    tracks: &[Vec<TrackPoint>],
    scene: &PhysicsLabels,
    h: f64,
    w: f64,
    fps: f64,
) -> f64 {
    let t = tracks.first().map_or(0, Vec::len);
    let max_jump = 0.3 * h;
    let mut bad = 0usize;
    for (tr, o) in tracks.iter().zip(&scene.objects) {
        let r = o.size;
        let hidden = |x: f64, y: f64| {
            let out = x < r || x > w - r || y < r;
            let behind = scene
                .occluder
                .as_ref()
                .is_some_and(|p| x > p.x0 - r && x < p.x1 + r && y > p.y0 - r && y < p.y1 + r);
            out || behind
        };
        let vis: Vec<usize> = (0..t).filter(|&k| tr[k].visible).collect();
        if vis.is_empty() {
            bad += t;
            continue;
        }
        for k in 0..t {
            if tr[k].visible {
                continue;
            }
            // where the object should be: interpolate between the nearest visible frames
            let prev = vis.iter().rev().find(|&&j| j < k).copied();
            let next = vis.iter().find(|&&j| j > k).copied();
            let (x, y) = match (prev, next) {
                (Some(a), Some(b)) => {
                    let u = (k - a) as f64 / (b - a) as f64;
                    (
                        tr[a].cx + u * (tr[b].cx - tr[a].cx),
                        tr[a].cy + u * (tr[b].cy - tr[a].cy),
                    )
                }
                (Some(a), None) | (None, Some(a)) => (tr[a].cx, tr[a].cy),
                (None, None) => unreachable!("vis is not empty"),
            };
            if !hidden(x, y) {
                bad += 1;
            }
        }
        // jumps: a frame far from where constant-gravity motion (reflected off the floor
        // and walls) would have carried the object from the two frames before
        let g_px = scene.gravity / (fps * fps);
        for k in 2..t {
            let (a, b, c) = (tr[k - 2], tr[k - 1], tr[k]);
            if !(a.visible && b.visible && c.visible) {
                continue;
            }
            let mut px = 2.0 * b.cx - a.cx;
            let mut py = 2.0 * b.cy - a.cy + g_px;
            if py + r > scene.floor_y {
                py = 2.0 * (scene.floor_y - r) - py;
            }
            if px < r {
                px = 2.0 * r - px;
            } else if px > w - r {
                px = 2.0 * (w - r) - px;
            }
            if ((c.cx - px).powi(2) + (c.cy - py).powi(2)).sqrt() > max_jump {
                bad += 1;
            }
        }
    }
    bad as f64 / (t * tracks.len()).max(1) as f64
}

/// Largest colour change (/255) plus the relative size spread of any object.
fn appearance_drift(tracks: &[Vec<TrackPoint>]) -> f64 {
    let mut worst: f64 = 0.0;
    for tr in tracks {
        let vis: Vec<&TrackPoint> = tr.iter().filter(|p| p.visible).collect();
        let Some(first) = vis.first() else { continue };
        let colour = vis
            .iter()
            .map(|p| {
                (0..3)
                    .map(|c| (p.rgb[c] - first.rgb[c]).abs())
                    .fold(0.0, f64::max)
            })
            .fold(0.0, f64::max)
            / 255.0;
        let mut areas: Vec<f64> = vis.iter().map(|p| p.area).collect();
        areas.sort_by(f64::total_cmp);
        let med = areas[areas.len() / 2].max(1.0);
        // 80th percentile of |area − median| / median (occluded frames shrink the area)
        let mut dev: Vec<f64> = areas.iter().map(|a| (a - med).abs() / med).collect();
        dev.sort_by(f64::total_cmp);
        let size = dev[(dev.len() * 4 / 5).min(dev.len() - 1)];
        worst = worst.max(colour + size);
    }
    worst
}

/// Estimated times (s) of floor contacts (a fall turning into a rise near the floor line,
/// timed by extrapolating the fall under the scene's gravity). Wall and object-object
/// contacts are not timed from pixels (a frame's resolution is too coarse for them).
fn visual_contacts(tracks: &[Vec<TrackPoint>], scene: &PhysicsLabels, fps: f64) -> Vec<f64> {
    let g = scene.gravity;
    let dt = 1.0 / fps;
    let mut out = Vec::new();
    for (tr, o) in tracks.iter().zip(&scene.objects) {
        for k in 1..tr.len().saturating_sub(1) {
            let (a, b, c) = (tr[k - 1], tr[k], tr[k + 1]);
            if !(a.visible && b.visible && c.visible) {
                continue;
            }
            let (v_in, v_out) = (b.cy - a.cy, c.cy - b.cy);
            let near_floor = b.bottom.max(c.bottom) > scene.floor_y - 0.6 * o.size - 2.0;
            if v_in > 0.5 && v_out < v_in - 0.5 * g * dt * dt - 1.0 && near_floor {
                // bottom at t_k falling with speed v (px/s); solve b + v·τ + g·τ²/2 = floor_y
                let v = v_in * fps + 0.5 * g * dt;
                let gap = (scene.floor_y - b.bottom).max(0.0);
                let tau = ((v * v + 2.0 * g * gap).sqrt() - v) / g;
                out.push(k as f64 * dt + tau.clamp(0.0, dt));
            }
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

/// `(|lag| of the audio relative to the visual contacts, share of contacts with an onset
/// within [`HEARD_WINDOW_S`])`. The lag is the shift in ±500 ms (2 ms steps) under which most
/// contacts have an onset within ±20 ms; ties go to the smallest shift, and no lag is
/// reported when no shift matches any contact.
fn av_sync(contacts: &[f64], onsets: &[f64]) -> (Option<f64>, f64) {
    let hits = |lag: f64, tol: f64| {
        contacts
            .iter()
            .filter(|&&c| onsets.iter().any(|&o| (o - c - lag).abs() <= tol))
            .count()
    };
    let mut best: Option<(usize, f64)> = None;
    for step in 0..=250 {
        for lag in [step as f64 * 0.002, -(step as f64) * 0.002] {
            let n = hits(lag, 0.020);
            if n > 0 && best.is_none_or(|(bn, _)| n > bn) {
                best = Some((n, lag));
            }
        }
    }
    let rate = hits(0.0, HEARD_WINDOW_S) as f64 / contacts.len() as f64;
    (best.map(|(_, lag)| lag.abs()), rate)
}

/// Share of prompted objects seen with their colour in at least a tenth of the frames
/// (occluders may hide them for the rest), times how well the floor band matches the prompted floor material's colour.
fn prompt_adherence(clip: &Clip, tracks: &[Vec<TrackPoint>], scene: &PhysicsLabels) -> f64 {
    let t = clip.frames.t;
    let need = (t / 10).max(2);
    let found = tracks
        .iter()
        .filter(|tr| tr.iter().filter(|p| p.visible).count() >= need)
        .count();
    let objects = found as f64 / tracks.len() as f64;
    let floor = sonora_datasets::synth::material(&scene.floor_material).map(|m| m.color);
    let floor_match = match floor {
        None => 1.0,
        Some(rgb) => {
            let f = &clip.frames;
            let y0 = ((scene.floor_y + 2.0) as usize).min(f.h - 1);
            let mut sum = [0.0f64; 3];
            let mut n = 0.0f64;
            for k in 0..f.t {
                let fr = f.frame(k);
                for y in y0..f.h {
                    for x in 0..f.w {
                        let i = (y * f.w + x) * 3;
                        for c in 0..3 {
                            sum[c] += fr[i + c] as f64;
                        }
                        n += 1.0;
                    }
                }
            }
            let d = (0..3)
                .map(|c| (sum[c] / n.max(1.0) - rgb[c] as f64).abs())
                .fold(0.0, f64::max);
            (1.0 - (d - 30.0).max(0.0) / 100.0).clamp(0.0, 1.0)
        }
    };
    objects * floor_match
}
