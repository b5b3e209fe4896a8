//! Samples from the recipe's fixed prompts and seed, written as MP4 under
//! `samples/step-N/prompt-K.mp4` and as TensorBoard images and audio; with `sample.given`,
//! also the first validation clips continued from their first frame (`image-K.mp4`) and
//! given a sound track for their video (`v2a-K.mp4`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use sonora_framework::diffusion::{Example, Mode};
use sonora_framework::generate::{GenRequest, Generator, batches};
use sonora_framework::media::{Mp4Options, encode_mp4};
use sonora_framework::model::{CaptionTokenizer, SonoraDit};
use sonora_framework::tracking::EventWriter;

use crate::config::Recipe;
use crate::train::{TrainError, err};

/// Samples the recipe's prompts to `samples/step-N/prompt-K.mp4`, and the first
/// `sample.given` clips of `val` as `image-K.mp4` and `v2a-K.mp4` (and TensorBoard).
#[allow(clippy::too_many_arguments)]
pub fn write_samples(
    recipe: &Recipe,
    model: &SonoraDit,
    tok: &CaptionTokenizer,
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
    let device = device.clone().without_autodiff();
    let generator = Generator::new(model.valid(), tok.clone(), &device).map_err(err)?;
    // one request per clip, with its file name at the same index
    let mut reqs: Vec<GenRequest> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (k, p) in s.prompts.iter().enumerate() {
        let r = generator
            .text(p)
            .map_err(|e| err(format!("sample.prompts[{k}]: {e}")))?;
        if let Some(d) = &r.dropped {
            tracing::warn!(
                "sample.prompts[{k}]: the model reads its first {} tokens; not read: {d:?}",
                tok.max_len()
            );
        }
        reqs.push(r);
        names.push(format!("prompt-{k}"));
    }
    for (name, mode) in [("image", Mode::ImageToVideo), ("v2a", Mode::VideoToAudio)] {
        for (k, e) in given.iter().enumerate() {
            reqs.push(generator.from_tokens(
                &format!("validation clip {k} ({name})"),
                e.text.clone(),
                mode.clone(),
                Some(e.tokens.clone()),
            ));
            names.push(format!("{name}-{k}"));
        }
    }
    // one sampler call for all of them (request k draws its noise from seed + k)
    let sc = s.sampler.clone();
    let mut clips = Vec::new();
    for range in batches(&reqs, reqs.len()) {
        clips.extend(
            generator
                .generate(&sc, &reqs[range], &mut |_, _| true)
                .map_err(err)?,
        );
    }
    let dir = run_dir.join("samples").join(format!("step-{step:06}"));
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for (clip, name) in clips.iter().zip(&names) {
        let mp4 = encode_mp4(clip, &Mp4Options::default()).map_err(err)?;
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
