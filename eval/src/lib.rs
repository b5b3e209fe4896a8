//! sonora-eval: evaluation suites over decoded clips.
//!
//! - [`metric`]: the metric catalogue (name, range, direction, what it measures).
//! - [`track`]: background model + connected components + track association.
//! - [`motion`]: block-matching motion estimation and frame interpolation.
//! - [`onsets`]: audio onset detection.
//! - [`physics`]: the physics suite on the synthetic world's domain.
//! - [`consistency`]: the consistency suite for any video.
//! - [`perturb`]: perturbed copies of ground-truth clips (time reversal, teleport, …).
//! - [`validation`]: how well each metric separates real clips from perturbed ones (AUC).
//! - [`untrained`]: an untrained model's output beside fitted ground truth (validation's floor).
//!
//! - [`suite`]: suite configs (`configs/eval/*.toml`).
//! - [`cases`], [`scene`]: held-out cases fitted to a model's shape, their scenes cut to match.
//! - [`runner`]: sample and score a checkpoint, or score a dataset's own clips.
//! - [`report`]: `report.json`, `clips.parquet`, the aggregate and normalised scores, comparison.
//! - [`baseline`]: the untrained floor and data ceiling, computed once per suite and model.
//! - [`dashboard`]: a self-contained HTML page of a run's scores and clips.

pub mod baseline;
pub mod cases;
pub mod consistency;
pub mod dashboard;
pub mod error;
pub mod metric;
pub mod motion;
pub mod onsets;
pub mod perturb;
pub mod physics;
pub mod report;
pub mod runner;
pub mod scene;
pub mod suite;
pub mod track;
pub mod untrained;
pub mod validation;

pub use error::EvalError;
pub use metric::{MetricInfo, Scores};
