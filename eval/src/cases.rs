//! Evaluation cases from a dataset's held-out split: the caption as the prompt, the clip
//! fitted to the model's shape as ground truth (first frame, prefix), the scene labels cut
//! to the same window, and the references of the scene's character.

use std::path::Path;

use sonora_datasets::Dataset;
use sonora_datasets::codec::decode_record;
use sonora_datasets::labels::PhysicsLabels;
use sonora_datasets::loader::transform::{CropMode, Target, fit_clip};
use sonora_datasets::reader::read_references;
use sonora_framework::model::ModelConfig;
use sonora_framework::{Audio, Clip, ClipMetadata};

use crate::EvalError;
use crate::scene::window_labels;
use crate::suite::{CaseMode, SuiteFile};

/// The shape clips are fitted to (a model's frames, size, fps and sample rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Frames.
    pub frames: usize,
    /// Height, px.
    pub height: usize,
    /// Width, px.
    pub width: usize,
    /// Frames per second.
    pub fps: f64,
    /// Audio sample rate, Hz (mono).
    pub sample_rate: u32,
}

impl Shape {
    /// The shape a model generates.
    pub fn of(m: &ModelConfig) -> Self {
        Self {
            frames: m.frames,
            height: m.height,
            width: m.width,
            fps: m.fps,
            sample_rate: m.sample_rate,
        }
    }
}

/// One scored case.
#[derive(Clone, Debug)]
pub struct Case {
    /// `<mode>-<clip_id>`.
    pub id: String,
    /// The dataset clip it comes from.
    pub clip_id: String,
    /// What is given to the model.
    pub mode: CaseMode,
    /// The caption.
    pub prompt: String,
    /// The clip fitted to the shape (the ceiling, and the source of given frames).
    pub truth: Clip,
    /// The scene's labels for the fitted window, in the source's pixels, with the source's
    /// frame size `(h, w)`.
    pub scene: Option<(PhysicsLabels, usize, usize)>,
    /// Reference images `(RGB, w, h)` of the scene's character (character cases).
    pub references: Vec<(Vec<u8>, usize, usize)>,
    /// First generated frame after a given prefix (extension cases).
    pub boundary: Option<usize>,
}

/// A case that could not be built, with the reason.
#[derive(Clone, Debug)]
pub struct BadCase {
    /// The clip.
    pub clip_id: String,
    /// Why.
    pub reason: String,
}

/// Builds the suite's cases at `shape` (`None` = each clip as it is). Unreadable rows and
/// clips too short for the shape become [`BadCase`]s; a missing dataset is an error.
pub fn load_cases(
    suite: &SuiteFile,
    shape: Option<Shape>,
) -> Result<(Vec<Case>, Vec<BadCase>), EvalError> {
    let s = &suite.suite;
    let ds = Dataset::open(&s.data)
        .map_err(|e| EvalError::Invalid(format!("suite.data {}: {e}", s.data.display())))?;
    let shards = ds.shards(Some(&s.split));
    if shards.is_empty() {
        return Err(EvalError::Invalid(format!(
            "suite.data {} has no `{}` shards",
            s.data.display(),
            s.split
        )));
    }
    let modes = suite.modes().map_err(EvalError::Invalid)?;
    let (mut cases, mut bad) = (Vec::new(), Vec::new());
    let mut scenes = 0;
    'outer: for sh in &shards {
        let r = ds
            .open_shard(sh)
            .map_err(|e| EvalError::Invalid(e.to_string()))?;
        for g in 0..r.num_row_groups() {
            let rows = r
                .read_records(g, None)
                .map_err(|e| EvalError::Invalid(e.to_string()))?;
            for row in rows {
                if scenes >= s.clips {
                    break 'outer;
                }
                scenes += 1;
                let rec = match row {
                    Ok(rec) => rec,
                    Err(e) => {
                        bad.push(BadCase {
                            clip_id: e.location.clip_id.clone().unwrap_or_default(),
                            reason: e.to_string(),
                        });
                        continue;
                    }
                };
                let built = decode_record(&rec).and_then(|clip| {
                    fit(&clip, shape, s.window).map(|(truth, start)| {
                        let scene = rec.physics.as_ref().map(|l| {
                            (
                                window_labels(l, start, truth.frames.t, truth.fps),
                                clip.frames.h,
                                clip.frames.w,
                            )
                        });
                        (truth, scene)
                    })
                });
                let (truth, scene) = match built {
                    Ok(x) => x,
                    Err(reason) => {
                        bad.push(BadCase {
                            clip_id: rec.clip_id.clone(),
                            reason,
                        });
                        continue;
                    }
                };
                for &mode in &modes {
                    let mut case = Case {
                        id: format!("{}-{}", mode.name(), rec.clip_id),
                        clip_id: rec.clip_id.clone(),
                        mode,
                        prompt: rec.caption.clone(),
                        truth: truth.clone(),
                        scene: scene.clone(),
                        references: Vec::new(),
                        boundary: None,
                    };
                    match mode {
                        CaseMode::Character => {
                            // only scenes with a character make character cases
                            let Some(id) = rec.character_ids.first() else {
                                continue;
                            };
                            match references(&s.data, id, s.references) {
                                Ok(r) => case.references = r,
                                Err(reason) => {
                                    bad.push(BadCase {
                                        clip_id: rec.clip_id.clone(),
                                        reason,
                                    });
                                    continue;
                                }
                            }
                        }
                        CaseMode::Extension => case.boundary = Some(truth.frames.t / 2),
                        CaseMode::Text | CaseMode::Image | CaseMode::Remix | CaseMode::Sound => {}
                    }
                    cases.push(case);
                }
            }
        }
    }
    // one mode after another, so the sampler's batches (one mode each) stay full
    cases.sort_by_key(|c| c.mode as u8);
    Ok((cases, bad))
}

/// Fits `clip` to `shape` as the loader does (time `window`, centred in space); returns it
/// and the first source frame.
pub(crate) fn fit(
    clip: &Clip,
    shape: Option<Shape>,
    window: CropMode,
) -> Result<(Clip, usize), String> {
    let Some(s) = shape else {
        return Ok((clip.clone(), 0));
    };
    let target = Target {
        frames: s.frames,
        height: s.height,
        width: s.width,
        fps: s.fps,
        sample_rate: s.sample_rate,
        channels: 1,
    };
    let (frames, audio, t0): (_, Audio, f64) =
        fit_clip(clip, &target, window, CropMode::Center, 0)?;
    Ok((
        Clip {
            frames,
            audio,
            fps: s.fps,
            caption: clip.caption.clone(),
            metadata: ClipMetadata {
                clip_id: clip.metadata.clip_id.clone(),
                ..ClipMetadata::default()
            },
        },
        (t0 * clip.fps + 1e-6).floor() as usize,
    ))
}

/// The first `n` (at least one) reference images of character `id` in the dataset `data`.
pub fn references(data: &Path, id: &str, n: usize) -> Result<Vec<(Vec<u8>, usize, usize)>, String> {
    read_references(data, id, n.max(1))
}
