//! The consistency suite, for any video: temporal flicker, motion smoothness, subject and
//! background consistency, dynamic degree, audio-video sync, character identity and
//! continuity across an extension or remix boundary.
//!
//! VBench scores subject and background consistency with DINO and CLIP features and motion
//! with RAFT flow and AMT interpolation; sonora has no pretrained vision networks, so the
//! features here are hand-made and documented per metric: colour histograms of the
//! non-background colours for the subject, a grid of cell medians for the background, and
//! block-matching motion ([`crate::motion`]) for flow and interpolation. Nothing here reads
//! a scene description: these metrics apply to any clip.

use sonora_framework::{Clip, Frames};

use crate::error::{EvalError, check_clip};
use crate::metric::{MetricInfo, Scores};
use crate::motion::{Luma, forward_flow, interpolation_error};
use crate::onsets::detect_onsets;

/// The consistency metrics.
pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "consistency.temporal_flicker",
        range: "[0, 255] grey levels",
        higher_is_better: false,
        measures: "mean over frames of the median pixel's |frame − average of its two neighbours| (moving objects are a minority of pixels, so this is whole-frame brightness jitter)",
    },
    MetricInfo {
        name: "consistency.motion_smoothness",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "1 − the worst frame's motion-compensated interpolation error /255 (each frame rebuilt from its neighbours by block matching; a jump or a cut cannot be rebuilt)",
    },
    MetricInfo {
        name: "consistency.subject_consistency",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "histogram intersection of the subject colours (colours rare in the clip's median frame) with the first and the previous frame, averaged over frames as in VBench",
    },
    MetricInfo {
        name: "consistency.background_consistency",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "1 − mean |Δ|/255 of a 4×4 grid of cell-median brightness against the first and the previous frame, averaged over frames as in VBench",
    },
    MetricInfo {
        name: "consistency.dynamic_degree",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "share of consecutive frame pairs in which block matching finds something moving",
    },
    MetricInfo {
        name: "consistency.av_sync_offset_ms",
        range: "[0, 500] ms",
        higher_is_better: false,
        measures: "|shift| of the audio that best lines its onsets up with visible impacts (moving blobs turning from falling to rising), without any scene description",
    },
    MetricInfo {
        name: "consistency.character_identity",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "colour-histogram intersection (soft bins) between each reference image's subject, at the scale (full size or a halving) that matches the frame best, and the largest blob of its colours in the clip (75th percentile over frames), averaged over references",
    },
    MetricInfo {
        name: "consistency.boundary_continuity",
        range: "[0, 1]",
        higher_is_better: true,
        measures: "1 − the motion-compensated interpolation error /255 of the first frame after an extension or remix boundary",
    },
];

/// What the consistency suite scores.
pub struct ConsistencyInput<'a> {
    /// The clip.
    pub clip: &'a Clip,
    /// Reference images of the cast character(s): `(RGB bytes, width, height)`, subject
    /// on a plain background. Empty when no character is cast.
    pub references: &'a [(Vec<u8>, usize, usize)],
    /// The first generated frame after a given prefix (extension) or the frame where a
    /// remix takes over, if any.
    pub boundary: Option<usize>,
}

/// Histogram levels per channel (8³ = 512 bins).
const LEVELS: usize = 8;
/// A colour is "background" when it covers at least this share of the median frame.
const BACKGROUND_SHARE: f64 = 0.05;

/// Scores `input` on every consistency metric that applies (motion metrics need three
/// frames, identity needs references, continuity a boundary).
pub fn consistency_scores(input: &ConsistencyInput) -> Result<Scores, EvalError> {
    let clip = input.clip;
    check_clip(clip)?;
    let f = &clip.frames;
    let luma: Vec<Luma> = (0..f.t).map(|k| Luma::of(f, k)).collect();
    let mut s = Scores::new();
    s.insert(
        "consistency.subject_consistency".into(),
        subject_consistency(f),
    );
    s.insert(
        "consistency.background_consistency".into(),
        background_consistency(&luma),
    );
    if f.t >= 2 {
        let flows: Vec<_> = (1..f.t)
            .map(|k| forward_flow(&luma[k - 1], &luma[k]))
            .collect();
        let moving = flows
            .iter()
            .filter(|fl| fl.iter().any(|(d, _)| *d != (0, 0)))
            .count();
        s.insert(
            "consistency.dynamic_degree".into(),
            moving as f64 / flows.len() as f64,
        );
    }
    if f.t >= 3 {
        s.insert(
            "consistency.temporal_flicker".into(),
            temporal_flicker(&luma),
        );
        s.insert(
            "consistency.motion_smoothness".into(),
            motion_smoothness(&luma),
        );
        if let Some(off) = av_offset(clip) {
            s.insert("consistency.av_sync_offset_ms".into(), off * 1000.0);
        }
    }
    if !input.references.is_empty() {
        s.insert(
            "consistency.character_identity".into(),
            character_identity(f, input.references)?,
        );
    }
    if let Some(b) = input.boundary {
        if b == 0 || b + 1 >= f.t {
            return Err(EvalError::Invalid(format!(
                "boundary frame {b} must lie inside the clip (1..{})",
                f.t.saturating_sub(1)
            )));
        }
        let e = interpolation_error(&luma[b - 1], &luma[b], &luma[b + 1]);
        s.insert(
            "consistency.boundary_continuity".into(),
            1.0 - e as f64 / 255.0,
        );
    }
    Ok(s)
}

/// 1 − the worst inner frame's motion-compensated interpolation error /255.
fn motion_smoothness(luma: &[Luma]) -> f64 {
    let worst = (1..luma.len() - 1)
        .map(|k| interpolation_error(&luma[k - 1], &luma[k], &luma[k + 1]))
        .fold(0.0f32, f32::max);
    1.0 - worst as f64 / 255.0
}

/// Mean over inner frames of the median |L_k − (L_{k−1} + L_{k+1})/2|.
fn temporal_flicker(luma: &[Luma]) -> f64 {
    let mut total = 0.0;
    for k in 1..luma.len() - 1 {
        let mut r: Vec<f32> = (0..luma[k].px.len())
            .map(|i| (luma[k].px[i] - 0.5 * (luma[k - 1].px[i] + luma[k + 1].px[i])).abs())
            .collect();
        let mid = r.len() / 2;
        total += *r.select_nth_unstable_by(mid, f32::total_cmp).1 as f64;
    }
    total / (luma.len() - 2) as f64
}

/// VBench's average: for each frame after the first, the mean of its similarity to the
/// first and to the previous frame.
fn vbench_average(n: usize, sim: impl Fn(usize, usize) -> f64) -> f64 {
    if n < 2 {
        return 1.0;
    }
    (1..n)
        .map(|k| 0.5 * (sim(k, 0) + sim(k, k - 1)))
        .sum::<f64>()
        / (n - 1) as f64
}

/// The histogram bin of an RGB pixel.
fn bin(p: &[u8]) -> usize {
    let q = |v: u8| v as usize * LEVELS / 256;
    (q(p[0]) * LEVELS + q(p[1])) * LEVELS + q(p[2])
}

/// The 8 bins around an RGB pixel with their trilinear weights (summing to 1): the pixel's
/// vote split between neighbouring bin centres, so a colour near a bin edge counts in both
/// bins instead of flipping between them with a little blur or encoding noise.
fn soft_bins(p: &[u8]) -> [(usize, f64); 8] {
    let width = 256.0 / LEVELS as f64;
    // the lower neighbouring bin centre of each channel and the weight of the upper one
    let axis = |v: u8| -> (usize, usize, f64) {
        let x = (v as f64 + 0.5) / width - 0.5;
        let lo = x.floor().clamp(0.0, (LEVELS - 1) as f64);
        let hi = (lo + 1.0).min((LEVELS - 1) as f64);
        (lo as usize, hi as usize, (x - lo).clamp(0.0, 1.0))
    };
    let a = [axis(p[0]), axis(p[1]), axis(p[2])];
    let mut out = [(0, 0.0); 8];
    for (k, o) in out.iter_mut().enumerate() {
        let mut idx = 0;
        let mut w = 1.0;
        for (c, &(lo, hi, f)) in a.iter().enumerate() {
            let up = (k >> (2 - c)) & 1 == 1;
            idx = idx * LEVELS + if up { hi } else { lo };
            w *= if up { f } else { 1.0 - f };
        }
        *o = (idx, w);
    }
    out
}

/// Histogram intersection of two unnormalised histograms, relative to the larger mass
/// (so a shrinking or vanishing subject lowers it); two empty histograms are identical.
fn intersection(a: &[f64], b: &[f64]) -> f64 {
    let (sa, sb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    if sa.max(sb) <= 0.0 {
        return 1.0;
    }
    a.iter().zip(b).map(|(x, y)| x.min(*y)).sum::<f64>() / sa.max(sb)
}

/// The per-pixel temporal median frame (RGB).
fn median_frame(f: &Frames) -> Vec<u8> {
    let mut out = vec![0u8; f.frame_len()];
    let mut col = vec![0u8; f.t];
    for (i, o) in out.iter_mut().enumerate() {
        for (k, c) in col.iter_mut().enumerate() {
            *c = f.frame(k)[i];
        }
        *o = *col.select_nth_unstable(f.t / 2).1;
    }
    out
}

/// Subject consistency over histograms of the colours that are rare in the median frame.
fn subject_consistency(f: &Frames) -> f64 {
    let med = median_frame(f);
    let mut share = vec![0.0f64; LEVELS.pow(3)];
    for p in med.chunks_exact(3) {
        share[bin(p)] += 1.0 / (f.h * f.w) as f64;
    }
    let hists: Vec<Vec<f64>> = (0..f.t)
        .map(|k| {
            let mut h = vec![0.0; share.len()];
            for p in f.frame(k).chunks_exact(3) {
                let b = bin(p);
                if share[b] < BACKGROUND_SHARE {
                    h[b] += 1.0;
                }
            }
            h
        })
        .collect();
    vbench_average(f.t, |a, b| intersection(&hists[a], &hists[b]))
}

/// Background consistency over a 4×4 grid of cell-median luma.
fn background_consistency(luma: &[Luma]) -> f64 {
    let cells: Vec<Vec<f32>> = luma
        .iter()
        .map(|l| {
            let mut v = Vec::with_capacity(16);
            for cy in 0..4 {
                for cx in 0..4 {
                    let (y0, y1, x0, x1) = (
                        cy * l.h / 4,
                        (cy + 1) * l.h / 4,
                        cx * l.w / 4,
                        (cx + 1) * l.w / 4,
                    );
                    let mut px: Vec<f32> = (y0..y1.max(y0 + 1).min(l.h))
                        .flat_map(|y| (x0..x1.max(x0 + 1).min(l.w)).map(move |x| (y, x)))
                        .map(|(y, x)| l.px[y * l.w + x])
                        .collect();
                    let mid = px.len() / 2;
                    v.push(*px.select_nth_unstable_by(mid, f32::total_cmp).1);
                }
            }
            v
        })
        .collect();
    vbench_average(luma.len(), |a, b| {
        1.0 - cells[a]
            .iter()
            .zip(&cells[b])
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>()
            / (16.0 * 255.0)
    })
}

/// 4-connected components of `mask` (`h×w`): `(pixel count, centroid y, centroid x, pixels)`.
fn components(mask: &[bool], h: usize, w: usize) -> Vec<(usize, f64, f64, Vec<usize>)> {
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let (mut stack, mut px) = (vec![start], Vec::new());
        seen[start] = true;
        while let Some(i) = stack.pop() {
            px.push(i);
            let (y, x) = (i / w, i % w);
            let mut push = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if y > 0 {
                push(i - w);
            }
            if y + 1 < h {
                push(i + w);
            }
            if x > 0 {
                push(i - 1);
            }
            if x + 1 < w {
                push(i + 1);
            }
        }
        let n = px.len();
        let cy = px.iter().map(|i| (i / w) as f64).sum::<f64>() / n as f64;
        let cx = px.iter().map(|i| (i % w) as f64).sum::<f64>() / n as f64;
        out.push((n, cy, cx, px));
    }
    out
}

/// Visible impacts (s): blobs of pixels that differ from the median frame, followed frame
/// to frame by nearest centroid, that turn from falling to rising. The contact time is
/// placed inside the turning frame by the ratio of the speeds in and out.
fn visual_impacts(clip: &Clip) -> Vec<f64> {
    let f = &clip.frames;
    let med = median_frame(f);
    let min_area = (f.h * f.w / 400).max(4);
    let blobs: Vec<Vec<(f64, f64)>> = (0..f.t)
        .map(|k| {
            let fr = f.frame(k);
            let mask: Vec<bool> = fr
                .chunks_exact(3)
                .zip(med.chunks_exact(3))
                .map(|(a, b)| (0..3).any(|c| a[c].abs_diff(b[c]) > 25))
                .collect();
            components(&mask, f.h, f.w)
                .into_iter()
                .filter(|c| c.0 >= min_area)
                .map(|c| (c.1, c.2))
                .collect()
        })
        .collect();
    let reach = 0.35 * f.h.max(f.w) as f64;
    let nearest = |k: usize, p: (f64, f64)| {
        blobs[k]
            .iter()
            .copied()
            .filter(|q| (q.0 - p.0).hypot(q.1 - p.1) < reach)
            .min_by(|a, b| {
                (a.0 - p.0)
                    .hypot(a.1 - p.1)
                    .total_cmp(&(b.0 - p.0).hypot(b.1 - p.1))
            })
    };
    let mut out = Vec::new();
    for (k, here) in blobs.iter().enumerate().take(f.t - 1).skip(1) {
        for &b in here {
            let (Some(a), Some(c)) = (nearest(k - 1, b), nearest(k + 1, b)) else {
                continue;
            };
            let (v_in, v_out) = (b.0 - a.0, c.0 - b.0);
            if v_in > 0.5 && v_out < -0.5 {
                let tau = ((v_in + v_out) / (2.0 * (v_in - v_out))).clamp(-0.5, 0.5);
                out.push((k as f64 + tau) / clip.fps);
            }
        }
    }
    out
}

/// |audio lag| (s) that lines the most visible impacts up with audio onsets within three
/// quarters of a frame (5 ms steps over ±500 ms, ties to the smallest shift). `None` when nothing visible bounces or nothing matches.
fn av_offset(clip: &Clip) -> Option<f64> {
    let impacts = visual_impacts(clip);
    let onsets = detect_onsets(&clip.audio);
    if impacts.is_empty() || onsets.is_empty() {
        return None;
    }
    let tol = 0.75 / clip.fps;
    let hits = |lag: f64| {
        impacts
            .iter()
            .filter(|&&c| onsets.iter().any(|&o| (o - c - lag).abs() <= tol))
            .count()
    };
    let mut best: Option<(usize, f64)> = None;
    for step in 0..=100 {
        for lag in [step as f64 * 0.005, -(step as f64) * 0.005] {
            let n = hits(lag);
            if n > 0 && best.is_none_or(|(bn, _)| n > bn) {
                best = Some((n, lag));
            }
        }
    }
    best.map(|(_, lag)| lag.abs())
}

/// Normalised colour histogram of a reference image's subject (pixels away from its
/// border colour, the plain background).
fn reference_histogram(rgb: &[u8], w: usize, h: usize) -> Result<Vec<f64>, EvalError> {
    if w == 0 || h == 0 || rgb.len() != w * h * 3 {
        return Err(EvalError::Invalid(format!(
            "reference image of {} bytes is not {w}×{h} RGB",
            rgb.len()
        )));
    }
    let bg = &rgb[0..3];
    let mut hist = vec![0.0; LEVELS.pow(3)];
    for p in rgb.chunks_exact(3) {
        if (0..3).any(|c| p[c].abs_diff(bg[c]) > 40) {
            for (b, w) in soft_bins(p) {
                hist[b] += w;
            }
        }
    }
    let n: f64 = hist.iter().sum();
    if n == 0.0 {
        return Err(EvalError::Invalid(
            "reference image shows no subject (one flat colour)".into(),
        ));
    }
    Ok(hist.into_iter().map(|v| v / n).collect())
}

/// A reference image halved: each 2×2 block of `rgb` (`w × h`) averaged into one pixel.
fn halve(rgb: &[u8], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    let (hw, hh) = (w / 2, h / 2);
    let mut out = Vec::with_capacity(hw * hh * 3);
    for y in 0..hh {
        for x in 0..hw {
            for c in 0..3 {
                let at = |dy: usize, dx: usize| rgb[((2 * y + dy) * w + 2 * x + dx) * 3 + c] as u32;
                out.push(((at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1) + 2) / 4) as u8);
            }
        }
    }
    (out, hw, hh)
}

/// The reference's subject histogram at its own size and at each halving down to 8 px: a
/// character drawn small in a frame shows its patterns blurred into their mean colours
/// (pip's white stripes on orange read as light orange at 32×32), which no bin of the
/// full-size reference holds.
fn reference_histograms(rgb: &[u8], w: usize, h: usize) -> Result<Vec<Vec<f64>>, EvalError> {
    let mut out = vec![reference_histogram(rgb, w, h)?];
    let (mut img, mut cw, mut ch) = (rgb.to_vec(), w, h);
    while cw >= 16 && ch >= 16 {
        (img, cw, ch) = halve(&img, cw, ch);
        // a halving may blur a thin subject into its background: that scale is skipped
        if let Ok(hist) = reference_histogram(&img, cw, ch) {
            out.push(hist);
        }
    }
    Ok(out)
}

/// Similarity of one frame to a reference's subject histogram `href`: the intersection of
/// `href` with the colours of the largest blob of its colours; 0 without such a blob.
fn frame_identity(fr: &[u8], h: usize, w: usize, href: &[f64]) -> f64 {
    // a pixel is of the reference's colours when its soft bins hold enough of the subject
    let mask: Vec<bool> = fr
        .chunks_exact(3)
        .map(|p| soft_bins(p).iter().map(|&(b, w)| w * href[b]).sum::<f64>() >= 0.02)
        .collect();
    let Some(blob) = components(&mask, h, w).into_iter().max_by_key(|c| c.0) else {
        return 0.0;
    };
    if blob.0 < 4 {
        return 0.0;
    }
    let mut hb = vec![0.0; href.len()];
    for i in &blob.3 {
        for (b, w) in soft_bins(&fr[i * 3..i * 3 + 3]) {
            hb[b] += w / blob.0 as f64;
        }
    }
    href.iter().zip(&hb).map(|(a, b)| a.min(*b)).sum::<f64>()
}

/// Mean over references of the 75th-percentile (over frames) similarity between the
/// reference's subject histogram, at the scale that matches the frame best, and the
/// largest blob of its colours in the frame.
fn character_identity(f: &Frames, refs: &[(Vec<u8>, usize, usize)]) -> Result<f64, EvalError> {
    let mut total = 0.0;
    for (rgb, w, h) in refs {
        let scales = reference_histograms(rgb, *w, *h)?;
        let mut per_frame: Vec<f64> = (0..f.t)
            .map(|k| {
                scales
                    .iter()
                    .map(|href| frame_identity(f.frame(k), f.h, f.w, href))
                    .fold(0.0, f64::max)
            })
            .collect();
        per_frame.sort_by(f64::total_cmp);
        total += per_frame[(per_frame.len() * 3 / 4).min(per_frame.len() - 1)];
    }
    Ok(total / refs.len() as f64)
}

#[cfg(test)]
mod tests {
    use sonora_datasets::synth::{Split, SynthConfig, generate_clip};

    use super::*;

    #[test]
    fn a_cut_breaks_boundary_continuity_and_a_continuous_clip_does_not() {
        let cfg = SynthConfig::default();
        let (a, b) = (
            generate_clip(&cfg, Split::Test, 1).unwrap().clip,
            generate_clip(&cfg, Split::Test, 2).unwrap().clip,
        );
        let t = a.frames.t;
        let mut cut = a.clone();
        for k in t / 2..t {
            cut.frames.frame_mut(k).copy_from_slice(b.frames.frame(k));
        }
        let score = |c: &Clip| {
            consistency_scores(&ConsistencyInput {
                clip: c,
                references: &[],
                boundary: Some(t / 2),
            })
            .unwrap()["consistency.boundary_continuity"]
        };
        let (smooth, broken) = (score(&a), score(&cut));
        assert!(
            smooth > 0.97 && broken < smooth - 0.02,
            "continuous {smooth}, cut {broken}"
        );
    }

    /// A roster character drawn at the quickstart model's 32×32 (the world's 64×64 frames
    /// box-halved: pip's stripes blur into light orange) is still recognised: scored
    /// against its own references it beats every other character's references on most
    /// clips (the full-size reference's hard colour bins alone scored such pip clips 0).
    #[test]
    fn identity_recognises_a_character_drawn_small_and_blurred() {
        use sonora_datasets::synth::{render_reference, roster};
        let cfg = SynthConfig {
            character_prob: 1.0,
            max_objects: 1,
            min_size_frac: 0.11,
            max_size_frac: 0.17,
            occluder_prob: 0.0,
            textures: false,
            room_patterns: false,
            ..SynthConfig::default()
        };
        let cast = roster();
        let refs = |id: &str| -> Vec<(Vec<u8>, usize, usize)> {
            let ch = cast.iter().find(|c| c.id == id).unwrap();
            (0..2)
                .map(|v| (render_reference(ch, 64, v), 64, 64))
                .collect()
        };
        let mut wins = 0;
        let clips = 8;
        for index in 0..clips {
            let mut clip = generate_clip(&cfg, Split::Test, index).unwrap().clip;
            let own = clip.metadata.character_ids[0].clone();
            let f = &clip.frames;
            let mut small = Frames::zeros(f.t, f.h / 2, f.w / 2);
            for k in 0..f.t {
                small
                    .frame_mut(k)
                    .copy_from_slice(&halve(f.frame(k), f.w, f.h).0);
            }
            clip.frames = small;
            let score = |id: &str| {
                consistency_scores(&ConsistencyInput {
                    clip: &clip,
                    references: &refs(id),
                    boundary: None,
                })
                .unwrap()["consistency.character_identity"]
            };
            let mine = score(&own);
            let best_other = cast
                .iter()
                .filter(|c| c.id != own)
                .map(|c| score(&c.id))
                .fold(0.0, f64::max);
            if mine > best_other && mine > 0.25 {
                wins += 1;
            }
        }
        assert!(wins >= clips - 1, "own references won {wins} of {clips}");
    }

    #[test]
    fn a_boundary_outside_the_clip_is_an_error() {
        let clip = generate_clip(&SynthConfig::default(), Split::Test, 0)
            .unwrap()
            .clip;
        let err = consistency_scores(&ConsistencyInput {
            clip: &clip,
            references: &[],
            boundary: Some(clip.frames.t),
        })
        .unwrap_err();
        assert!(err.to_string().contains("boundary frame"), "{err}");
    }
}
