//! sonora-recipes: config-driven training recipes (pretrain, fine-tune, character
//! fine-tune share one loop).
//!
//! - [`config`]: the recipe schema, one section per component.
//! - [`train`]: the training loop.
//!
//! Not built yet (each refused with a clear error where a config asks for it): resuming
//! (`--resume`), gradient accumulation, EMA, fine-tuning from a checkpoint with frozen
//! parts or LoRA, MLflow tracking, distributed backends.

pub mod config;
pub mod train;

pub use config::Recipe;
pub use train::{StepLog, TrainError, TrainOutcome, train};
