//! One optimizer step of flow-matching training, as one function: forward and backward
//! over the micro-batches of gradient accumulation, the gradients summed over ranks, the
//! global-norm clip, AdamW and the EMA. Data, logs, checkpoints and samples live around it
//! (`train`); `sonora bench train-step` times this same step.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use sonora_framework::diffusion::{FlowConfig, TrainBatch, flow_loss_over, loss_denominators};
use sonora_framework::distributed::{Collective, ReduceOp, Single};
use sonora_framework::model::SonoraDit;
use sonora_framework::perf::TrainStep;

use crate::ema::Ema;
use crate::params::{ParamList, all_reduce_grads, clip_global_norm, param_shapes};
use crate::train::TrainError;

/// One rank's micro-batch, tokenised and noised.
pub struct MicroBatch {
    /// Model input, targets and loss masks; `None` when this rank has nothing for this
    /// micro-batch (no clip of its share showed the character) while others do: it then
    /// joins the collectives with nothing to add.
    pub batch: Option<TrainBatch>,
    /// Clips in it.
    pub samples: usize,
}

/// What a step reports, summed or averaged over every rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Weighted flow-matching loss of the global batch (mean over micro-batches).
    pub loss: f64,
    /// Its video part.
    pub video: f64,
    /// Its audio part.
    pub audio: f64,
    /// Clips in the global batch.
    pub samples: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The model, its optimizer and EMA, and the settings of a step.
pub struct Trainer {
    /// The weights being trained.
    pub model: SonoraDit,
    /// AdamW (its moments are keyed by stable parameter ids).
    pub optim: ModuleOptimizer,
    /// Moving average of the weights, when `train.ema_decay > 0`.
    pub ema: Option<Ema>,
    /// Loss weights and timestep distribution.
    pub fc: FlowConfig,
    /// Micro-batches per step.
    pub accum: usize,
    /// Global-norm clip (0 = none).
    pub grad_clip: f64,
    params: ParamList,
    shapes: Vec<Vec<usize>>,
    inner: Device,
}

impl Trainer {
    /// A trainer for `model` on `device` (the autodiff device).
    pub fn new(
        model: SonoraDit,
        optim: ModuleOptimizer,
        ema: Option<Ema>,
        fc: FlowConfig,
        accum: usize,
        grad_clip: f64,
        device: &Device,
    ) -> Self {
        Self {
            params: ParamList::of(&model),
            shapes: param_shapes(&model),
            inner: device.clone().without_autodiff(),
            model,
            optim,
            ema,
            fc,
            accum: accum.max(1),
            grad_clip,
        }
    }

    /// One optimizer step at learning rate `lr`; `next` gives this rank's micro-batches.
    /// Each micro-batch's loss is normalised over the global batch (its denominators summed
    /// over the ranks), so the gradients summed over the ranks are that batch's gradient.
    /// `Ok(None)`: a loss was non-finite on some rank, and every rank skips the step
    /// without changing the weights, the optimizer or the EMA (the micro-batches read and
    /// their random draws are used up).
    pub fn step(
        &mut self,
        lr: f64,
        comm: &dyn Collective,
        next: &mut dyn FnMut() -> Result<MicroBatch, TrainError>,
    ) -> Result<Option<StepReport>, TrainError> {
        let mut acc = GradientsAccumulator::<SonoraDit>::new();
        let mut sums = [0.0f64; 4]; // loss, video, audio, samples
        for _ in 0..self.accum {
            let mb = next()?;
            let mut den = mb.batch.as_ref().map_or([0.0; 2], loss_denominators);
            comm.all_reduce_f64(&mut den, ReduceOp::Sum);
            let Some(b) = &mb.batch else {
                // the same votes as a rank with data, nothing accumulated
                if comm.any(false) {
                    return Ok(None);
                }
                continue;
            };
            // [B, N, D] predictions against the velocity targets
            let out = self.model.forward(b.input.clone(), &b.rope);
            let losses = flow_loss_over(out, b, &self.fc, den);
            // total, video, audio in one read from the device
            let read = Tensor::cat(
                vec![
                    losses.total.clone().detach(),
                    losses.video.detach(),
                    losses.audio.detach(),
                ],
                0,
            )
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| TrainError(format!("reading the losses: {e:?}")))?;
            let loss = read[0];
            if comm.any(!loss.is_finite()) {
                return Ok(None);
            }
            sums[0] += loss;
            sums[1] += read[1];
            sums[2] += read[2];
            sums[3] += mb.samples as f64;
            let grads = GradientsParams::from_grads(
                losses.total.div_scalar(self.accum as f64).backward(),
                &self.model,
            );
            acc.accumulate(&self.model, grads);
        }
        let mut grads = acc.grads();
        if comm.world() > 1 {
            all_reduce_grads(&self.params, &self.shapes, &mut grads, comm, &self.inner);
            comm.all_reduce_f64(&mut sums, ReduceOp::Sum);
        }
        let grad_norm = clip_global_norm(&self.params, &mut grads, self.grad_clip);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        if let Some(ema) = self.ema.as_mut() {
            ema.update(&self.model);
        }
        let k = self.accum as f64;
        Ok(Some(StepReport {
            loss: sums[0] / k,
            video: sums[1] / k,
            audio: sums[2] / k,
            samples: sums[3] as usize,
            grad_norm,
        }))
    }

    /// The weights to validate, checkpoint-rank and sample with: the EMA's when EMA is on.
    pub fn eval_model(&self) -> SonoraDit {
        self.ema
            .as_ref()
            .map_or_else(|| self.model.valid(), |e| e.model.clone())
    }
}

/// `sonora bench train-step` times this: one process, the same micro-batch each time.
impl TrainStep for Trainer {
    fn step(&mut self, batch: &TrainBatch) -> Result<f64, String> {
        let samples = batch.input.video.dims()[0];
        let report = Trainer::step(self, 1e-4, &Single, &mut || {
            Ok(MicroBatch {
                batch: Some(batch.clone()),
                samples,
            })
        })
        .map_err(|e| e.0)?;
        Ok(report.map_or(f64::NAN, |r| r.loss))
    }
}
