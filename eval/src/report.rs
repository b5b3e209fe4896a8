//! What a suite run leaves behind: one row per case (`clips.parquet`) and `report.json` with
//! per-metric means and one aggregate score to rank checkpoints by.
//!
//! **The aggregate** (`score`, in [0, 1], higher is better) is the mean over the reported
//! metrics of the mean over cases of each metric's *goodness*: the value mapped to [0, 1]
//! with 1 = best — `v` or `1 − v` for metrics in [0, 1], `1 − v/R` for metrics bounded by
//! `R` (500 ms for sync offsets, 255 for flicker), and `1/(1 + v)` for unbounded errors.
//! A failed case scores goodness 0 on every metric, so failures cost score. Cases where
//! a metric does not apply (no contact, no reference) leave it out.
//!
//! **No credit for stillness.** The consistency metrics that a frozen clip would ace —
//! `temporal_flicker`, `motion_smoothness`, `subject_consistency`,
//! `background_consistency`, `boundary_continuity` ([`MOTION_GATED`]) — earn their
//! goodness only in proportion to the clip's motion credit `min(1, dd / 0.5)`, where `dd`
//! is its `dynamic_degree` (the share of frame pairs in which anything moves): a clip
//! moving in half its frame pairs or more earns it all (ground truth of the synthetic
//! world moves in 55% of its pairs on average, at rest on the floor the rest), a clip
//! frozen for three quarters of its length about a third, a still image or an untrained
//! model's grey clip none. The metric values in the report stay ungated; only the
//! goodness (and so `score`) is weighted.
//!
//! **The normalised score** (`normalised.score`) places the model between the untrained
//! floor and the data ceiling *of the same suite, model shape and window*: for each
//! metric `(g − g_floor) / (g_ceiling − g_floor)` of the mean goodness `g` (0 = no better
//! than freshly initialised weights, 1 = as good as the dataset's own clips, below 0 =
//! worse than untrained), clamped to [−1, 2] and averaged over the metrics where the
//! ceiling beats the floor by at least [`MIN_RANGE`], the floor measured the metric on at
//! least half as many cases as the model and the ceiling on at least half of its own (the
//! others cannot tell a model from noise in this suite, or have no level to scale by, and
//! are listed as unscaled). Per case kind the floor is the
//! untrained model's cases of that kind and the ceiling the data. `sonora eval run`
//! computes the floor (`--untrained`) and ceiling (`eval data`) reports once per suite,
//! model config, tokenizer and window and reuses them (see [`crate::baseline`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};
use sonora_framework::fsutil::write_atomic;

use crate::EvalError;
use crate::metric::{Scores, catalogue, lookup};

/// One case's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipRow {
    /// Case id (`<mode>-<clip_id>`).
    pub case_id: String,
    /// Dataset clip.
    pub clip_id: String,
    /// `text`, `image`, `extension`, `character` or `data`.
    pub mode: String,
    /// Prompt.
    pub prompt: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// The MP4, relative to the report's directory.
    pub video: Option<String>,
    /// Scores by metric.
    pub scores: Scores,
    /// The clip's dynamic degree in [0, 1], whose [`motion_credit`] weighs the goodness of
    /// the [`MOTION_GATED`] metrics; absent = full credit (reports from before it).
    #[serde(default)]
    pub motion: Option<f64>,
}

impl ClipRow {
    /// A failed case.
    pub fn failed(case_id: &str, clip_id: &str, mode: &str, prompt: &str, reason: String) -> Self {
        Self {
            case_id: case_id.into(),
            clip_id: clip_id.into(),
            mode: mode.into(),
            prompt: prompt.into(),
            status: "failed".into(),
            reason: Some(reason),
            video: None,
            scores: Scores::new(),
            motion: None,
        }
    }
}

/// A metric's summary over the cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Mean over the cases where it applies.
    pub mean: f64,
    /// Cases where it applies.
    pub n: usize,
    /// Mean goodness in [0, 1] (failed cases count 0).
    pub goodness: f64,
}

/// `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Suite name.
    pub suite: String,
    /// What was scored: a checkpoint path, `untrained:<path>` or `data:<path>`.
    pub source: String,
    /// Training step of the checkpoint (absent for data).
    pub step: Option<u64>,
    /// Cases scored.
    pub cases: usize,
    /// Cases that failed.
    pub failed: usize,
    /// The aggregate (see the module docs).
    pub score: f64,
    /// Per metric.
    pub metrics: BTreeMap<String, MetricSummary>,
    /// The same summaries for each case kind (`text`, `image`, `extension`, …).
    #[serde(default)]
    pub by_mode: BTreeMap<String, ModeSummary>,
    /// Every case.
    pub rows: Vec<ClipRow>,
    /// The score between the untrained floor and the data ceiling (module docs); absent
    /// when no floor and ceiling were at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalised: Option<Normalised>,
}

/// The smallest `g_ceiling − g_floor` for a metric to enter the normalised score.
pub const MIN_RANGE: f64 = 0.05;

/// The consistency metrics whose goodness is weighted by the clip's motion credit.
pub const MOTION_GATED: &[&str] = &[
    "consistency.temporal_flicker",
    "consistency.motion_smoothness",
    "consistency.subject_consistency",
    "consistency.background_consistency",
    "consistency.boundary_continuity",
];

/// A report's score placed between its floor and its ceiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalised {
    /// Mean over the scaled metrics of the clamped normalised goodness (`None` when no
    /// metric could be scaled).
    pub score: Option<f64>,
    /// The floor report's source (`untrained:…`).
    pub floor: String,
    /// The ceiling report's source (`data:…`).
    pub ceiling: String,
    /// Per metric (scaled or not).
    pub metrics: BTreeMap<String, NormalisedMetric>,
    /// The normalised score of each case kind.
    pub by_mode: BTreeMap<String, f64>,
}

/// One metric between floor and ceiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormalisedMetric {
    /// `(g − floor) / (ceiling − floor)`, unclamped; `None` when unscaled.
    pub value: Option<f64>,
    /// The model's mean goodness.
    pub goodness: f64,
    /// The untrained floor's mean goodness (absent when the floor lacks the metric).
    pub floor: Option<f64>,
    /// The data ceiling's mean goodness (absent when the data lacks the metric).
    pub ceiling: Option<f64>,
    /// Whether the model's goodness is above the floor's.
    pub beats_floor: Option<bool>,
}

/// Normalises `metrics` against the floor's and the ceiling's summaries: per-metric
/// entries and the aggregate (`None` when no metric could be scaled).
fn normalise_metrics(
    metrics: &BTreeMap<String, MetricSummary>,
    floor: &BTreeMap<String, MetricSummary>,
    ceiling: (&BTreeMap<String, MetricSummary>, usize),
) -> (BTreeMap<String, NormalisedMetric>, Option<f64>) {
    let mut out = BTreeMap::new();
    let mut scaled = Vec::new();
    // a floor that measured a metric on under half the cases the model did (an untrained
    // model's still clips show few impacts to time), or a ceiling on under half its own
    // cases, gives no level to scale it by
    for (k, m) in metrics {
        let f = floor
            .get(k)
            .filter(|s| 2 * s.n >= m.n.max(1))
            .map(|s| s.goodness);
        let c = ceiling
            .0
            .get(k)
            .filter(|s| 2 * s.n >= ceiling.1.max(1))
            .map(|s| s.goodness);
        let value = match (f, c) {
            (Some(f), Some(c)) if c - f >= MIN_RANGE => Some((m.goodness - f) / (c - f)),
            _ => None,
        };
        if let Some(v) = value {
            scaled.push(v.clamp(-1.0, 2.0));
        }
        out.insert(
            k.clone(),
            NormalisedMetric {
                value,
                goodness: m.goodness,
                floor: f,
                ceiling: c,
                beats_floor: f.map(|f| m.goodness > f),
            },
        );
    }
    let score = (!scaled.is_empty()).then(|| scaled.iter().sum::<f64>() / scaled.len() as f64);
    (out, score)
}

/// The summary of one case kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModeSummary {
    /// Cases of this kind.
    pub cases: usize,
    /// Of which failed.
    pub failed: usize,
    /// The aggregate over these cases.
    pub score: f64,
    /// Per metric.
    pub metrics: BTreeMap<String, MetricSummary>,
}

/// Per-metric summaries and the aggregate score of `rows`.
fn summarise(rows: &[&ClipRow]) -> (BTreeMap<String, MetricSummary>, f64) {
    let failed = rows.iter().filter(|r| r.status != "ok").count();
    let mut metrics = BTreeMap::new();
    let names: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.scores.keys()).collect();
    for name in names {
        let vals: Vec<(f64, Option<f64>)> = rows
            .iter()
            .filter_map(|r| r.scores.get(name).map(|v| (*v, r.motion)))
            .filter(|(v, _)| v.is_finite())
            .collect();
        let n = vals.len();
        let good: f64 = vals
            .iter()
            .map(|(v, motion)| gated_goodness(name, *v, *motion))
            .sum();
        metrics.insert(
            name.clone(),
            MetricSummary {
                mean: if n > 0 {
                    vals.iter().map(|(v, _)| v).sum::<f64>() / n as f64
                } else {
                    f64::NAN
                },
                n,
                goodness: good / (n + failed).max(1) as f64,
            },
        );
    }
    let score = if metrics.is_empty() {
        0.0
    } else {
        metrics.values().map(|m| m.goodness).sum::<f64>() / metrics.len() as f64
    };
    (metrics, score)
}

/// A metric's value mapped to [0, 1], 1 = best.
pub fn goodness(metric: &str, v: f64) -> f64 {
    let Ok(info) = lookup(metric) else {
        return 0.0;
    };
    let bound = match metric {
        "physics.av_offset_ms" | "consistency.av_sync_offset_ms" => Some(500.0),
        "consistency.temporal_flicker" => Some(255.0),
        _ if info.range.starts_with("[0, 1]") => Some(1.0),
        _ => None,
    };
    let g = match (bound, info.higher_is_better) {
        (Some(r), true) => v / r,
        (Some(r), false) => 1.0 - v / r,
        (None, true) => v / (1.0 + v),
        (None, false) => 1.0 / (1.0 + v.max(0.0)),
    };
    if g.is_finite() {
        g.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The dynamic degree from which a clip earns all of its consistency credit.
pub const FULL_MOTION: f64 = 0.5;

/// The consistency credit a clip of dynamic degree `dd` earns: `min(1, dd / FULL_MOTION)`.
pub fn motion_credit(dd: f64) -> f64 {
    (dd / FULL_MOTION).clamp(0.0, 1.0)
}

/// [`goodness`] weighted by the clip's motion credit for the [`MOTION_GATED`] metrics
/// (`motion` is the clip's dynamic degree).
pub fn gated_goodness(metric: &str, v: f64, motion: Option<f64>) -> f64 {
    let g = goodness(metric, v);
    match motion {
        Some(dd) if MOTION_GATED.contains(&metric) => g * motion_credit(dd),
        _ => g,
    }
}

/// One clip's aggregate: the mean over its metrics of their gated goodness (the report's
/// `score` for a suite of this one clip).
pub fn clip_score(scores: &Scores, motion: Option<f64>) -> f64 {
    let g: Vec<f64> = scores
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| gated_goodness(k, *v, motion))
        .collect();
    if g.is_empty() {
        0.0
    } else {
        g.iter().sum::<f64>() / g.len() as f64
    }
}

impl Report {
    /// Places this report between `floor` (the untrained model's report of the same
    /// suite and model) and `ceiling` (the data's), filling [`Report::normalised`].
    pub fn normalise(&mut self, floor: &Report, ceiling: &Report) {
        let whole_ceiling = (&ceiling.metrics, ceiling.cases);
        let (metrics, score) = normalise_metrics(&self.metrics, &floor.metrics, whole_ceiling);
        let by_mode = self
            .by_mode
            .iter()
            .filter_map(|(mode, m)| {
                let f = floor
                    .by_mode
                    .get(mode)
                    .map_or(&floor.metrics, |x| &x.metrics);
                normalise_metrics(&m.metrics, f, whole_ceiling)
                    .1
                    .map(|v| (mode.clone(), v))
            })
            .collect();
        self.normalised = Some(Normalised {
            score,
            floor: floor.source.clone(),
            ceiling: ceiling.source.clone(),
            metrics,
            by_mode,
        });
    }

    /// The normalised score when there is one.
    pub fn normalised_score(&self) -> Option<f64> {
        self.normalised.as_ref().and_then(|n| n.score)
    }

    /// Summarises `rows`.
    pub fn new(suite: &str, source: String, step: Option<u64>, rows: Vec<ClipRow>) -> Self {
        let failed = rows.iter().filter(|r| r.status != "ok").count();
        let (metrics, score) = summarise(&rows.iter().collect::<Vec<_>>());
        let mut by_mode = BTreeMap::new();
        let modes: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.mode).collect();
        for mode in modes {
            let of: Vec<&ClipRow> = rows.iter().filter(|r| &r.mode == mode).collect();
            let (metrics, score) = summarise(&of);
            by_mode.insert(
                mode.clone(),
                ModeSummary {
                    cases: of.len(),
                    failed: of.iter().filter(|r| r.status != "ok").count(),
                    score,
                    metrics,
                },
            );
        }
        Self {
            suite: suite.into(),
            source,
            step,
            cases: rows.len(),
            failed,
            score,
            metrics,
            by_mode,
            rows,
            normalised: None,
        }
    }

    /// Writes `report.json` and `clips.parquet` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let io = |p: &Path, e: String| EvalError::Invalid(format!("{}: {e}", p.display()));
        let json =
            serde_json::to_string_pretty(self).map_err(|e| EvalError::Invalid(e.to_string()))?;
        let p = dir.join("report.json");
        write_atomic(&p, json.as_bytes()).map_err(|e| io(&p, e.to_string()))?;
        let p = dir.join("clips.parquet");
        write_atomic(&p, &self.parquet()?).map_err(|e| io(&p, e.to_string()))?;
        Ok(())
    }

    /// Reads a `report.json`.
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let bytes = std::fs::read(path)
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            EvalError::Invalid(format!("{}: not a sonora eval report: {e}", path.display()))
        })
    }

    /// The per-case table as Parquet: identity columns, then one nullable float column per
    /// metric of the catalogue (null where it does not apply or the case failed).
    pub fn parquet(&self) -> Result<Vec<u8>, EvalError> {
        let bad = |e: String| EvalError::Invalid(format!("clips.parquet: {e}"));
        let text = |f: &dyn Fn(&ClipRow) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                self.rows.iter().map(f).collect::<Vec<_>>(),
            ))
        };
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (name, nullable, col) in [
            ("case_id", false, text(&|r| Some(r.case_id.clone()))),
            ("clip_id", false, text(&|r| Some(r.clip_id.clone()))),
            ("mode", false, text(&|r| Some(r.mode.clone()))),
            ("prompt", false, text(&|r| Some(r.prompt.clone()))),
            ("status", false, text(&|r| Some(r.status.clone()))),
            ("reason", true, text(&|r| r.reason.clone())),
            ("video", true, text(&|r| r.video.clone())),
        ] {
            fields.push(Field::new(name, DataType::Utf8, nullable));
            cols.push(col);
        }
        for m in catalogue() {
            fields.push(Field::new(m.name, DataType::Float64, true));
            cols.push(Arc::new(Float64Array::from(
                self.rows
                    .iter()
                    .map(|r| r.scores.get(m.name).copied())
                    .collect::<Vec<_>>(),
            )));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(|e| bad(e.to_string()))?;
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)
            .map_err(|e| bad(e.to_string()))?;
        w.write(&batch).map_err(|e| bad(e.to_string()))?;
        w.close().map_err(|e| bad(e.to_string()))?;
        Ok(buf)
    }

    /// A fixed-width table of the per-metric means (the normalised score first when the
    /// report has one).
    pub fn render_text(&self) -> String {
        let mut s = format!("{} on {}: ", self.suite, self.source);
        match self.normalised_score() {
            Some(n) => {
                s += &format!(
                    "normalised {n:.3} (0 = untrained, 1 = data), raw score {:.3}",
                    self.score
                )
            }
            None => s += &format!("score {:.3}", self.score),
        }
        s += &format!(" ({} cases, {} failed)\n", self.cases, self.failed);
        let norm = self.normalised.as_ref();
        for (k, m) in &self.metrics {
            s += &format!(
                "  {k:<36} {:>10.4}  (n={}, goodness {:.3}",
                m.mean, m.n, m.goodness
            );
            match norm.and_then(|n| n.metrics.get(k)) {
                Some(NormalisedMetric {
                    value: Some(v),
                    beats_floor,
                    ..
                }) => {
                    let vs = if *beats_floor == Some(true) {
                        "beats"
                    } else {
                        "does not beat"
                    };
                    s += &format!(", normalised {v:.3}, {vs} untrained)\n");
                }
                Some(_) => {
                    s += ", unscaled: data within 0.05 of untrained, or too few floor or ceiling cases)\n"
                }
                None => s += ")\n",
            }
        }
        let modes: Vec<String> = self
            .by_mode
            .iter()
            .map(|(k, m)| match norm.and_then(|n| n.by_mode.get(k)) {
                Some(v) => format!(
                    "{k} {v:.3} normalised, {:.3} raw ({} cases)",
                    m.score, m.cases
                ),
                None => format!("{k} {:.3} ({} cases)", m.score, m.cases),
            })
            .collect();
        s += &format!("  by case kind: {}\n", modes.join(", "));
        if let Some(n) = norm {
            s += &format!(
                "  floor: {}; ceiling: {}\n",
                label(&n.floor),
                label(&n.ceiling)
            );
        }
        for r in self.rows.iter().filter(|r| r.status != "ok") {
            s += &format!(
                "  failed {}: {}\n",
                r.case_id,
                r.reason.as_deref().unwrap_or("")
            );
        }
        s
    }
}

/// A short label for a report's source: `data`, `untrained <run>/step-N` or `<run>/step-N`.
pub fn label(source: &str) -> String {
    let short = |p: &str| {
        let parts: Vec<&str> = p.trim_end_matches('/').rsplit('/').collect();
        match parts.as_slice() {
            [step, "checkpoints", run, ..] => format!("{run}/{step}"),
            [last, ..] => (*last).to_string(),
            [] => p.to_string(),
        }
    };
    if let Some(p) = source.strip_prefix("data:") {
        format!("data ({})", short(p))
    } else if let Some(p) = source.strip_prefix("untrained:") {
        format!("untrained ({})", short(p))
    } else {
        short(source)
    }
}

/// Whether a report is a reference (the data ceiling or an untrained floor), not a
/// checkpoint to rank.
pub fn is_reference(r: &Report) -> bool {
    r.source.starts_with("data:") || r.source.starts_with("untrained:")
}

/// Reports side by side, best first; the text says which checkpoint is best. Checkpoints
/// are ranked by the normalised score when every one of them has it, else by the raw
/// score (and the text says which). The data ceiling and untrained floors are shown for
/// reference, not ranked.
pub fn compare(reports: &[Report]) -> String {
    if reports.is_empty() {
        return "no reports\n".into();
    }
    let by_norm = reports
        .iter()
        .filter(|r| !is_reference(r))
        .all(|r| r.normalised_score().is_some());
    let key = |r: &Report| {
        if by_norm && !is_reference(r) {
            r.normalised_score().unwrap_or(f64::NEG_INFINITY)
        } else {
            r.score
        }
    };
    let mut order: Vec<&Report> = reports.iter().collect();
    // checkpoints first (by the ranking key), then the references by raw score
    order.sort_by(|a, b| {
        is_reference(a)
            .cmp(&is_reference(b))
            .then(key(b).total_cmp(&key(a)))
    });
    let metrics: std::collections::BTreeSet<&String> =
        reports.iter().flat_map(|r| r.metrics.keys()).collect();
    let mut s = format!(
        "{:<40} {:>10} {:>7} {:>6}",
        "source", "normalised", "score", "failed"
    );
    for m in &metrics {
        s += &format!(
            " {:>12}",
            m.rsplit('.')
                .next()
                .unwrap_or(m)
                .chars()
                .take(12)
                .collect::<String>()
        );
    }
    s += "\n";
    for r in &order {
        let norm = r
            .normalised_score()
            .map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        s += &format!(
            "{:<40} {:>10} {:>7.3} {:>6}",
            label(&r.source),
            norm,
            r.score,
            r.failed
        );
        for m in &metrics {
            match r.metrics.get(*m) {
                Some(v) => s += &format!(" {:>12.4}", v.mean),
                None => s += &format!(" {:>12}", "-"),
            }
        }
        s += "\n";
    }
    match order.iter().find(|r| !is_reference(r)) {
        Some(b) if by_norm => {
            s += &format!(
                "best checkpoint: {} (normalised {:.3}: 0 = the untrained model, 1 = the data; raw score {:.3})\n",
                b.source,
                key(b),
                b.score
            )
        }
        Some(b) => {
            s += &format!(
                "best checkpoint: {} (raw score {:.3}: the mean over metrics of each metric's goodness in [0, 1]; not every checkpoint has a normalised score, so the raw one ranks)\n",
                b.source, b.score
            )
        }
        None => s += "no checkpoint among these reports (only references)\n",
    }
    for r in order.iter().filter(|r| is_reference(r)) {
        s += &format!("reference: {} score {:.3}\n", label(&r.source), r.score);
    }
    s
}
