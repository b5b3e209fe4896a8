//! Model benchmarks: train-step and sampling time, tokens/s, achieved GFLOP/s (counted
//! matmul FLOPs, see [`crate::model::flops`]) and peak resident memory.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::diffusion::TrainBatch;
use crate::diffusion::{
    Example, FlowConfig, Mode, SampleRequest, SamplerConfig, flow_loss, make_batch, sample,
};
use crate::model::flops::forward_flops;
use crate::model::{ClipTokens, ModelConfig, SonoraDit};

/// One benchmark's figures.
#[derive(Clone, Debug, Serialize)]
pub struct PerfReport {
    /// Model config name.
    pub model: String,
    /// What was timed (`train-step`, `train-step, per-token AdaLN`, `sample`).
    pub what: String,
    /// Batch size.
    pub batch: usize,
    /// Tokens per sample (video + audio).
    pub tokens: usize,
    /// Median milliseconds per step (per sampler step for `sample`).
    pub ms_per_step: f64,
    /// Tokens processed per second.
    pub tokens_per_s: f64,
    /// Counted GFLOP per step.
    pub gflop_per_step: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// Peak resident set of the process so far, MiB (Linux `VmHWM`).
    pub peak_rss_mib: f64,
    /// Peak live heap during this benchmark alone, MiB (weights, optimizer state,
    /// activations); 0 where [`CountingAlloc`] is not the global allocator.
    pub peak_heap_mib: f64,
}

impl PerfReport {
    /// Figures for `batch` samples of `c` taking `s` seconds per step, where a step costs
    /// `forward_passes` forward passes' worth of FLOPs (3 for a training step).
    fn new(c: &ModelConfig, what: &str, batch: usize, s: f64, forward_passes: f64) -> Self {
        let tokens = c.video_tokens() + c.audio_tokens();
        let gflop = forward_passes * forward_flops(c, 0) * batch as f64 / 1e9;
        Self {
            model: c.name.clone(),
            what: what.into(),
            batch,
            tokens,
            ms_per_step: s * 1e3,
            tokens_per_s: (tokens * batch) as f64 / s,
            gflop_per_step: gflop,
            gflops: gflop / s,
            peak_rss_mib: peak_rss_mib(),
            peak_heap_mib: peak_heap_mib(),
        }
    }
}

/// Live and peak heap bytes counted by [`CountingAlloc`].
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A global allocator wrapper that counts live and peak heap bytes, so a benchmark can
/// report the peak of its own section: the process's peak RSS only grows, and an allocator
/// that keeps freed pages (as the `sonora` binary's does) hides a later, smaller peak. The
/// binary installs it around its allocator; two relaxed atomic adds per allocation.
pub struct CountingAlloc<A>(pub A);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator; only counters move.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { self.0.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

/// The live heap's peak since the last [`reset_peak_heap`], MiB (0 without
/// [`CountingAlloc`]).
pub fn peak_heap_mib() -> f64 {
    PEAK.load(Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Starts a new heap peak at the current live bytes (see [`CountingAlloc`]).
pub fn reset_peak_heap() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// Peak RSS of this process in MiB (0 where `/proc` is absent).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn synthetic_tokens(c: &ModelConfig, k: usize) -> ClipTokens {
    ClipTokens {
        video: (0..c.video_tokens() * c.video_patch_dim())
            .map(|i| ((i + k) as f32 * 0.01).sin())
            .collect(),
        audio: (0..c.audio_tokens() * c.audio_token_dim())
            .map(|i| ((i + k) as f32 * 0.03).sin() * 0.2)
            .collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `steps` AdamW training steps (after one warm-up) on a fixed synthetic batch;
/// `per_token` times the reference path that computes the AdaLN conditioning for every
/// token (see [`crate::model::levels`]), the anchor of the factored one;
/// `checkpointing` recomputes memory-bound activations in the backward pass (burn's
/// balanced gradient checkpointing, `train.grad_checkpointing`).
pub fn bench_train_step(
    c: &ModelConfig,
    batch: usize,
    steps: usize,
    per_token: bool,
    checkpointing: bool,
    device: &Device,
) -> Result<PerfReport, String> {
    bench_train_step_with(
        c,
        batch,
        steps,
        per_token,
        checkpointing,
        device,
        &mut |m| {
            Box::new(PlainStep {
                model: Some(m),
                optim: AdamWConfig::new().init(),
            })
        },
    )
}

/// One training step on a batch, returning its loss: what [`bench_train_step_with`]
/// times. The recipes' trainer implements it with everything a recipe's step does
/// (accumulation, clipping, EMA).
pub trait TrainStep {
    /// Runs one step on `batch` and returns the loss (read back, so the step has finished).
    fn step(&mut self, batch: &TrainBatch) -> Result<f64, String>;
}

/// Forward, backward and AdamW, nothing else: the step of [`bench_train_step`].
struct PlainStep {
    model: Option<SonoraDit>,
    optim: burn::optim::ModuleOptimizer,
}

impl TrainStep for PlainStep {
    fn step(&mut self, b: &TrainBatch) -> Result<f64, String> {
        let model = self.model.take().expect("a model between steps");
        let out = model.forward(b.input.clone(), &b.rope);
        let loss = flow_loss(out, b, &FlowConfig::default()).total;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(1e-4, model, grads));
        Ok(loss.into_scalar::<f64>())
    }
}

/// [`bench_train_step`] timing the step `make` builds around the model.
pub fn bench_train_step_with(
    c: &ModelConfig,
    batch: usize,
    steps: usize,
    per_token: bool,
    checkpointing: bool,
    device: &Device,
    make: &mut dyn FnMut(SonoraDit) -> Box<dyn TrainStep>,
) -> Result<PerfReport, String> {
    reset_peak_heap();
    let mut device = device.clone().autodiff();
    if checkpointing {
        device = device.gradient_checkpointing();
    }
    device.seed(0);
    let mut model = SonoraDit::new(c, &device);
    if per_token {
        model = model.with_per_token_conditioning();
    }
    let text = vec![2u32; c.text_max_len];
    let examples: Vec<Example> = (0..batch)
        .map(|k| Example {
            tokens: synthetic_tokens(c, k),
            refs: Vec::new(),
            text: text.clone(),
            mode: Mode::TextToAv,
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let b = make_batch(c, &FlowConfig::default(), &examples, &mut rng, &device)?;
    let mut step = make(model);
    let mut times = Vec::new();
    for i in 0..=steps {
        let t0 = Instant::now();
        step.step(&b)?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let s = median(times);
    let what = match (per_token, checkpointing) {
        (true, false) => "train-step, per-token AdaLN",
        (true, true) => "train-step, per-token, ckpt",
        (false, true) => "train-step, grad checkpointing",
        (false, false) => "train-step",
    };
    Ok(PerfReport::new(c, what, batch, s, 3.0))
}

/// Times sampling `batch` clips with `steps` Euler steps and text guidance (two model
/// passes per step).
pub fn bench_sample(
    c: &ModelConfig,
    batch: usize,
    steps: usize,
    device: &Device,
) -> Result<PerfReport, String> {
    reset_peak_heap();
    device.seed(0);
    let model = SonoraDit::new(c, device);
    let text = vec![2u32; c.text_max_len];
    let null = vec![0u32; c.text_max_len];
    let reqs: Vec<SampleRequest> = (0..batch)
        .map(|_| SampleRequest {
            text: text.clone(),
            mode: Mode::TextToAv,
            given: None,
            refs: Vec::new(),
            seed: None,
        })
        .collect();
    let sc = SamplerConfig {
        steps,
        ..SamplerConfig::default()
    };
    let mut stamps = Vec::new();
    let mut last = Instant::now();
    sample(&model, &sc, &reqs, &null, device, &mut |_, _| {
        stamps.push(last.elapsed().as_secs_f64());
        last = Instant::now();
    })
    .map_err(|e| e.to_string())?;
    // the first step includes warm-up; time the rest (all of them if there is only one)
    let warm: Vec<f64> = stamps.iter().skip(1).copied().collect();
    let s = median(if warm.is_empty() { stamps } else { warm });
    Ok(PerfReport::new(c, "sample", batch, s, 2.0))
}
