//! sonora-recipes: config-driven training recipes (pretrain, fine-tune, character
//! fine-tune share one loop).
//!
//! - [`config`]: the recipe schema, one section per component.
//! - [`step`]: one optimizer step (accumulation, all-reduce, clipping, AdamW, EMA).
//! - [`train`]: the loop around it (data, checkpoints, tracking, samples, signals).
//! - [`resume`]: what a checkpoint holds so a resumed run is bit-for-bit the uninterrupted one.
//! - [`params`]: stable parameter ids, global-norm clipping, freezable model parts.
//! - [`ema`]: the exponential moving average of the weights.
//! - [`data`]: dataset rows → training examples, character references, validation set.
//! - [`modes`]: the training task mix (text, image, extension, video → audio, audio → video).
//! - [`samples`]: fixed-prompt samples to MP4 and TensorBoard.
//!
//! Not built (refused with a clear error where a config asks for it): bf16. NCCL
//! (`distributed.backend = "nccl"`) needs a `--features nccl` build.

pub mod config;
pub mod data;
pub mod ema;
pub mod modes;
pub mod params;
pub mod resume;
pub mod samples;
pub mod step;
pub mod train;

pub use config::Recipe;
pub use resume::Resume;
pub use train::{StepLog, TrainError, TrainOptions, TrainOutcome, train};
