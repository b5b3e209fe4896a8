//! Samples from the recipe's fixed prompts and seed, written as MP4 under
//! `samples/step-N/prompt-K.mp4` and as TensorBoard images and audio; with `sample.given`,
//! also the first validation clips continued from their first frame (`image-K.mp4`) and
//! given a sound track for their video (`v2a-K.mp4`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use sonora_framework::diffusion::{Example, Mode, SampleRequest, sample};
use sonora_framework::media::{Mp4Options, encode_mp4};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, ModelConfig, PatchCodec, SonoraDit};
use sonora_framework::tracking::EventWriter;
use sonora_framework::{Clip, ClipMetadata};

use crate::config::Recipe;
use crate::train::{TrainError, err};

/// Samples the recipe's prompts to `samples/step-N/prompt-K.mp4`, and the first
/// `sample.given` clips of `val` as `image-K.mp4` and `v2a-K.mp4` (and TensorBoard).
#[allow(clippy::too_many_arguments)]
pub fn write_samples(
    recipe: &Recipe,
    model: &SonoraDit,
    tok: &CaptionTokenizer,
    mcfg: &ModelConfig,
    val: &[Vec<Example>],
    run_dir: &Path,
    step: u64,
    device: &Device,
    mut tb: Option<&mut EventWriter>,
) -> Result<Vec<PathBuf>, TrainError> {
    let s = &recipe.sample;
    let given: Vec<&Example> = val.iter().flatten().take(s.given).collect();
    if s.prompts.is_empty() && given.is_empty() {
        return Ok(Vec::new());
    }
    let model = model.valid();
    let device = device.clone().without_autodiff();
    // one request per clip, with its (file name, caption) at the same index
    let mut reqs: Vec<SampleRequest> = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for (k, p) in s.prompts.iter().enumerate() {
        let prompt = tok
            .encode_prompt(p)
            .map_err(|e| err(format!("sample.prompts[{k}]: {e}")))?;
        if let Some(d) = &prompt.dropped {
            tracing::warn!(
                "sample.prompts[{k}]: {} tokens, the model reads the first {}; not read: {d:?}",
                prompt.tokens,
                tok.max_len()
            );
        }
        reqs.push(SampleRequest {
            text: prompt.ids,
            mode: Mode::TextToAv,
            given: None,
            refs: Vec::new(),
        });
        names.push((format!("prompt-{k}"), p.clone()));
    }
    for (name, mode) in [("image", Mode::ImageToVideo), ("v2a", Mode::VideoToAudio)] {
        for (k, e) in given.iter().enumerate() {
            reqs.push(SampleRequest {
                text: e.text.clone(),
                mode: mode.clone(),
                given: Some(e.tokens.clone()),
                refs: Vec::new(),
            });
            names.push((
                format!("{name}-{k}"),
                format!("validation clip {k} ({name})"),
            ));
        }
    }
    let sc = s.sampler_config();
    let out = sample(
        &model,
        &sc,
        &reqs,
        &tok.encode("").map_err(err)?,
        &device,
        &mut |_, _| {},
    )
    .map_err(err)?;
    let dir = run_dir.join("samples").join(format!("step-{step:06}"));
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let codec = PatchCodec::new(mcfg);
    let mut paths = Vec::new();
    for (tokens, (name, caption)) in out.iter().zip(&names) {
        let (frames, audio) = codec.decode(tokens);
        let clip = Clip {
            frames,
            audio,
            fps: mcfg.fps,
            caption: caption.clone(),
            metadata: ClipMetadata::default(),
        };
        let mp4 = encode_mp4(&clip, &Mp4Options::default()).map_err(err)?;
        let p = dir.join(format!("{name}.mp4"));
        sonora_framework::fsutil::write_atomic(&p, &mp4).map_err(err)?;
        if let Some(tb) = tb.as_deref_mut() {
            let mid = clip.frames.t / 2;
            tb.image(
                &format!("samples/{name}"),
                step,
                clip.frames.frame(mid),
                clip.frames.h,
                clip.frames.w,
            )
            .map_err(err)?;
            tb.audio(&format!("samples/{name}"), step, &clip.audio)
                .map_err(err)?;
        }
        paths.push(p);
    }
    Ok(paths)
}
