//! Rectified flow matching: `x_t = (1 − t)·x0 + t·ε`, the network predicts the velocity
//! `ε − x0`; logit-normal timesteps shifted toward noise for long sequences; separate loss
//! weights for video and audio; clean (given) tokens get `t = 0` and no loss; optionally
//! more weight on the tokens that change over the clip (the moving object, the impacts).

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::conditioning::{
    Mode, clean_tokens, image_condition, image_row_tokens, push_image_row, reference_count,
};
use crate::model::levels::TimeLevels;
use crate::model::patchify::positions;
use crate::model::text::{PAD_ID, text_batch};
use crate::model::{ClipTokens, DitInput, DitOutput, ModelConfig, Rope};

/// Flow-matching settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Weight of the video loss.
    pub video_weight: f64,
    /// Weight of the audio loss.
    pub audio_weight: f64,
    /// Mean of the logit-normal timestep distribution.
    pub logit_mean: f64,
    /// Standard deviation of the logit-normal timestep distribution.
    pub logit_std: f64,
    /// Timestep shift; `None` = `sqrt(tokens / 256)` (see [`ModelConfig::timestep_shift`]).
    pub shift: Option<f64>,
    /// Probability of training an example on the null (empty) caption, so the model also
    /// learns the unconditional velocity classifier-free guidance needs.
    pub caption_dropout: f64,
    /// Extra loss weight on tokens that change over the clip (see [`motion_weights`]):
    /// `0` is the plain masked MSE; `λ > 0` weighs a token by up to `1 + λ`, so a small
    /// moving object and its impact sounds are not outweighed by the static room and the
    /// room tone. Validation losses are always unweighted.
    pub motion_weight: f64,
    /// Probability of training an example that carries references with them ignored
    /// (masked as reference guidance masks them), so the model also learns the uncast
    /// velocity that reference guidance (`ref_scale`) contrasts with. `0` never drops them.
    pub ref_dropout: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            video_weight: 1.0,
            audio_weight: 1.0,
            logit_mean: 0.0,
            logit_std: 1.0,
            shift: None,
            caption_dropout: 0.1,
            motion_weight: 0.0,
            ref_dropout: 0.0,
        }
    }
}

/// Per-token loss weights `1 + λ·d/(d + d̄)` of one modality's clean tokens `x`
/// (`[groups × steps, dim]` flattened, time-major: token `k·groups + g` is step `k` of
/// group `g`). `d` is a token's mean squared deviation from its group's time average and `d̄`
/// the mean of `d` over the clip, so the weight is ~1 where nothing changes (a static wall,
/// steady room tone) and approaches `1 + λ` where something moves or sounds. Video groups
/// are patch positions (`h × w`), audio has one group (the whole track).
pub fn motion_weights(x: &[f32], dim: usize, groups: usize, lambda: f64) -> Vec<f32> {
    let n = x.len() / dim;
    if lambda == 0.0 || groups == 0 || n < 2 * groups {
        return vec![1.0; n];
    }
    let steps = n / groups;
    // time average of each group: [groups, dim]
    let mut mean = vec![0f64; groups * dim];
    for (i, row) in x.chunks(dim).enumerate() {
        let g = i % groups;
        for (m, &v) in mean[g * dim..(g + 1) * dim].iter_mut().zip(row) {
            *m += v as f64 / steps as f64;
        }
    }
    let d: Vec<f64> = x
        .chunks(dim)
        .enumerate()
        .map(|(i, row)| {
            let g = i % groups;
            let m = &mean[g * dim..(g + 1) * dim];
            row.iter()
                .zip(m)
                .map(|(&v, &m)| (v as f64 - m).powi(2))
                .sum::<f64>()
                / dim as f64
        })
        .collect();
    let mean_d = (d.iter().sum::<f64>() / n as f64).max(1e-12);
    d.iter()
        .map(|&d| (1.0 + lambda * d / (d + mean_d)) as f32)
        .collect()
}

/// `t ↦ s·t / (1 + (s − 1)·t)`: moves timesteps toward noise when `s > 1`.
pub fn shift_t(t: f64, s: f64) -> f64 {
    s * t / (1.0 + (s - 1.0) * t)
}

/// One training example on the host.
#[derive(Clone, Debug)]
pub struct Example {
    /// Clean tokens.
    pub tokens: ClipTokens,
    /// Reference tokens `[refs × ref_tokens, ref_patch_dim]` (empty when none).
    pub refs: Vec<f32>,
    /// Caption ids (the null caption for dropped captions).
    pub text: Vec<u32>,
    /// Which tokens are given.
    pub mode: Mode,
}

/// A batch ready for the model, with its regression target and loss masks.
#[derive(Clone, Debug)]
pub struct TrainBatch {
    /// The model input.
    pub input: DitInput,
    /// RoPE for the batch's token layout.
    pub rope: Rope,
    /// Velocity target for video `[B, Nv, pv]`.
    pub target_video: Tensor<3>,
    /// Velocity target for audio `[B, Na, pa]`.
    pub target_audio: Tensor<3>,
    /// Loss weight of each video token `[B, Nv, 1]`: 0 where given, 1 (or its motion
    /// weight, see [`FlowConfig::motion_weight`]) where trained.
    pub mask_video: Tensor<3>,
    /// Loss weight of each audio token `[B, Na, 1]`, as `mask_video`.
    pub mask_audio: Tensor<3>,
    /// The sampled timestep of each example.
    pub t: Vec<f64>,
    /// The loss denominators `Σ mask · dim` of video and audio, summed on the host when the
    /// batch was built (see [`loss_denominators`]).
    pub den: [f64; 2],
}

/// Losses of one batch (scalars `[1]`).
pub struct FlowLoss {
    /// Weighted sum.
    pub total: Tensor<1>,
    /// Video MSE over trained tokens.
    pub video: Tensor<1>,
    /// Audio MSE over trained tokens.
    pub audio: Tensor<1>,
}

/// The random stream of one sample: keyed by a batch's base seed, the sample's index in
/// the global batch and a stream number (0: timestep, noise and caption dropout; 1: the
/// training task; 2: reference dropout). What a sample draws thus depends on neither the
/// batch it shares nor how the global batch is split across ranks.
pub fn sample_rng(base: u64, index: u64, stream: u64) -> ChaCha8Rng {
    let mut h = base ^ 0x9E37_79B9_7F4A_7C15;
    for p in [index, stream] {
        // SplitMix64 finaliser over each word
        let mut z = h ^ p.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// Draws a timestep per example (logit-normal, shifted), noises the non-given tokens and
/// builds the batch. Every example must carry the same number of reference images. The
/// draws come from one [`sample_rng`] per example, keyed by a base seed taken from `rng`.
pub fn make_batch(
    cfg: &ModelConfig,
    fc: &FlowConfig,
    examples: &[Example],
    rng: &mut impl Rng,
    device: &Device,
) -> Result<TrainBatch, String> {
    let keys: Vec<u64> = (0..examples.len() as u64).collect();
    make_batch_at(cfg, fc, examples, rng.random::<u64>(), &keys, device)
}

/// [`make_batch`] for examples at global indices `keys` (one per example) of a batch whose
/// draws are keyed by `base`: data-parallel ranks each build their part of one batch, and
/// an example keeps its index when others of its batch are filtered out.
pub fn make_batch_at(
    cfg: &ModelConfig,
    fc: &FlowConfig,
    examples: &[Example],
    base: u64,
    keys: &[u64],
    device: &Device,
) -> Result<TrainBatch, String> {
    let b = examples.len();
    if keys.len() != b {
        return Err(format!("{b} examples but {} sample keys", keys.len()));
    }
    let mut rngs: Vec<ChaCha8Rng> = keys.iter().map(|&k| sample_rng(base, k, 0)).collect();
    if b == 0 {
        return Err("empty batch".into());
    }
    let (nv, na, pv, pa) = (
        cfg.video_tokens(),
        cfg.audio_tokens(),
        cfg.video_patch_dim(),
        cfg.audio_token_dim(),
    );
    let lens: Vec<usize> = examples.iter().map(|e| e.refs.len()).collect();
    let refs = reference_count(cfg, &lens, "example")?;
    let nr = refs * cfg.ref_tokens();
    let n = nv + na + nr;
    let shift = fc.shift.unwrap_or_else(|| cfg.shift_for(n));
    // in-context image tokens (`image_cond = "context"`): a row for every example when one
    // gives an image; the others' are zeros no token attends to
    let ni = image_row_tokens(cfg, examples.iter().map(|e| &e.mode));
    // reference dropout, from its own stream so runs without it draw as they always did
    let drop_refs: Vec<bool> = keys
        .iter()
        .map(|&k| {
            nr > 0
                && fc.ref_dropout > 0.0
                && sample_rng(base, k, 2).random::<f64>() < fc.ref_dropout
        })
        .collect();
    let masked = ni > 0 || drop_refs.contains(&true);
    let (mut image, mut ignore) = (Vec::with_capacity(b * ni * pv), Vec::new());
    let (mut xv, mut xa, mut tv, mut ta) = (
        Vec::with_capacity(b * nv * pv),
        Vec::with_capacity(b * na * pa),
        Vec::new(),
        Vec::new(),
    );
    let (mut mv, mut ma, mut tt, mut ts) = (
        Vec::new(),
        Vec::new(),
        Vec::with_capacity(b * n),
        Vec::new(),
    );
    let (_, gh, gw) = cfg.video_grid();
    for ((e, rng), &drop) in examples.iter().zip(rngs.iter_mut()).zip(&drop_refs) {
        let (cv, ca) = clean_tokens(cfg, &e.mode)?;
        // weights from the clip as it is, before a given frame is held over its row
        let wv = motion_weights(&e.tokens.video, pv, gh * gw, fc.motion_weight);
        let wa = motion_weights(&e.tokens.audio, pa, 1, fc.motion_weight);
        let mut tok = e.tokens.clone();
        let held = image_condition(cfg, &e.mode, &mut tok);
        let u: f64 = StandardNormal.sample(&mut *rng);
        let t = shift_t(
            1.0 / (1.0 + (-(fc.logit_mean + fc.logit_std * u)).exp()),
            shift,
        );
        ts.push(t);
        let mut noise = |x0: &[f32],
                         dim: usize,
                         clean: &[bool],
                         weight: &[f32],
                         xs: &mut Vec<f32>,
                         target: &mut Vec<f32>,
                         mask: &mut Vec<f32>| {
            for (i, row) in x0.chunks(dim).enumerate() {
                let given = clean[i];
                mask.push(if given { 0.0 } else { weight[i] });
                tt.push(if given { 0.0 } else { t as f32 });
                for &x in row {
                    let eps: f32 = StandardNormal.sample(&mut *rng);
                    xs.push(if given {
                        x
                    } else {
                        ((1.0 - t) as f32) * x + (t as f32) * eps
                    });
                    target.push(eps - x);
                }
            }
        };
        noise(&tok.video, pv, &cv, &wv, &mut xv, &mut tv, &mut mv);
        noise(&tok.audio, pa, &ca, &wa, &mut xa, &mut ta, &mut ma);
        tt.extend(std::iter::repeat_n(0.0, nr + ni));
        if masked {
            ignore.extend(std::iter::repeat_n(false, nv + na));
            ignore.extend(std::iter::repeat_n(drop, nr));
            if ni > 0 {
                push_image_row(cfg, held.as_deref(), &mut image, &mut ignore);
            }
        }
    }
    let t3 = |v: Vec<f32>, a: usize, c: usize| {
        Tensor::<3>::from_data(TensorData::new(v, [b, a, c]), device)
    };
    // caption dropout: the null caption is all padding
    let rows: Vec<Vec<u32>> = examples
        .iter()
        .zip(rngs.iter_mut())
        .map(|(e, rng)| {
            if rng.random::<f64>() < fc.caption_dropout {
                vec![PAD_ID; e.text.len()]
            } else {
                e.text.clone()
            }
        })
        .collect();
    let (text_ids, text_pad) = text_batch(&rows, device);
    let den = [
        mv.iter().map(|&w| w as f64).sum::<f64>() * pv as f64,
        ma.iter().map(|&w| w as f64).sum::<f64>() * pa as f64,
    ];
    let levels = TimeLevels::from_host(&tt, b, n + ni, device);
    let ref_tensor = (refs > 0).then(|| {
        t3(
            examples
                .iter()
                .flat_map(|e| e.refs.iter().copied())
                .collect(),
            nr,
            cfg.ref_patch_dim(),
        )
    });
    Ok(TrainBatch {
        input: DitInput {
            video: t3(xv, nv, pv),
            audio: t3(xa, na, pa),
            refs: ref_tensor,
            image: (ni > 0).then(|| t3(image, ni, pv)),
            t: Tensor::from_data(TensorData::new(tt, [b, n + ni]), device),
            text_ids,
            text_pad,
            token_mask: ignore
                .contains(&true)
                .then(|| Tensor::from_data(TensorData::new(ignore, [b, n + ni]), device)),
            levels,
        },
        rope: Rope::new(
            &positions(cfg, refs, ni > 0),
            cfg.head_dim(),
            cfg.d_model,
            device,
        ),
        target_video: t3(tv, nv, pv),
        target_audio: t3(ta, na, pa),
        mask_video: t3(mv, nv, 1),
        mask_audio: t3(ma, na, 1),
        t: ts,
        den,
    })
}

/// The denominators of [`flow_loss`]: Σ mask × token width over the batch's video and
/// audio targets (at least 1), as summed on the host when the batch was built
/// ([`TrainBatch::den`]; no device read). In data-parallel training these are summed over
/// every rank first, so each rank's loss is its share of the loss of the whole global batch
/// and the summed gradients are exactly that loss's gradient.
pub fn loss_denominators(batch: &TrainBatch) -> [f64; 2] {
    batch.den
}

/// The flow-matching loss of a batch: the mask-weighted mean squared error of the
/// predicted velocity, video and audio weighted by `fc`.
pub fn flow_loss(out: DitOutput, batch: &TrainBatch, fc: &FlowConfig) -> FlowLoss {
    flow_loss_over(out, batch, fc, loss_denominators(batch))
}

/// [`flow_loss`] with the denominators given (`[video, audio]`, e.g. summed over ranks).
pub fn flow_loss_over(
    out: DitOutput,
    batch: &TrainBatch,
    fc: &FlowConfig,
    den: [f64; 2],
) -> FlowLoss {
    let sse = |pred: Tensor<3>, target: Tensor<3>, mask: Tensor<3>, den: f64| {
        ((pred - target).powi_scalar(2) * mask).sum() / den.max(1.0)
    };
    let video = sse(
        out.video,
        batch.target_video.clone(),
        batch.mask_video.clone(),
        den[0],
    );
    let audio = sse(
        out.audio,
        batch.target_audio.clone(),
        batch.mask_audio.clone(),
        den[1],
    );
    let total = video.clone() * fc.video_weight + audio.clone() * fc.audio_weight;
    FlowLoss {
        total,
        video,
        audio,
    }
}

#[cfg(test)]
mod tests {
    use super::motion_weights;

    /// 4 steps × 3 groups of 2-value tokens, time-major; group 1 changes at step 2.
    fn clip() -> Vec<f32> {
        let mut x = Vec::new();
        for k in 0..4 {
            for g in 0..3 {
                let v = if g == 1 && k == 2 {
                    0.9
                } else {
                    0.1 * g as f32
                };
                x.extend([v, -v]);
            }
        }
        x
    }

    #[test]
    fn motion_weights_single_out_what_changes() {
        let w = motion_weights(&clip(), 2, 3, 8.0);
        assert_eq!(w.len(), 12);
        // groups 0 and 2 never change: weight 1
        for k in 0..4 {
            assert_eq!(w[k * 3], 1.0);
            assert_eq!(w[k * 3 + 2], 1.0);
        }
        // group 1 deviates most at step 2 (the change), less at the others (their average
        // moved), and every weight stays within [1, 1 + λ]
        let g1: Vec<f32> = (0..4).map(|k| w[k * 3 + 1]).collect();
        assert!(g1[2] > g1[0] && g1[0] > 1.0, "{g1:?}");
        assert!(g1.iter().all(|&v| v <= 9.0), "{g1:?}");
        assert!(g1[2] > 8.0, "the one change weighs close to 1 + λ: {g1:?}");
    }

    #[test]
    fn motion_weights_are_plain_without_lambda_or_motion() {
        assert!(motion_weights(&clip(), 2, 3, 0.0).iter().all(|&v| v == 1.0));
        let still = vec![0.3f32; 24];
        assert!(motion_weights(&still, 2, 3, 8.0).iter().all(|&v| v == 1.0));
    }
}
