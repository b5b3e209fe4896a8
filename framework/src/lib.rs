//! sonora-framework: the core every other sonora crate builds on.
//!
//! - [`clip`]: the [`Clip`] value (frames, audio, caption, metadata) and [`ClipSpec`].
//! - [`media`]: MP4 (H.264 + Opus) encode/decode, WAV, PNG, frame resize, audio resampling.
//! - [`model`]: the joint video-audio DiT (config, patchify, RoPE, text encoder, blocks).
//! - [`diffusion`]: flow matching, conditioning modes, samplers.
//! - [`budget`]: memory estimates checked before allocating from user numbers.
//! - [`checkpoint`]: `model.safetensors` + manifest + tokenizer, atomic and checksummed.
//! - [`generate`]: prompt (and given media) → clips, one entry point for every caller.
//! - [`device`]: `--device` backend selection.
//! - [`perf`]: train-step and sampling benchmarks.
//! - [`registry`]: promoted model versions, aliases and their history.
//! - [`registry_mlflow`]: the same promotion into MLflow's model registry.
//! - [`tracking`]: TensorBoard event files.
//! - [`fsutil`]: atomic file writes and SHA-256 checksums.

pub mod budget;
pub mod checkpoint;
pub mod clip;
pub mod device;
pub mod diffusion;
pub mod distributed;
pub mod fsutil;
pub mod generate;
pub mod media;
pub mod model;
pub mod perf;
pub mod registry;
pub mod registry_mlflow;
pub mod tracking;

pub use clip::{Audio, Clip, ClipMetadata, ClipSpec, Frames};
pub mod config;
