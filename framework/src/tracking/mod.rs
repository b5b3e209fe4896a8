//! Experiment tracking.
//!
//! - [`tensorboard`]: a TensorBoard event-file writer (scalars, images, audio, text).

mod proto;
pub mod tensorboard;

pub use tensorboard::{EventWriter, TensorboardError};
