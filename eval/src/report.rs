//! What a suite run leaves behind: one row per case (`clips.parquet`) and `report.json` with
//! per-metric means and one aggregate score to rank checkpoints by.
//!
//! **The aggregate** (`score`, in [0, 1], higher is better) is the mean over the reported
//! metrics of the mean over cases of each metric's *goodness*: the value mapped to [0, 1]
//! with 1 = best — `v` or `1 − v` for metrics in [0, 1], `1 − v/R` for metrics bounded by
//! `R` (500 ms for sync offsets, 255 for flicker), and `1/(1 + v)` for unbounded errors.
//! A failed case scores goodness 0 on every metric, so failures cost score. Cases where
//! a metric does not apply (no contact, no reference) leave it out.

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
        let vals: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.scores.get(name).copied())
            .filter(|v| v.is_finite())
            .collect();
        let n = vals.len();
        let good: f64 = vals.iter().map(|v| goodness(name, *v)).sum();
        metrics.insert(
            name.clone(),
            MetricSummary {
                mean: if n > 0 {
                    vals.iter().sum::<f64>() / n as f64
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

impl Report {
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

    /// A fixed-width table of the per-metric means.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "{} on {}: score {:.3} ({} cases, {} failed)\n",
            self.suite, self.source, self.score, self.cases, self.failed
        );
        for (k, m) in &self.metrics {
            s += &format!(
                "  {k:<36} {:>10.4}  (n={}, goodness {:.3})\n",
                m.mean, m.n, m.goodness
            );
        }
        let modes: Vec<String> = self
            .by_mode
            .iter()
            .map(|(k, m)| format!("{k} {:.3} ({} cases)", m.score, m.cases))
            .collect();
        s += &format!("  by case kind: {}\n", modes.join(", "));
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

/// Reports side by side, best first by [`Report::score`]; the text says which checkpoint is
/// best (the data ceiling and untrained baselines are shown for reference, not ranked).
pub fn compare(reports: &[Report]) -> String {
    if reports.is_empty() {
        return "no reports\n".into();
    }
    let mut order: Vec<&Report> = reports.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let metrics: std::collections::BTreeSet<&String> =
        reports.iter().flat_map(|r| r.metrics.keys()).collect();
    let mut s = format!("{:<40} {:>7} {:>6}", "source", "score", "failed");
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
        s += &format!("{:<40} {:>7.3} {:>6}", label(&r.source), r.score, r.failed);
        for m in &metrics {
            match r.metrics.get(*m) {
                Some(v) => s += &format!(" {:>12.4}", v.mean),
                None => s += &format!(" {:>12}", "-"),
            }
        }
        s += "\n";
    }
    let is_ref = |r: &Report| r.source.starts_with("data:") || r.source.starts_with("untrained:");
    match order.iter().find(|r| !is_ref(r)) {
        Some(b) => {
            s += &format!(
                "best checkpoint: {} (score {:.3}: the mean over metrics of each metric's goodness in [0, 1])\n",
                b.source, b.score
            )
        }
        None => s += "no checkpoint among these reports (only references)\n",
    }
    for r in order.iter().filter(|r| is_ref(r)) {
        s += &format!("reference: {} score {:.3}\n", label(&r.source), r.score);
    }
    s
}
