//! `sonora eval validate`: do the metrics measure what they claim?
//!
//! Ground-truth synthetic clips are scored beside perturbed copies (see
//! [`crate::perturb`]); for every metric and perturbation the report gives the AUC —
//! the probability that a real clip scores better than a perturbed one (0.5: blind,
//! 1: perfect) — and each metric's mean on real clips.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use sonora_datasets::synth::{
    Split, SynthConfig, clip_from_scene, render_reference, roster, sample_scene,
};

use crate::consistency::{ConsistencyInput, consistency_scores};
use crate::error::EvalError;
use crate::metric::{Scores, lookup, oriented};
use crate::perturb::{Perturbation, perturb};
use crate::physics::physics_scores;

/// Every perturbation the validation applies.
pub const PERTURBATIONS: &[Perturbation] = &[
    Perturbation::TimeReversed,
    Perturbation::Teleported,
    Perturbation::Vanished,
    Perturbation::Frozen,
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
    ("physics.permanence_violation", Perturbation::Vanished),
    ("physics.permanence_violation", Perturbation::Teleported),
    ("physics.appearance_drift", Perturbation::ColourDrift),
    ("physics.av_offset_ms", Perturbation::AudioShifted(150)),
    ("physics.av_offset_ms", Perturbation::AudioShifted(-250)),
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

/// What to validate on.
#[derive(Clone, Debug)]
pub struct ValidationConfig {
    /// Ground-truth scenes.
    pub clips: usize,
    /// Scene seed.
    pub seed: u64,
    /// The world the scenes come from.
    pub synth: SynthConfig,
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

/// The validation report.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationReport {
    /// Ground-truth clips scored.
    pub clips: usize,
    /// Mean of every metric on real clips.
    pub real_means: BTreeMap<String, f64>,
    /// Every metric × perturbation.
    pub separations: Vec<Separation>,
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
        for f in &self.failures {
            s += &format!("failed: {f}\n");
        }
        s
    }
}

/// All scores of one clip (physics against its prompt, consistency with the prompted
/// characters' reference images).
fn score(
    clip: &sonora_framework::Clip,
    labels: &sonora_datasets::labels::PhysicsLabels,
) -> Result<Scores, EvalError> {
    let mut s = physics_scores(clip, labels)?;
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
    Ok(s)
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

/// Generates, perturbs and scores; see the module docs.
pub fn validate_metrics(cfg: &ValidationConfig) -> Result<ValidationReport, EvalError> {
    cfg.synth
        .validate()
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    // per clip: real scores and (perturbation index, scores)
    type PerClip = (Scores, Vec<(usize, Scores)>);
    let results: Vec<Result<PerClip, String>> = (0..cfg.clips)
        .into_par_iter()
        .map(|i| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
            let scene = sample_scene(&cfg.synth, &mut rng);
            let real = clip_from_scene(&cfg.synth, Split::Test, i as u64, &scene)
                .map_err(|e| format!("clip {i}: {e}"))?;
            let rs = score(&real.clip, &real.labels).map_err(|e| format!("clip {i}: {e}"))?;
            let mut ps = Vec::new();
            for (j, p) in PERTURBATIONS.iter().enumerate() {
                if let Some(c) = perturb(&cfg.synth, &scene, &real, *p) {
                    match score(&c, &real.labels) {
                        Ok(s) => ps.push((j, s)),
                        Err(e) => return Err(format!("clip {i} {}: {e}", p.name())),
                    }
                }
            }
            Ok((rs, ps))
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
    let metrics: Vec<String> = crate::metric::catalogue()
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    let mut real_means = BTreeMap::new();
    let mut separations = Vec::new();
    for m in &metrics {
        let info = lookup(m).map_err(EvalError::Invalid)?;
        let real: Vec<f64> = ok.iter().filter_map(|(r, _)| r.get(m).copied()).collect();
        if real.is_empty() {
            continue;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        real_means.insert(m.clone(), mean(&real));
        for (j, p) in PERTURBATIONS.iter().enumerate() {
            let pert: Vec<f64> = ok
                .iter()
                .flat_map(|(_, ps)| {
                    ps.iter()
                        .filter(|(k, _)| *k == j)
                        .filter_map(|(_, s)| s.get(m).copied())
                })
                .collect();
            if pert.is_empty() {
                continue;
            }
            let o = |v: &[f64]| v.iter().map(|x| oriented(&info, *x)).collect::<Vec<_>>();
            separations.push(Separation {
                metric: m.clone(),
                perturbation: p.name(),
                auc: auc(&o(&real), &o(&pert)),
                real_mean: mean(&real),
                perturbed_mean: mean(&pert),
                n: (real.len(), pert.len()),
                targeted: TARGETS.iter().any(|(tm, tp)| tm == m && tp == p),
            });
        }
    }
    Ok(ValidationReport {
        clips: ok.len(),
        real_means,
        separations,
        failures,
    })
}
