//! sonora-framework: the core every other sonora crate builds on.
//!
//! - [`clip`]: the [`Clip`] value (frames, audio, caption, metadata) and [`ClipSpec`].
//! - [`media`]: MP4 (H.264 + Opus) encode/decode, WAV, PNG, frame resize, audio resampling.
//! - [`fsutil`]: atomic file writes and SHA-256 checksums.

pub mod clip;
pub mod fsutil;
pub mod media;

pub use clip::{Audio, Clip, ClipMetadata, ClipSpec, Frames};
pub mod config;
