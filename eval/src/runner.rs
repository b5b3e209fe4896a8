//! Scoring a checkpoint (sample every case, score, write MP4s and the report) and scoring a
//! dataset's own clips (the ceiling). One bad case never aborts the suite: it becomes a
//! failed row with its reason.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use sonora_framework::Clip;
use sonora_framework::checkpoint;
use sonora_framework::diffusion::SamplerConfig;
use sonora_framework::generate::{GenRequest, GenerateError, Generator, batches};
use sonora_framework::media::{Mp4Options, encode_mp4};
use sonora_framework::model::SonoraDit;

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
    let generator =
        Generator::new(model, tok, device).map_err(|e| EvalError::Invalid(e.to_string()))?;
    let cfg = man.model.clone();
    let (cases, bad) = load_cases(suite, Some(Shape::of(&cfg)))?;
    let mut rows = bad_rows(bad, "case");
    let sc = suite.sampler.clone();
    // one pass: requests for the cases that can be asked, failed rows for the rest
    let (mut asked, mut reqs): (Vec<&Case>, Vec<GenRequest>) = (Vec::new(), Vec::new());
    let mut cut = Vec::new();
    for c in &cases {
        match request(&generator, c, suite.suite.remix_strength) {
            Ok(r) => {
                if r.dropped.is_some() {
                    cut.push(c.id.as_str());
                }
                asked.push(c);
                reqs.push(r);
            }
            Err(e) => rows.push(failed_row(c, e.to_string())),
        }
    }
    if let Some(first) = cut.first() {
        // the same cut training made: said once, not per case
        tracing::warn!(
            "{} of {} cases have captions longer than the model's {} tokens; the model reads their start (first: {first})",
            cut.len(),
            reqs.len(),
            generator.tokenizer().max_len()
        );
    }
    let total = reqs.len();
    // the sampler batches requests of one reference count and remix strength
    for range in batches(&reqs, suite.suite.batch) {
        progress(range.start, total);
        let sc = SamplerConfig {
            seed: suite.sampler.seed.wrapping_add(range.start as u64),
            ..sc.clone()
        };
        let cases = &asked[range.clone()];
        match generator.generate(&sc, &reqs[range.clone()], &mut |_, _| true) {
            Ok(clips) => {
                for (c, mut clip) in cases.iter().zip(clips) {
                    clip.metadata.clip_id = c.id.clone();
                    rows.push(row(out, c, &clip, suite, c.mode.name(), real_video_s(c)));
                }
            }
            Err(e) => rows.extend(cases.iter().map(|c| failed_row(c, e.to_string()))),
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

/// The generation request of a case.
fn request(generator: &Generator, c: &Case, strength: f64) -> Result<GenRequest, GenerateError> {
    let cfg = generator.config();
    let p = &c.prompt;
    match c.mode {
        CaseMode::Text => generator.text(p),
        CaseMode::Image => {
            let f = &c.truth.frames;
            generator.image(p, f.frame(0), f.w, f.h)
        }
        CaseMode::Extension => {
            let prefix = c.boundary.unwrap_or(cfg.frames / 2) / cfg.patch_t * cfg.patch_t;
            generator.extension(p, &c.truth, prefix)
        }
        CaseMode::Sound => generator.video_to_audio(p, &c.truth),
        CaseMode::Remix => generator.remix(p, &c.truth, strength),
        CaseMode::Character => generator.character(p, &c.references),
    }
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
