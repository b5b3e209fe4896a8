//! Samplers for the flow: Euler and Heun over a shifted time grid, classifier-free
//! guidance with separate text and reference scales (and a text scale of its own for the
//! audio tokens), seeded per request, batched, with a per-step progress callback.

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::conditioning::{
    Mode, clean_tokens, image_condition, image_row_tokens, push_image_row, reference_count,
};
use super::flow::shift_t;
use crate::model::levels::TimeLevels;
use crate::model::patchify::positions;
use crate::model::text::text_batch;
use crate::model::{ClipTokens, DitInput, Rope, SonoraDit};

/// The integration rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum SamplerKind {
    /// First order, one model call per step.
    Euler,
    /// Second order (Heun's predictor–corrector), two calls per step (Euler on the last).
    Heun,
}

/// The most sampler steps a request may ask for.
pub const MAX_STEPS: usize = 10_000;

/// The largest guidance scale a request may ask for.
pub const MAX_SCALE: f64 = 100.0;

/// Sampler settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Integration rule.
    pub kind: SamplerKind,
    /// Steps from noise to data.
    pub steps: usize,
    /// Time-grid shift; `None` = the model's shift for its token count.
    pub shift: Option<f64>,
    /// Text guidance scale (1 = no guidance).
    pub text_scale: f64,
    /// Text guidance scale of the audio tokens (1 = none). Guidance on the log-magnitude
    /// spectrogram tokens multiplies magnitudes, so the scale that sharpens the video turns
    /// the sound into loud broadband noise (at 3 the quickstart model puts 28% of its
    /// 62.5 ms frames above −20 dBFS, where the data has none); 1 keeps it in range.
    pub audio_scale: f64,
    /// Reference (character) guidance scale (1 = no guidance).
    pub ref_scale: f64,
    /// Seed; request `i` of a batch draws its noise from `seed + i`.
    pub seed: u64,
    /// After the joint pass, generate the sound again with the generated video given (the
    /// video → audio mode, [`Mode::VideoToAudio`]), for requests whose video and audio are
    /// both generated (text, image, character and remix; not extension, whose given prefix
    /// sound the second pass would not see). In the joint pass the frames are still noise
    /// while the sound is decided, so impacts land where the video does not put contacts;
    /// given the finished frames the sound can follow them. Costs a second run of `steps`.
    pub audio_from_video: bool,
}

impl SamplerConfig {
    /// Checks what the types cannot: at least one step and finite guidance scales. Errors
    /// start with the field's name, so a config section can prefix its own.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if self.steps > MAX_STEPS {
            return Err(format!(
                "steps must be at most {MAX_STEPS} (flow-matching samplers converge in tens of steps), got {}",
                self.steps
            ));
        }
        for (name, s) in [
            ("text_scale", self.text_scale),
            ("audio_scale", self.audio_scale),
            ("ref_scale", self.ref_scale),
        ] {
            if !s.is_finite() {
                return Err(format!("{name} must be a finite number, got {s}"));
            }
            if !(0.0..=MAX_SCALE).contains(&s) {
                return Err(format!(
                    "{name} must be in [0, {MAX_SCALE}] (0 = unconditional, 1 = no guidance), got {s}"
                ));
            }
        }
        if let Some(shift) = self.shift
            && !(shift.is_finite() && shift > 0.0)
        {
            return Err(format!("shift must be a positive number, got {shift}"));
        }
        Ok(())
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            kind: SamplerKind::Euler,
            steps: 24,
            shift: None,
            text_scale: 3.0,
            audio_scale: 1.0,
            ref_scale: 1.5,
            seed: 0,
            audio_from_video: false,
        }
    }
}

/// One clip to generate.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    /// Caption ids.
    pub text: Vec<u32>,
    /// Mode (which tokens are given).
    pub mode: Mode,
    /// The given clip for image-to-video, extension, remix and one-modality modes.
    pub given: Option<ClipTokens>,
    /// Reference tokens (`[refs × ref_tokens, ref_patch_dim]`), empty when none.
    pub refs: Vec<f32>,
    /// This request's own noise seed, so its clip does not depend on the batch it shares
    /// (a server's jobs); `None` draws from the batch's stream `seed + i`.
    pub seed: Option<u64>,
}

/// Why sampling could not run.
#[derive(Debug, thiserror::Error)]
#[error("sampling: {0}")]
pub struct SampleError(pub String);

/// Offset of the sound pass's noise seeds from the joint pass's, so the two draw apart.
pub const SOUND_PASS_SEED: u64 = 0x50_0d;

/// Whether [`SamplerConfig::audio_from_video`] regenerates this mode's sound.
fn sound_follows_video(mode: &Mode) -> bool {
    matches!(
        mode,
        Mode::TextToAv | Mode::ImageToVideo | Mode::Character | Mode::Remix { .. }
    )
}

/// Generates one clip's tokens per request. `null_text` is the empty caption's ids;
/// `progress(step, total)` is called after every step (`total` counts the second, sound
/// pass when [`SamplerConfig::audio_from_video`] runs one).
pub fn sample(
    model: &SonoraDit,
    sc: &SamplerConfig,
    reqs: &[SampleRequest],
    null_text: &[u32],
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ClipTokens>, SampleError> {
    sample_cancellable(model, sc, reqs, null_text, device, &mut |k, n| {
        progress(k, n);
        true
    })
}

/// The message of a [`SampleError`] for a run its progress callback stopped.
pub const CANCELLED: &str = "cancelled";

impl SampleError {
    /// Whether the progress callback stopped the run.
    pub fn is_cancelled(&self) -> bool {
        self.0 == CANCELLED
    }
}

/// [`sample`] whose `progress(step, total)` may stop the run by returning `false`: the
/// sampler returns [`CANCELLED`] after the step it has finished. The state stays on the
/// device until the end, so on an asynchronous device (CUDA) a step is reported when it is
/// queued, which may be before the device has run it.
pub fn sample_cancellable(
    model: &SonoraDit,
    sc: &SamplerConfig,
    reqs: &[SampleRequest],
    null_text: &[u32],
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<ClipTokens>, SampleError> {
    let redo: Vec<usize> = (0..reqs.len())
        .filter(|&i| sc.audio_from_video && sound_follows_video(&reqs[i].mode))
        .collect();
    if redo.is_empty() {
        return sample_pass(model, sc, reqs, null_text, None, device, progress);
    }
    let total = 2 * sc.steps;
    let mut out = sample_pass(model, sc, reqs, null_text, None, device, &mut |k, _| {
        progress(k, total)
    })?;
    // second pass: the generated video given, the sound from noise of its own stream
    let given: Vec<SampleRequest> = redo
        .iter()
        .map(|&i| SampleRequest {
            text: reqs[i].text.clone(),
            mode: Mode::VideoToAudio,
            given: Some(out[i].clone()),
            refs: reqs[i].refs.clone(),
            seed: reqs[i].seed.map(|s| s.wrapping_add(SOUND_PASS_SEED)),
        })
        .collect();
    let pass = SamplerConfig {
        seed: sc.seed.wrapping_add(SOUND_PASS_SEED),
        // every video token is given, so video guidance would only cost a model call
        text_scale: 1.0,
        audio_from_video: false,
        ..sc.clone()
    };
    let sound = sample_pass(
        model,
        &pass,
        &given,
        null_text,
        None,
        device,
        &mut |k, _| progress(sc.steps + k, total),
    )?;
    for (&i, t) in redo.iter().zip(sound) {
        out[i].audio = t.audio;
    }
    Ok(out)
}

/// One pass of the sampler (no second sound pass) from a given start state instead of
/// drawn noise: `start[i]` is request `i`'s noisy tokens at the first grid time (its given
/// tokens are reset to the given values after every step, as in [`sample`]). What the
/// PyTorch twin's parity fixture drives (`framework/tests/parity.rs`), since the twin cannot
/// draw sonora's noise.
pub fn sample_from_start(
    model: &SonoraDit,
    sc: &SamplerConfig,
    reqs: &[SampleRequest],
    null_text: &[u32],
    start: &[ClipTokens],
    device: &Device,
) -> Result<Vec<ClipTokens>, SampleError> {
    if start.len() != reqs.len() {
        return Err(SampleError(format!(
            "{} start states for {} requests",
            start.len(),
            reqs.len()
        )));
    }
    sample_pass(
        model,
        sc,
        reqs,
        null_text,
        Some(start),
        device,
        &mut |_, _| true,
    )
}

/// One run of the sampler from noise (or the remix start, or `start` when given) to data.
fn sample_pass(
    model: &SonoraDit,
    sc: &SamplerConfig,
    reqs: &[SampleRequest],
    null_text: &[u32],
    start_state: Option<&[ClipTokens]>,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<ClipTokens>, SampleError> {
    let cfg = model.config().clone();
    let err = |s: String| SampleError(s);
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    sc.validate().map_err(err)?;
    let (nv, na, pv, pa) = (
        cfg.video_tokens(),
        cfg.audio_tokens(),
        cfg.video_patch_dim(),
        cfg.audio_token_dim(),
    );
    let lens: Vec<usize> = reqs.iter().map(|r| r.refs.len()).collect();
    let refs = reference_count(&cfg, &lens, "request").map_err(err)?;
    let nr = refs * cfg.ref_tokens();
    let b = reqs.len();
    let shift = sc.shift.unwrap_or_else(|| cfg.shift_for(nv + na + nr));

    // the start, built on the host: x (video, audio) per request, clean flags and given
    // values (moved to the device once, below)
    let mut xs: Vec<ClipTokens> = Vec::with_capacity(b);
    let mut clean: Vec<(Vec<bool>, Vec<bool>)> = Vec::with_capacity(b);
    let mut given: Vec<ClipTokens> = Vec::with_capacity(b);
    // in-context image tokens per request (`image_cond = "context"`), see `make_batch`
    let mut images: Vec<Option<Vec<f32>>> = Vec::with_capacity(b);
    let ni = image_row_tokens(&cfg, reqs.iter().map(|r| &r.mode));
    let mut start = 1.0f64;
    for (i, r) in reqs.iter().enumerate() {
        let flags = clean_tokens(&cfg, &r.mode).map_err(err)?;
        let needs_given = !matches!(r.mode, Mode::TextToAv | Mode::Character);
        let mut g = match (&r.given, needs_given) {
            (Some(g), _) => g.clone(),
            (None, true) => {
                return Err(err(format!(
                    "request {i}: mode {:?} needs a given clip",
                    r.mode
                )));
            }
            (None, false) => ClipTokens {
                video: vec![0.0; nv * pv],
                audio: vec![0.0; na * pa],
            },
        };
        if g.video.len() != nv * pv || g.audio.len() != na * pa {
            return Err(err(format!(
                "request {i}: the given clip's tokens do not match the model"
            )));
        }
        images.push(image_condition(&cfg, &r.mode, &mut g));
        let s = if let Mode::Remix { strength } = r.mode {
            strength
        } else {
            1.0
        };
        if i > 0 && s != start {
            return Err(err(
                "every request of a batch must use the same remix strength".into(),
            ));
        }
        start = s;
        let mut rng = ChaCha8Rng::seed_from_u64(r.seed.unwrap_or(sc.seed.wrapping_add(i as u64)));
        let mut noised = |x0: &[f32], flags: &[bool], dim: usize| -> Vec<f32> {
            x0.iter()
                .enumerate()
                .map(|(j, &x)| {
                    let eps: f32 = StandardNormal.sample(&mut rng);
                    if flags[j / dim] {
                        x
                    } else {
                        (1.0 - s as f32) * x + s as f32 * eps
                    }
                })
                .collect()
        };
        xs.push(match start_state {
            Some(st) if st[i].video.len() != nv * pv || st[i].audio.len() != na * pa => {
                return Err(err(format!(
                    "request {i}: the start state's tokens do not match the model"
                )));
            }
            Some(st) => st[i].clone(),
            None => ClipTokens {
                video: noised(&g.video, &flags.0, pv),
                audio: noised(&g.audio, &flags.1, pa),
            },
        });
        clean.push(flags);
        given.push(g);
    }

    let rope = Rope::new(
        &positions(&cfg, refs, ni > 0),
        cfg.head_dim(),
        cfg.d_model,
        device,
    );
    let with_refs = nr > 0 && (sc.ref_scale - 1.0).abs() > 1e-9;
    let guided_text = (sc.text_scale - 1.0).abs() > 1e-9 || (sc.audio_scale - 1.0).abs() > 1e-9;
    // passes: (text?, refs?) — the conditional pass first
    let mut passes = vec![(true, true)];
    if guided_text || with_refs {
        passes.push((false, true));
    }
    if with_refs {
        passes.push((false, false));
    }
    let p = passes.len();
    let bb = b * p;
    let n = nv + na + nr + ni;

    // what every model call shares, built once: captions, references, image rows, masks
    let (mut rows, mut rf, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    let mut img = Vec::with_capacity(bb * ni * pv);
    for &(text, use_refs) in &passes {
        for (i, r) in reqs.iter().enumerate() {
            rows.push(if text {
                r.text.clone()
            } else {
                null_text.to_vec()
            });
            rf.extend_from_slice(&r.refs);
            mask.extend((0..nv + na + nr).map(|j| !use_refs && j >= nv + na));
            // the same image in every pass: guidance is on the text and references
            if ni > 0 {
                push_image_row(&cfg, images[i].as_deref(), &mut img, &mut mask);
            }
        }
    }
    let (text_ids, text_pad) = text_batch(&rows, device);
    let refs_t = (nr > 0).then(|| {
        Tensor::<3>::from_data(TensorData::new(rf, [bb, nr, cfg.ref_patch_dim()]), device)
    });
    let image_t =
        (ni > 0).then(|| Tensor::<3>::from_data(TensorData::new(img, [bb, ni, pv]), device));
    let token_mask = (nr > 0 || mask.contains(&true))
        .then(|| Tensor::<2, Bool>::from_data(TensorData::new(mask, [bb, n]), device));

    // the state on the device: x `[B, N·, D·]`, and the given tokens with their masks
    let t3 = |v: Vec<f32>, a: usize, c: usize| {
        Tensor::<3>::from_data(TensorData::new(v, [b, a, c]), device)
    };
    let flags3 = |f: Vec<bool>, a: usize, c: usize| {
        Tensor::<3, Bool>::from_data(TensorData::new(f, [b, a, 1]), device).expand([b, a, c])
    };
    let flat = |f: &dyn Fn(&ClipTokens) -> &Vec<f32>, xs: &[ClipTokens]| -> Vec<f32> {
        xs.iter().flat_map(|x| f(x).iter().copied()).collect()
    };
    let mut xv = t3(flat(&|x| &x.video, &xs), nv, pv);
    let mut xa = t3(flat(&|x| &x.audio, &xs), na, pa);
    let given_v = t3(flat(&|x| &x.video, &given), nv, pv);
    let given_a = t3(flat(&|x| &x.audio, &given), na, pa);
    let clean_v = flags3(clean.iter().flat_map(|c| c.0.clone()).collect(), nv, pv);
    let clean_a = flags3(clean.iter().flat_map(|c| c.1.clone()).collect(), na, pa);

    // the guided velocity at time t: the passes in one batch, combined on the device
    let velocity = |xv: &Tensor<3>, xa: &Tensor<3>, t: f64| -> (Tensor<3>, Tensor<3>) {
        // timesteps built on the host (0 for given tokens), factored there too
        let mut tt = Vec::with_capacity(bb * n);
        for _ in 0..p {
            for c in &clean {
                tt.extend(
                    c.0.iter()
                        .chain(&c.1)
                        .map(|&c| if c { 0.0 } else { t as f32 }),
                );
                tt.extend(std::iter::repeat_n(0.0f32, nr + ni));
            }
        }
        let input = DitInput {
            video: Tensor::cat(vec![xv.clone(); p], 0),
            audio: Tensor::cat(vec![xa.clone(); p], 0),
            refs: refs_t.clone(),
            image: image_t.clone(),
            levels: TimeLevels::from_host(&tt, bb, n, device),
            t: Tensor::from_data(TensorData::new(tt, [bb, n]), device),
            text_ids: text_ids.clone(),
            text_pad: text_pad.clone(),
            token_mask: token_mask.clone(),
        };
        let out = model.forward(input, &rope);
        // v = v(∅,∅) + s_ref·(v(∅,ref) − v(∅,∅)) + s_text·(v(text,ref) − v(∅,ref)), with s_text
        // the audio scale for the audio tokens; pass k is rows k·B..(k+1)·B
        let combine = |o: Tensor<3>, text_scale: f64| -> Tensor<3> {
            let chunk = |k: usize| o.clone().narrow(0, k * b, b);
            if p == 1 {
                return o;
            }
            let (cond, no_text) = (chunk(0), chunk(1));
            let base = if p == 3 {
                let none = chunk(2);
                none.clone() + (no_text.clone() - none).mul_scalar(sc.ref_scale)
            } else {
                no_text.clone()
            };
            base + (cond - no_text).mul_scalar(text_scale)
        };
        (
            combine(out.video, sc.text_scale),
            combine(out.audio, sc.audio_scale),
        )
    };
    // x + dt·v on generated tokens, the given values on given ones
    let step = |xv: Tensor<3>, xa: Tensor<3>, v: &(Tensor<3>, Tensor<3>), dt: f64| {
        (
            (xv + v.0.clone().mul_scalar(dt)).mask_where(clean_v.clone(), given_v.clone()),
            (xa + v.1.clone().mul_scalar(dt)).mask_where(clean_a.clone(), given_a.clone()),
        )
    };
    // time grid: start·shift(1 − k/steps), k = 0..=steps
    let grid: Vec<f64> = (0..=sc.steps)
        .map(|k| start * shift_t(1.0 - k as f64 / sc.steps as f64, shift))
        .collect();
    for k in 0..sc.steps {
        let (t0, t1) = (grid[k], grid[k + 1]);
        let v0 = velocity(&xv, &xa, t0);
        let v = if sc.kind == SamplerKind::Heun && k + 1 < sc.steps {
            let (pv_, pa_) = step(xv.clone(), xa.clone(), &v0, t1 - t0);
            let v1 = velocity(&pv_, &pa_, t1);
            ((v0.0 + v1.0).mul_scalar(0.5), (v0.1 + v1.1).mul_scalar(0.5))
        } else {
            v0
        };
        (xv, xa) = step(xv, xa, &v, t1 - t0);
        if !progress(k + 1, sc.steps) {
            return Err(SampleError(CANCELLED.into()));
        }
    }
    // the one read back: [B, N·, D·] → one clip's tokens per request
    let host = |x: Tensor<3>| -> Result<Vec<f32>, SampleError> {
        x.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| SampleError(format!("reading the samples: {e:?}")))
    };
    let (ov, oa) = (host(xv)?, host(xa)?);
    Ok(ov
        .chunks(nv * pv)
        .zip(oa.chunks(na * pa))
        .map(|(v, a)| ClipTokens {
            video: v.to_vec(),
            audio: a.to_vec(),
        })
        .collect())
}

crate::config_enum!(SamplerKind {
    "euler" => SamplerKind::Euler,
    "heun" => SamplerKind::Heun,
});
