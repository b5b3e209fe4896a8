//! Flow matching, conditioning modes and samplers.
//!
//! - [`conditioning`]: which tokens each mode gives clean (per-token timesteps + loss mask).
//! - [`flow`]: the rectified-flow objective, timestep sampling and training batches.
//! - [`sampler`]: Euler / Heun with classifier-free guidance.

pub mod conditioning;
pub mod flow;
pub mod sampler;

pub use conditioning::{Mode, clean_tokens};
pub use flow::{
    Example, FlowConfig, FlowLoss, TrainBatch, flow_loss, flow_loss_over, loss_denominators,
    make_batch, make_batch_at, motion_weights, sample_rng, shift_t,
};
pub use sampler::{
    CANCELLED, SOUND_PASS_SEED, SampleError, SampleRequest, SamplerConfig, SamplerKind, sample,
    sample_cancellable, sample_from_start,
};
