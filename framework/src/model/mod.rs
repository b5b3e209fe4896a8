//! The joint video-audio diffusion transformer.
//!
//! - [`config`]: shapes (`configs/model/*.toml`).
//! - [`patchify`]: the autoencoder boundary (identity pixel / waveform patches) and RoPE positions.
//! - [`rope`]: 3D rotary embeddings with audio on the video time axis.
//! - [`text`]: the caption tokenizer and text encoder.
//! - [`layers`]: attention, MLP, timestep embedding, the AdaLN-zero joint block.
//! - [`blas`]: OpenBLAS's GEMM, loaded at run time when installed.
//! - [`linear`]: linear layers through it on the `flex` CPU backend, forward and backward.
//! - [`sdpa`]: the fused attention kernel (forward and backward) on the `flex` CPU backend.
//! - [`gelu`]: exact GELU and its gradient, vectorised, on the `flex` CPU backend.
//! - [`norm`]: LayerNorm with its own backward pass on the `flex` CPU backend.
//! - [`rotate`]: RoPE's rotation, forward and backward, on the `flex` CPU backend.
//! - `torch_autograd` (feature `tch`): attention and LayerNorm on libtorch under autodiff,
//!   differentiated by libtorch's fused backward kernels.
//! - [`levels`]: per-token timesteps factored into each clip's few distinct values.
//! - [`dit`]: the model.
//! - [`flops`]: parameter and FLOP counts.
//! - [`memory`]: memory estimates checked before a model is built.

pub mod blas;
pub mod config;
pub mod dit;
pub mod flops;
pub mod gelu;
pub mod layers;
pub mod levels;
pub mod linear;
pub mod memory;
pub mod norm;
pub mod patchify;
pub mod rope;
pub mod rotate;
pub mod sdpa;
pub mod spectrogram;
pub mod text;
#[cfg(feature = "tch")]
pub mod torch_autograd;

pub use config::{AudioCodec, ImageCond, ModelConfig};
pub use dit::{DitInput, DitOutput, SonoraDit};
pub use patchify::{Autoencoder, ClipTokens, PatchCodec};
pub use rope::Rope;
pub use text::{CaptionTokenizer, Prompt, TextEncoder};

/// Whether the flex kernels of [`sdpa`], [`gelu`], [`norm`], [`rotate`] and [`linear`] are used (the default), or
/// burn's own operations: `SONORA_FLEX_KERNELS=0` in the environment picks burn's, to
/// compare the two (read once per process). It also turns off the libtorch counterparts in
/// `torch_autograd` (feature `tch`).
pub fn flex_kernels() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SONORA_FLEX_KERNELS").map_or(true, |v| v != "0"))
}
