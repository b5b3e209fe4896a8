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
//!
//! Checkpoint scoring, `eval run/compare/dashboard` arrive with the model and recipes.

pub mod consistency;
pub mod error;
pub mod metric;
pub mod motion;
pub mod onsets;
pub mod perturb;
pub mod physics;
pub mod track;
pub mod validation;

pub use error::EvalError;
pub use metric::{MetricInfo, Scores};
