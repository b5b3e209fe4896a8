//! What an untrained model makes of held-out scenes: the floor `sonora eval validate`
//! holds the aggregate against. Ground-truth clips are fitted to the model's shape and
//! window exactly as `sonora eval data --model` fits them, and freshly initialised weights
//! of the same model config are sampled from their captions, as `sonora eval run
//! --untrained` samples them; both are scored the same way ([`score_case`]).

use burn::prelude::*;
use sonora_datasets::loader::transform::CropMode;
use sonora_datasets::synth::SynthClip;
use sonora_framework::diffusion::{Mode, SampleRequest, SamplerConfig, sample};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, ModelConfig, PatchCodec, SonoraDit};
use sonora_framework::{Clip, ClipMetadata};

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
    let model = SonoraDit::new(m, device);
    let codec = PatchCodec::new(m);
    let null = tok
        .encode("")
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
            .map(|c| {
                Ok(SampleRequest {
                    text: tok
                        .encode(&c.prompt)
                        .map_err(|e| EvalError::Invalid(e.to_string()))?,
                    mode: Mode::TextToAv,
                    given: None,
                    refs: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        let sc = SamplerConfig {
            seed: sc.seed.wrapping_add(out.len() as u64),
            ..sc.clone()
        };
        let tokens = sample(&model, &sc, &reqs, &null, device, &mut |_, _| {})
            .map_err(|e| EvalError::Invalid(e.to_string()))?;
        for (c, t) in chunk.iter().zip(tokens) {
            let (frames, audio) = codec.decode(&t);
            let made = Clip {
                frames,
                audio,
                fps: m.fps,
                caption: c.prompt.clone(),
                metadata: ClipMetadata {
                    clip_id: c.id.clone(),
                    ..ClipMetadata::default()
                },
            };
            let real = score_case(&c.truth, c, &suite, None)?;
            let fake = score_case(&made, c, &suite, None)?;
            out.push((real, fake));
        }
    }
    Ok(out)
}
