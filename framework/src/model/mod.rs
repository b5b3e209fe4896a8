//! The joint video-audio diffusion transformer.
//!
//! - [`config`]: shapes (`configs/model/*.toml`).
//! - [`patchify`]: the autoencoder boundary (identity pixel / waveform patches) and RoPE positions.
//! - [`rope`]: 3D rotary embeddings with audio on the video time axis.
//! - [`text`]: the caption tokenizer and text encoder.
//! - [`layers`]: attention, MLP, timestep embedding, the AdaLN-zero joint block.
//! - [`levels`]: per-token timesteps factored into each clip's few distinct values.
//! - [`dit`]: the model.
//! - [`flops`]: parameter and FLOP counts.
//! - [`memory`]: memory estimates checked before a model is built.

pub mod config;
pub mod dit;
pub mod flops;
pub mod layers;
pub mod levels;
pub mod memory;
pub mod patchify;
pub mod rope;
pub mod spectrogram;
pub mod text;

pub use config::{AudioCodec, ImageCond, ModelConfig};
pub use dit::{DitInput, DitOutput, SonoraDit};
pub use patchify::{Autoencoder, ClipTokens, PatchCodec};
pub use rope::Rope;
pub use text::{CaptionTokenizer, Prompt, TextEncoder};
