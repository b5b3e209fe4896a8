//! What an untrained model makes of held-out scenes: the floor `sonora eval validate`
//! holds the aggregate against. Ground-truth clips are fitted to the model's shape and
//! window exactly as `sonora eval data --model` fits them, and freshly initialised weights
//! of the same model config are sampled from their captions, as `sonora eval run
//! --untrained` samples them; both are scored the same way ([`score_case`]).

use burn::prelude::*;
use sonora_datasets::loader::transform::CropMode;
use sonora_datasets::synth::SynthClip;
use sonora_framework::diffusion::SamplerConfig;
use sonora_framework::generate::Generator;
use sonora_framework::model::{CaptionTokenizer, ModelConfig, SonoraDit};

use crate::EvalError;
use crate::cases::{Case, Shape, fit};
use crate::runner::{Scored, score_case};
use crate::scene::window_labels;
use crate::suite::{CaseMode, SuiteFile};

/// The untrained model to sample.
#[derive(Clone, Debug)]
pub struct UntrainedConfig {
    /// Its config (the shape it generates and its architecture).
    pub model: ModelConfig,
    /// Scenes to sample (the first N of the validation's).
    pub clips: usize,
    /// Sampler steps (an untrained model's output barely depends on them).
    pub steps: usize,
    /// Weight and noise seed.
    pub seed: u64,
    /// Where to run it.
    pub device: Device,
}

/// For each clip, the scores of its ground truth fitted to the model's shape (start
/// window) and of the untrained model's output for its caption, both as a text case.
pub fn score_untrained(
    cfg: &UntrainedConfig,
    clips: &[SynthClip],
    device: &Device,
) -> Result<Vec<(Scored, Scored)>, EvalError> {
    let m = &cfg.model;
    m.validate()
        .map_err(|e| EvalError::Invalid(format!("untrained model config: {e}")))?;
    let clips = &clips[..cfg.clips.min(clips.len())];
    let suite = SuiteFile::default();
    let cases: Vec<Case> = clips
        .iter()
        .map(|c| {
            let (truth, start) =
                fit(&c.clip, Some(Shape::of(m)), CropMode::Start).map_err(EvalError::Invalid)?;
            let scene = window_labels(&c.labels, start, truth.frames.t, truth.fps);
            Ok(Case {
                id: format!("text-{}", c.clip.metadata.clip_id),
                clip_id: c.clip.metadata.clip_id.clone(),
                mode: CaseMode::Text,
                prompt: c.clip.caption.clone(),
                truth,
                scene: Some((scene, c.clip.frames.h, c.clip.frames.w)),
                references: Vec::new(),
                boundary: None,
            })
        })
        .collect::<Result<_, EvalError>>()?;
    let tok = CaptionTokenizer::train(
        cases.iter().map(|c| c.prompt.as_str()),
        m.vocab_size,
        m.text_max_len,
    )
    .map_err(|e| EvalError::Invalid(e.to_string()))?;
    device.seed(cfg.seed);
    let generator = Generator::new(SonoraDit::new(m, device), tok, device)
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    let sc = SamplerConfig {
        steps: cfg.steps,
        seed: cfg.seed,
        ..SamplerConfig::default()
    };
    let mut out = Vec::new();
    for chunk in cases.chunks(4) {
        let reqs = chunk
            .iter()
            .map(|c| generator.text(&c.prompt))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EvalError::Invalid(e.to_string()))?;
        let sc = SamplerConfig {
            seed: sc.seed.wrapping_add(out.len() as u64),
            ..sc.clone()
        };
        let made = generator
            .generate(&sc, &reqs, &mut |_, _| true)
            .map_err(|e| EvalError::Invalid(e.to_string()))?;
        for (c, clip) in chunk.iter().zip(made) {
            let real = score_case(&c.truth, c, &suite, None)?;
            let fake = score_case(&clip, c, &suite, None)?;
            out.push((real, fake));
        }
    }
    Ok(out)
}
