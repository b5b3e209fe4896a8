//! Experiment tracking.
//!
//! - [`tensorboard`]: a TensorBoard event-file writer (scalars, images, audio, text).
//! - [`mlflow`]: an MLflow REST client (runs, params, batched metrics, artifacts, status).

pub mod mlflow;
mod proto;
pub mod tensorboard;

pub use mlflow::{MlflowError, MlflowRun, RunStatus};
pub use tensorboard::{EventWriter, TensorboardError};
