//! Scoring a checkpoint (sample every case, score, write MP4s and the report) and scoring a
//! dataset's own clips (the ceiling). One bad case never aborts the suite: it becomes a
//! failed row with its reason.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use sonora_framework::checkpoint;
use sonora_framework::diffusion::{Mode, SampleRequest, SamplerConfig, sample};
use sonora_framework::media::{Mp4Options, encode_mp4, resize_rgb};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, PatchCodec, SonoraDit};
use sonora_framework::{Clip, ClipMetadata};

use crate::EvalError;
use crate::cases::{BadCase, Case, Shape, load_cases};
use crate::consistency::{ConsistencyInput, consistency_scores};
use crate::metric::Scores;
use crate::physics::{contacts_heard, physics_scores};
use crate::report::{ClipRow, Report};
use crate::scene::upscale;
use crate::suite::{CaseMode, SuiteFile};
use crate::track::{keys_from_labels, track_objects};

/// One clip's scores and its motion credit.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// The suite's metrics that apply.
    pub scores: Scores,
    /// The clip's dynamic degree (the motion credit that weighs the consistency metrics'
    /// goodness, see [`crate::report`]), whether or not the suite reports it.
    pub motion: Option<f64>,
}

/// Scores one clip for `case`: the physics suite against the case's scene (the clip scaled
/// to the scene's pixel grid) and the consistency suite; only the suite's metrics are kept.
/// `real_video_s` is how long (from the start) the clip's video is the real one — the whole
/// clip for data and `sound` cases, the given prefix of `extension` cases — where the
/// labels-based `physics.contacts_heard` applies.
///
/// A clip in which no object of the scene is ever tracked (visible in 3 frames) cannot
/// show gravity or bounces; rather than the vacuous best values (no bounce, no violation),
/// it gets the worst: `gravity_rel_error` 1 (100 %), `bounce_violation` 1 (a whole frame
/// height), and no `appearance_drift`. Without this an empty clip would outrank a real one.
pub fn score_case(
    clip: &Clip,
    case: &Case,
    suite: &SuiteFile,
    real_video_s: Option<f64>,
) -> Result<Scored, EvalError> {
    let mut s = Scores::new();
    if let Some((scene, h, w)) = &case.scene
        && !scene.objects.is_empty()
    {
        let up = upscale(clip, *h, *w)?;
        s.extend(physics_scores(&up, scene)?);
        let tracks = track_objects(&up.frames, &keys_from_labels(scene));
        let seen = tracks
            .iter()
            .any(|t| t.iter().filter(|p| p.visible).count() >= 3);
        if !seen {
            s.insert("physics.gravity_rel_error".into(), 1.0);
            s.insert("physics.bounce_violation".into(), 1.0);
            s.remove("physics.appearance_drift");
        }
        if let Some(until) = real_video_s
            && let Some(v) = contacts_heard(clip, scene, until)
        {
            s.insert("physics.contacts_heard".into(), v);
        }
    }
    s.extend(consistency_scores(&ConsistencyInput {
        clip,
        references: &case.references,
        boundary: case.boundary,
    })?);
    let motion = s.get("consistency.dynamic_degree").copied();
    s.retain(|k, v| suite.wants(k) && v.is_finite());
    Ok(Scored { scores: s, motion })
}

/// How long the video of `case`'s generated clip is the real one (see [`score_case`]).
fn real_video_s(case: &Case) -> Option<f64> {
    let fps = case.truth.fps;
    match case.mode {
        CaseMode::Sound => Some(case.truth.frames.t as f64 / fps),
        CaseMode::Extension => case.boundary.map(|b| b as f64 / fps),
        _ => None,
    }
}

/// Writes `clip` as `clips/<case>.mp4` under `out`; returns the relative path.
fn write_mp4(out: &Path, case_id: &str, clip: &Clip) -> Result<String, String> {
    let rel = format!("clips/{case_id}.mp4");
    let mp4 = encode_mp4(clip, &Mp4Options::default()).map_err(|e| e.to_string())?;
    sonora_framework::fsutil::write_atomic(&out.join(&rel), &mp4).map_err(|e| e.to_string())?;
    Ok(rel)
}

/// Scores a case's clip into a row, writing its MP4.
fn row(
    out: &Path,
    case: &Case,
    clip: &Clip,
    suite: &SuiteFile,
    mode: &str,
    real_video_s: Option<f64>,
) -> ClipRow {
    let scored = score_case(clip, case, suite, real_video_s).map_err(|e| e.to_string());
    let video = write_mp4(out, &case.id, clip);
    match (scored, video) {
        (Ok(Scored { scores, motion }), Ok(v)) => ClipRow {
            case_id: case.id.clone(),
            clip_id: case.clip_id.clone(),
            mode: mode.into(),
            prompt: case.prompt.clone(),
            status: "ok".into(),
            reason: None,
            video: Some(v),
            scores,
            motion,
        },
        (Err(e), _) | (_, Err(e)) => {
            ClipRow::failed(&case.id, &case.clip_id, mode, &case.prompt, e)
        }
    }
}

/// The row of a case that could not be sampled.
fn failed_row(c: &Case, reason: String) -> ClipRow {
    ClipRow::failed(&c.id, &c.clip_id, c.mode.name(), &c.prompt, reason)
}

/// Rows for cases that could not be built.
fn bad_rows(bad: Vec<BadCase>, mode: &str) -> Vec<ClipRow> {
    bad.into_iter()
        .map(|b| {
            ClipRow::failed(
                &format!("{mode}-{}", b.clip_id),
                &b.clip_id,
                mode,
                "",
                b.reason,
            )
        })
        .collect()
}

/// Scores the dataset's own clips (fitted to `shape` when given, as a model would see them).
/// Each is also scored for continuity across its middle frame, as an extension's boundary
/// would be, and for its labelled contacts heard over its whole length (its video is real).
pub fn eval_data(suite: &SuiteFile, shape: Option<Shape>, out: &Path) -> Result<Report, EvalError> {
    let mut one = suite.clone();
    one.suite.modes = vec!["text".into()];
    let (cases, bad) = load_cases(&one, shape)?;
    let mut rows = bad_rows(bad, "data");
    for c in &cases {
        let mut case = c.clone();
        case.id = format!("data-{}", c.clip_id);
        let t = c.truth.frames.t;
        case.boundary = (t >= 3).then_some(t / 2);
        let whole = t as f64 / c.truth.fps;
        rows.push(row(out, &case, &c.truth, suite, "data", Some(whole)));
    }
    let report = Report::new(
        &suite.suite.name,
        format!("data:{}", suite.suite.data.display()),
        None,
        rows,
    );
    report.write(out)?;
    Ok(report)
}

/// Which weights to score.
#[derive(Clone, Debug)]
pub enum Weights {
    /// The checkpoint's (its EMA weights when it has them).
    Trained,
    /// Freshly initialised weights of the checkpoint's config (same tokenizer): the baseline.
    Untrained,
}

/// Samples every case of `suite` from the checkpoint at `ckpt`, scores it, and writes
/// `report.json`, `clips.parquet` and `clips/*.mp4` into `out`.
pub fn eval_checkpoint(
    ckpt: &Path,
    weights: Weights,
    suite: &SuiteFile,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    // the EMA weights when the checkpoint has them, as training's own samples use
    let (model, tok, man, _) = checkpoint::load_for_inference(ckpt, device)
        .map_err(|e| EvalError::Invalid(format!("checkpoint {}: {e}", ckpt.display())))?;
    let model = match weights {
        Weights::Trained => model,
        Weights::Untrained => {
            device.seed(suite.sampler.seed);
            SonoraDit::new(&man.model, device)
        }
    };
    let cfg = man.model.clone();
    let (cases, bad) = load_cases(suite, Some(Shape::of(&cfg)))?;
    let mut rows = bad_rows(bad, "case");
    let codec = PatchCodec::new(&cfg);
    let sc = suite.sampler.sampler_config();
    let null = tok
        .encode("")
        .map_err(|e| EvalError::Invalid(e.to_string()))?;
    let total = cases.len();
    // the sampler batches requests of one mode (equal reference counts, remix strengths)
    let mut chunks: Vec<&[Case]> = Vec::new();
    let mut start = 0;
    for i in 1..=cases.len() {
        if i == cases.len()
            || cases[i].mode != cases[start].mode
            || cases[i].references.len() != cases[start].references.len()
        {
            chunks.extend(cases[start..i].chunks(suite.sampler.batch));
            start = i;
        }
    }
    let mut done = 0;
    for chunk in chunks {
        progress(done, total);
        let first = done;
        done += chunk.len();
        // one pass: requests for the cases that can be asked, failed rows for the rest
        let mut asked: Vec<&Case> = Vec::new();
        let mut batch: Vec<SampleRequest> = Vec::new();
        for c in chunk {
            match request(c, &tok, &codec, &cfg, suite.suite.remix_strength) {
                Ok(r) => {
                    asked.push(c);
                    batch.push(r);
                }
                Err(e) => rows.push(failed_row(c, e)),
            }
        }
        if batch.is_empty() {
            continue;
        }
        let sc = SamplerConfig {
            seed: suite.sampler.seed.wrapping_add(first as u64),
            ..sc.clone()
        };
        match sample(&model, &sc, &batch, &null, device, &mut |_, _| {}) {
            Ok(tokens) => {
                for (c, t) in asked.into_iter().zip(tokens) {
                    let (frames, audio) = codec.decode(&t);
                    let clip = Clip {
                        frames,
                        audio,
                        fps: cfg.fps,
                        caption: c.prompt.clone(),
                        metadata: ClipMetadata {
                            clip_id: c.id.clone(),
                            ..ClipMetadata::default()
                        },
                    };
                    rows.push(row(out, c, &clip, suite, c.mode.name(), real_video_s(c)));
                }
            }
            Err(e) => rows.extend(asked.into_iter().map(|c| failed_row(c, e.to_string()))),
        }
    }
    progress(total, total);
    let source = match weights {
        Weights::Trained => ckpt.display().to_string(),
        Weights::Untrained => format!("untrained:{}", ckpt.display()),
    };
    // the untrained baseline stands at step 0 of the run's history
    let step = match weights {
        Weights::Trained => man.step,
        Weights::Untrained => 0,
    };
    let report = Report::new(&suite.suite.name, source, Some(step), rows);
    report.write(out)?;
    Ok(report)
}

/// The sampler request of a case.
fn request(
    c: &Case,
    tok: &CaptionTokenizer,
    codec: &PatchCodec,
    cfg: &sonora_framework::model::ModelConfig,
    strength: f64,
) -> Result<SampleRequest, String> {
    let prompt = tok.encode_prompt(&c.prompt).map_err(|e| e.to_string())?;
    if let Some(d) = &prompt.dropped {
        tracing::warn!(
            "case {}: caption of {} tokens, the model reads the first {}; not read: {d:?}",
            c.id,
            prompt.tokens,
            tok.max_len()
        );
    }
    let text = prompt.ids;
    let given = || codec.encode(&c.truth).map_err(|e| e.to_string());
    Ok(match c.mode {
        CaseMode::Text => SampleRequest {
            text,
            mode: Mode::TextToAv,
            given: None,
            refs: Vec::new(),
        },
        CaseMode::Image => SampleRequest {
            text,
            mode: Mode::ImageToVideo,
            given: Some(given()?),
            refs: Vec::new(),
        },
        CaseMode::Extension => SampleRequest {
            text,
            mode: Mode::Extension {
                prefix_frames: c.boundary.unwrap_or(cfg.frames / 2) / cfg.patch_t * cfg.patch_t,
            },
            given: Some(given()?),
            refs: Vec::new(),
        },
        CaseMode::Sound => SampleRequest {
            text,
            mode: Mode::VideoToAudio,
            given: Some(given()?),
            refs: Vec::new(),
        },
        CaseMode::Remix => SampleRequest {
            text,
            mode: Mode::Remix { strength },
            given: Some(given()?),
            refs: Vec::new(),
        },
        CaseMode::Character => {
            let mut refs = Vec::new();
            for (rgb, w, h) in &c.references {
                let s = cfg.ref_size;
                let px = resize_rgb(rgb, *h, *w, s, s).map_err(|e| e.to_string())?;
                refs.extend(codec.encode_reference(&px)?);
            }
            SampleRequest {
                text,
                mode: Mode::Character,
                given: None,
                refs,
            }
        }
    })
}

/// Where `eval run` writes by default: `<run>/eval/<suite>/step-N` for a checkpoint inside
/// a run directory (`<run>/checkpoints/step-N`), else `eval/<suite>/<checkpoint name>`.
pub fn default_out(ckpt: &Path, suite: &str, untrained: bool) -> PathBuf {
    let name = ckpt
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let name = if untrained {
        format!("untrained-{name}")
    } else {
        name
    };
    match ckpt.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => p
            .parent()
            .unwrap_or(Path::new("."))
            .join("eval")
            .join(suite)
            .join(name),
        _ => PathBuf::from("eval").join(suite).join(name),
    }
}
