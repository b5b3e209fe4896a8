//! `sonora eval validate`: do the metrics measure what they claim?
//!
//! Ground-truth synthetic clips are scored beside perturbed copies (see
//! [`crate::perturb`]); for every metric and perturbation the report gives the AUC —
//! the probability that a real clip scores better than a perturbed one (0.5: blind,
//! 1: perfect) — and each metric's mean on real clips. The same is reported for the
//! aggregate (each clip's [`clip_score`], the report's score of a one-clip suite), which
//! must separate ground truth from a still or frozen copy and from an untrained model's
//! output ([`AGGREGATE_TARGETS`]).

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use sonora_datasets::synth::{
    Scene, Split, SynthClip, SynthConfig, clip_from_scene, render_reference, roster, sample_scene,
};

use crate::consistency::{ConsistencyInput, consistency_scores};
use crate::error::EvalError;
use crate::metric::{Scores, lookup, oriented};
use crate::perturb::{Perturbation, perturb};
use crate::physics::{contacts_heard, physics_scores};
use crate::report::clip_score;
pub use crate::untrained::UntrainedConfig;
use crate::untrained::score_untrained;

/// Every perturbation the validation applies.
pub const PERTURBATIONS: &[Perturbation] = &[
    Perturbation::TimeReversed,
    Perturbation::Teleported,
    Perturbation::Vanished,
    Perturbation::Frozen,
    Perturbation::Still,
    Perturbation::Hovering,
    Perturbation::SoundSwapped,
    Perturbation::AudioShifted(150),
    Perturbation::AudioShifted(-250),
    Perturbation::GravityScaled(0.5),
    Perturbation::GravityScaled(1.8),
    Perturbation::ColourDrift,
    Perturbation::Flicker,
    Perturbation::CharacterSwapped,
];

/// Each metric and the perturbation it exists to catch (the test requires AUC ≥ 0.9).
///
/// Two consistency metrics are reported but not yet held to that bar, because on the
/// synthetic world's 8 fps, 64 px clips they do not reach it: `motion_smoothness` against
/// a teleport (AUC ≈ 0.76; bounces at 8 fps defeat 8 px block matching as often as a
/// teleport does) and the label-free `av_sync_offset_ms` against a 250 ms shift
/// (AUC ≈ 0.75; visible impacts are timed to ±½ frame = ±62 ms, and impacts are dense).
/// `physics.av_offset_ms`, which knows the floor line, does separate audio shifts.
/// Against another scene's soundtrack the labels-based `physics.contacts_heard` is the
/// judge (AUC 0.97 on the default 40 clips): `physics.av_match_rate` reaches 0.88 there
/// (0.76 on 24) and `av_offset_ms` 0.87,
/// because the floor contacts they time from 8 fps pixels are one to three per clip and
/// a donor track's dense impacts land within ±50 ms of some of them by chance.
pub const TARGETS: &[(&str, Perturbation)] = &[
    (
        "physics.gravity_rel_error",
        Perturbation::GravityScaled(0.5),
    ),
    (
        "physics.gravity_rel_error",
        Perturbation::GravityScaled(1.8),
    ),
    ("physics.bounce_violation", Perturbation::TimeReversed),
    ("physics.gravity_rel_error", Perturbation::Hovering),
    ("physics.permanence_violation", Perturbation::Vanished),
    ("physics.permanence_violation", Perturbation::Teleported),
    ("physics.appearance_drift", Perturbation::ColourDrift),
    ("physics.av_offset_ms", Perturbation::AudioShifted(150)),
    ("physics.av_offset_ms", Perturbation::AudioShifted(-250)),
    ("physics.contacts_heard", Perturbation::SoundSwapped),
    ("physics.contacts_heard", Perturbation::AudioShifted(150)),
    ("physics.prompt_adherence", Perturbation::CharacterSwapped),
    ("consistency.temporal_flicker", Perturbation::Flicker),
    ("consistency.subject_consistency", Perturbation::ColourDrift),
    ("consistency.background_consistency", Perturbation::Flicker),
    ("consistency.dynamic_degree", Perturbation::Frozen),
    (
        "consistency.character_identity",
        Perturbation::CharacterSwapped,
    ),
];

/// The name of the untrained model's output in the aggregate's rows.
pub const UNTRAINED: &str = "untrained_model";

/// What the aggregate must separate ground truth from (AUC ≥ 0.9 in the test and by
/// default in `sonora eval validate`): a still image, a clip frozen for most of its
/// length, and an untrained model's output.
pub const AGGREGATE_TARGETS: &[&str] = &["still", "frozen", UNTRAINED];

/// What to validate on.
#[derive(Clone, Debug)]
pub struct ValidationConfig {
    /// Ground-truth scenes.
    pub clips: usize,
    /// Scene seed.
    pub seed: u64,
    /// The world the scenes come from.
    pub synth: SynthConfig,
    /// The untrained model whose output the aggregate is held against (`None`: skip it).
    pub untrained: Option<UntrainedConfig>,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            clips: 40,
            seed: 7,
            synth: SynthConfig {
                character_prob: 0.5,
                ..SynthConfig::default()
            },
            untrained: None,
        }
    }
}

/// How one metric separates real clips from one perturbation.
#[derive(Clone, Debug, Serialize)]
pub struct Separation {
    /// Metric name.
    pub metric: String,
    /// Perturbation name.
    pub perturbation: String,
    /// P(real scores better than perturbed), ties counted half.
    pub auc: f64,
    /// Mean on real clips.
    pub real_mean: f64,
    /// Mean on perturbed clips.
    pub perturbed_mean: f64,
    /// Clips that had the metric, real and perturbed.
    pub n: (usize, usize),
    /// Whether this metric targets this perturbation.
    pub targeted: bool,
}

/// `physics.av_match_rate` (visible floor contacts timed from pixels) beside
/// `physics.contacts_heard` (labelled contacts) on one kind of clip.
#[derive(Clone, Debug, Serialize)]
pub struct SoundAgreement {
    /// `real` or a perturbation's name.
    pub clips: String,
    /// Clips where both metrics applied.
    pub n: usize,
    /// Mean `av_match_rate` over them.
    pub av_match_rate: f64,
    /// Mean `contacts_heard` over them.
    pub contacts_heard: f64,
    /// Clips where the two differ by more than 0.25.
    pub disagree: usize,
}

/// The validation report.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationReport {
    /// Ground-truth clips scored.
    pub clips: usize,
    /// Mean of every metric on real clips.
    pub real_means: BTreeMap<String, f64>,
    /// Every metric × perturbation.
    pub separations: Vec<Separation>,
    /// The aggregate (metric `score`) against every perturbation and the untrained
    /// model's output.
    pub aggregate: Vec<Separation>,
    /// How the two sound metrics agree on real and sound-swapped clips.
    pub sound_metrics: Vec<SoundAgreement>,
    /// Clips that failed to score, with the reason.
    pub failures: Vec<String>,
}

impl ValidationReport {
    /// The targeted rows only.
    pub fn targeted(&self) -> impl Iterator<Item = &Separation> {
        self.separations.iter().filter(|s| s.targeted)
    }

    /// A text table of the targeted rows.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "metric validation on {} ground-truth clips (AUC: real vs perturbed)\n",
            self.clips
        );
        s += &format!(
            "{:<36} {:<20} {:>6} {:>12} {:>12}\n",
            "metric", "perturbation", "AUC", "real mean", "pert. mean"
        );
        for r in self.targeted() {
            s += &format!(
                "{:<36} {:<20} {:>6.3} {:>12.4} {:>12.4}\n",
                r.metric, r.perturbation, r.auc, r.real_mean, r.perturbed_mean
            );
        }
        s += "aggregate score (each clip's mean gated goodness):\n";
        for r in &self.aggregate {
            let mark = if r.targeted { " *" } else { "" };
            s += &format!(
                "{:<36} {:<20} {:>6.3} {:>12.4} {:>12.4}{mark}\n",
                "score", r.perturbation, r.auc, r.real_mean, r.perturbed_mean
            );
        }
        s +=
            "sound: av_match_rate (visible floor contacts) vs contacts_heard (labelled contacts)\n";
        for a in &self.sound_metrics {
            s += &format!(
                "  {:<16} n={:<4} av_match_rate {:.3}  contacts_heard {:.3}  differ by > 0.25 on {} clips\n",
                a.clips, a.n, a.av_match_rate, a.contacts_heard, a.disagree
            );
        }
        for f in &self.failures {
            s += &format!("failed: {f}\n");
        }
        s
    }
}

/// All scores of one clip (physics against its prompt, the labelled contacts heard over
/// the whole clip, consistency with the prompted characters' reference images) and its
/// motion credit.
fn score(
    clip: &sonora_framework::Clip,
    labels: &sonora_datasets::labels::PhysicsLabels,
) -> Result<(Scores, Option<f64>), EvalError> {
    let mut s = physics_scores(clip, labels)?;
    if let Some(v) = contacts_heard(clip, labels, clip.duration_s()) {
        s.insert("physics.contacts_heard".into(), v);
    }
    let cast = roster();
    let refs: Vec<(Vec<u8>, usize, usize)> = labels
        .objects
        .iter()
        .filter_map(|o| o.character_id.as_ref())
        .filter_map(|id| cast.iter().find(|c| &c.id == id))
        .flat_map(|c| (0..4).map(move |v| (render_reference(c, 64, v), 64, 64)))
        .collect();
    s.extend(consistency_scores(&ConsistencyInput {
        clip,
        references: &refs,
        boundary: None,
    })?);
    let motion = s.get("consistency.dynamic_degree").copied();
    Ok((s, motion))
}

/// AUC of `real` over `pert` for oriented scores (larger is better).
pub fn auc(real: &[f64], pert: &[f64]) -> f64 {
    if real.is_empty() || pert.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for r in real {
        for p in pert {
            wins += if r > p {
                1.0
            } else if r == p {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (real.len() * pert.len()) as f64
}

/// One clip's scores and motion credit.
type Scored = (Scores, Option<f64>);

/// The ground-truth clip of validation scene `i` (scenes from `clips` on are donors).
fn scene_clip(cfg: &ValidationConfig, i: usize) -> Result<(Scene, SynthClip), String> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    let scene = sample_scene(&cfg.synth, &mut rng);
    let real = clip_from_scene(&cfg.synth, Split::Test, i as u64, &scene)
        .map_err(|e| format!("clip {i}: {e}"))?;
    Ok((scene, real))
}

/// Generates, perturbs and scores; see the module docs.
pub fn validate_metrics(cfg: &ValidationConfig) -> Result<ValidationReport, EvalError> {
    cfg.synth
        .validate()
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    // per clip: the clip, its scores and (perturbation index, scores)
    // (the clip is kept only where the untrained comparison needs it)
    type PerClip = (Option<SynthClip>, Scored, Vec<(usize, Scored)>);
    let keep = cfg.untrained.as_ref().map_or(0, |u| u.clips);
    let results: Vec<Result<PerClip, String>> = (0..cfg.clips)
        .into_par_iter()
        .map(|i| {
            let (scene, real) = scene_clip(cfg, i)?;
            // another scene's sound for the swap
            let (_, donor) = scene_clip(cfg, cfg.clips + i)?;
            let rs = score(&real.clip, &real.labels).map_err(|e| format!("clip {i}: {e}"))?;
            let mut ps = Vec::new();
            for (j, p) in PERTURBATIONS.iter().enumerate() {
                if let Some(c) = perturb(&cfg.synth, &scene, &real, *p, Some(&donor.clip)) {
                    match score(&c, &real.labels) {
                        Ok(s) => ps.push((j, s)),
                        Err(e) => return Err(format!("clip {i} {}: {e}", p.name())),
                    }
                }
            }
            Ok(((i < keep).then_some(real), rs, ps))
        })
        .collect();
    let mut failures = Vec::new();
    let mut ok = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => failures.push(e),
        }
    }
    let untrained = match &cfg.untrained {
        Some(u) => {
            let clips: Vec<SynthClip> = ok.iter_mut().filter_map(|(c, _, _)| c.take()).collect();
            score_untrained(u, &clips, &u.device)?
        }
        None => Vec::new(),
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let metrics: Vec<String> = crate::metric::catalogue()
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    let mut real_means = BTreeMap::new();
    let mut separations = Vec::new();
    let sep =
        |metric: &str, pert: String, real: &[f64], p: &[f64], o: &dyn Fn(f64) -> f64, targeted| {
            let ov = |v: &[f64]| v.iter().map(|x| o(*x)).collect::<Vec<_>>();
            Separation {
                metric: metric.into(),
                perturbation: pert,
                auc: auc(&ov(real), &ov(p)),
                real_mean: mean(real),
                perturbed_mean: mean(p),
                n: (real.len(), p.len()),
                targeted,
            }
        };
    // a value of every clip's copy under perturbation `j`, where `value` has one
    let perturbed = |j: usize, value: &dyn Fn(&Scored) -> Option<f64>| -> Vec<f64> {
        ok.iter()
            .flat_map(|(_, _, ps)| ps.iter().filter(|(k, _)| *k == j).map(|(_, s)| s))
            .filter_map(value)
            .collect()
    };
    for m in &metrics {
        let info = lookup(m).map_err(EvalError::Invalid)?;
        let o = |x: f64| oriented(&info, x);
        let real: Vec<f64> = ok
            .iter()
            .filter_map(|(_, r, _)| r.0.get(m).copied())
            .collect();
        if real.is_empty() {
            continue;
        }
        real_means.insert(m.clone(), mean(&real));
        for (j, p) in PERTURBATIONS.iter().enumerate() {
            let pert = perturbed(j, &|s| s.0.get(m).copied());
            if pert.is_empty() {
                continue;
            }
            let targeted = TARGETS.iter().any(|(tm, tp)| tm == m && tp == p);
            separations.push(sep(m, p.name(), &real, &pert, &o, targeted));
        }
        // the untrained model against ground truth fitted to its shape
        let fitted: Vec<f64> = untrained
            .iter()
            .filter_map(|(r, _)| r.scores.get(m).copied())
            .collect();
        let made: Vec<f64> = untrained
            .iter()
            .filter_map(|(_, f)| f.scores.get(m).copied())
            .collect();
        if !fitted.is_empty() && !made.is_empty() {
            separations.push(sep(m, UNTRAINED.into(), &fitted, &made, &o, false));
        }
    }
    // the aggregate
    let id = |x: f64| x;
    let real: Vec<f64> = ok.iter().map(|(_, r, _)| clip_score(&r.0, r.1)).collect();
    let mut aggregate = Vec::new();
    for (j, p) in PERTURBATIONS.iter().enumerate() {
        let pert = perturbed(j, &|s| Some(clip_score(&s.0, s.1)));
        if !pert.is_empty() {
            let name = p.name();
            let targeted = AGGREGATE_TARGETS.contains(&name.as_str());
            aggregate.push(sep("score", name, &real, &pert, &id, targeted));
        }
    }
    if !untrained.is_empty() {
        let fitted: Vec<f64> = untrained
            .iter()
            .map(|(r, _)| clip_score(&r.scores, r.motion))
            .collect();
        let made: Vec<f64> = untrained
            .iter()
            .map(|(_, f)| clip_score(&f.scores, f.motion))
            .collect();
        aggregate.push(sep("score", UNTRAINED.into(), &fitted, &made, &id, true));
    }
    // the two sound metrics side by side
    let agree = |name: &str, rows: Vec<&Scores>| {
        let both: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|s| {
                Some((
                    *s.get("physics.av_match_rate")?,
                    *s.get("physics.contacts_heard")?,
                ))
            })
            .collect();
        SoundAgreement {
            clips: name.into(),
            n: both.len(),
            av_match_rate: mean(&both.iter().map(|b| b.0).collect::<Vec<_>>()),
            contacts_heard: mean(&both.iter().map(|b| b.1).collect::<Vec<_>>()),
            disagree: both.iter().filter(|b| (b.0 - b.1).abs() > 0.25).count(),
        }
    };
    let swapped = PERTURBATIONS
        .iter()
        .position(|p| *p == Perturbation::SoundSwapped)
        .unwrap_or(usize::MAX);
    let sound_metrics = vec![
        agree("real", ok.iter().map(|(_, r, _)| &r.0).collect()),
        agree(
            "sound_swapped",
            ok.iter()
                .flat_map(|(_, _, ps)| ps.iter().filter(|(k, _)| *k == swapped).map(|(_, s)| &s.0))
                .collect(),
        ),
    ];
    Ok(ValidationReport {
        clips: ok.len(),
        real_means,
        separations,
        aggregate,
        sound_metrics,
        failures,
    })
}
