//! Workers: claim a batch of compatible jobs from the store, run their segments through
//! the sampler together (progress and lease renewed as steps complete, a deleted job
//! cancelled), write each job's outputs atomically, then mark it completed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sonora_framework::Clip;
use sonora_framework::fsutil::write_atomic;
use sonora_framework::generate::{GenRequest, GenerateError, Generator};
use sonora_framework::media::{Mp4Options, decode_png, encode_mp4};
use sonora_framework::model::ModelConfig;

use crate::job::{Kind, SEGMENT_SEED, Segment, Source, prefix_frames, segments};
use crate::media::{append, clip_from_mp4, padded, slice, spritesheet, thumbnail, watermark};
use crate::provenance::{Derived, Manifest, ServerKey};
use crate::state::AppState;
use crate::store::{JobError, VideoRow};

/// The files of a completed video, under `STATE/videos/ID/`.
pub fn video_dir(state: &Path, id: &str) -> PathBuf {
    state.join("videos").join(id)
}

/// One job in a running batch.
struct Run {
    row: VideoRow,
    segments: Vec<Segment>,
    /// The source clip (remix, extension) or the first frame (image).
    source: Option<Clip>,
    image: Option<(Vec<u8>, usize, usize)>,
    /// The reference images of the characters cast.
    refs: Vec<(Vec<u8>, usize, usize)>,
    /// What has been generated so far (stitched).
    out: Option<Clip>,
}

fn invalid(message: String) -> JobError {
    JobError {
        code: "invalid_request".into(),
        message,
    }
}

fn internal(message: String) -> JobError {
    JobError {
        code: "internal_error".into(),
        message,
    }
}

impl Run {
    /// The job planned on the served model (`p`: the extension prefix), nothing loaded.
    fn plan(row: VideoRow, cfg: &ModelConfig, p: usize) -> Self {
        Run {
            segments: segments(&row.spec, cfg, p),
            source: None,
            image: None,
            refs: Vec::new(),
            out: None,
            row,
        }
    }

    /// Loads what the job starts from: its first frame or its source clip, and the
    /// references of its characters (each one its creator may still cast: a rule changed
    /// or a character deleted since the job was queued fails it with the reason).
    fn load(&mut self, st: &AppState, cfg: &ModelConfig) -> Result<(), JobError> {
        let caster = crate::videos::User {
            name: self.row.owner.clone(),
            admin: false,
        };
        for id in &self.row.spec.characters {
            let c = st
                .store
                .character(id)
                .map_err(|e| internal(e.to_string()))?
                .ok_or_else(|| JobError {
                    code: "character_revoked".into(),
                    message: format!("character {id} was deleted"),
                })?;
            if !crate::characters::may(&caster, &c, crate::consent::Action::Cast) {
                return Err(JobError {
                    code: "character_revoked".into(),
                    message: format!(
                        "{} may no longer cast character {} ({}): its owner changed who may use it",
                        caster.name, c.name, c.id
                    ),
                });
            }
            self.refs
                .extend(crate::characters::load_references(st, &c).map_err(internal)?);
        }
        match &self.row.spec.kind {
            Kind::Text => {}
            Kind::Image { image } => {
                let b = std::fs::read(st.state_dir.join(image))
                    .map_err(|e| internal(format!("the stored first frame {image}: {e}")))?;
                let (rgb, h, w) =
                    decode_png(&b).map_err(|e| invalid(format!("the first frame: {e}")))?;
                self.image = Some((rgb, w, h));
            }
            Kind::Remix { source, .. } | Kind::Extension { source } => {
                self.source = Some(load_source(st, source, cfg)?);
            }
        }
        Ok(())
    }

    fn seed(&self, seg: usize) -> u64 {
        self.row
            .spec
            .seed
            .wrapping_add(SEGMENT_SEED.wrapping_mul(seg as u64))
    }

    /// The request for segment `seg`.
    fn request(&self, seg: usize, g: &Generator, p: usize) -> Result<GenRequest, GenerateError> {
        let cfg = g.config();
        let prompt = &crate::videos::model_prompt(&self.row.prompt);
        let r = match (self.segments[seg], &self.row.spec.kind) {
            (Segment::Fresh, Kind::Image { .. }) => {
                let (rgb, w, h) = self.image.as_ref().expect("prepared");
                g.image(prompt, rgb, *w, *h)?
            }
            (Segment::Fresh, _) => g.text(prompt)?,
            (Segment::Continue, _) => {
                let so_far = self
                    .out
                    .as_ref()
                    .or(self.source.as_ref())
                    .expect("a continuation follows a clip");
                let t = so_far.frames.t;
                let tail = slice(so_far, t - p, t, cfg);
                g.extension(prompt, &padded(&tail, cfg), p)?
            }
            (Segment::Window { start }, Kind::Remix { strength, .. }) => {
                let src = self.source.as_ref().expect("prepared");
                g.remix(
                    prompt,
                    &slice(src, start, start + cfg.frames, cfg),
                    *strength,
                )?
            }
            (Segment::Window { .. }, _) => {
                return Err(GenerateError::Internal("a window outside a remix".into()));
            }
        };
        let r = if self.refs.is_empty() {
            r
        } else {
            metrics::counter!("sonora_reference_images_sampled_total")
                .increment(self.refs.len() as u64);
            g.cast(r, &self.refs)?
        };
        Ok(r.with_seed(self.seed(seg)))
    }

    /// Stitches segment `seg`'s clip onto the output.
    fn absorb(&mut self, seg: usize, clip: Clip, p: usize, cfg: &ModelConfig) {
        match self.segments[seg] {
            Segment::Fresh => self.out = Some(clip),
            Segment::Continue => {
                let new = slice(&clip, p, cfg.frames, cfg);
                let base = self
                    .out
                    .get_or_insert_with(|| self.source.clone().expect("a source"));
                append(base, &new);
            }
            Segment::Window { start } => {
                let have = self.out.as_ref().map_or(0, |c| c.frames.t);
                let new = slice(&clip, have - start, cfg.frames, cfg);
                match &mut self.out {
                    Some(o) => append(o, &new),
                    None => self.out = Some(new),
                }
            }
        }
    }

    /// The output trimmed to the frames asked for.
    fn finish(self, cfg: &ModelConfig) -> Option<(VideoRow, Clip)> {
        let out = self.out?;
        let frames = self.row.spec.frames.min(out.frames.t);
        let mut c = slice(&out, 0, frames, cfg);
        c.caption = self.row.prompt.clone();
        Some((self.row, c))
    }
}

/// The clip a remix or extension starts from.
fn load_source(st: &AppState, source: &Source, cfg: &ModelConfig) -> Result<Clip, JobError> {
    let path = match source {
        Source::Video(id) => video_dir(&st.state_dir, id).join("video.mp4"),
        Source::Upload(rel) => st.state_dir.join(rel),
    };
    let bytes = std::fs::read(&path).map_err(|e| match source {
        Source::Video(id) => invalid(format!(
            "the source video {id} is no longer available ({e})"
        )),
        Source::Upload(_) => internal(format!("the stored upload {}: {e}", path.display())),
    })?;
    clip_from_mp4(&bytes, cfg).map_err(|e| invalid(format!("the source video: {e}")))
}

/// Writes a completed clip's files, clean (`video.mp4`, `thumbnail.png`,
/// `spritesheet.png`) and with sonora's mark (`video.wm.mp4`, …), each atomically, after
/// removing what an earlier try of the job left (a temp file a kill cut short). Both MP4s
/// carry `manifest` signed by `signer`.
pub fn write_outputs(
    dir: &Path,
    clip: &Clip,
    signer: &ServerKey,
    manifest: &Manifest,
) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    let io =
        |p: PathBuf, b: Vec<u8>| write_atomic(&p, &b).map_err(|e| format!("{}: {e}", p.display()));
    let marked = watermark(clip);
    for (c, tag) in [(&marked, ".wm"), (clip, "")] {
        let mp4 = encode_mp4(c, &Mp4Options::default()).map_err(|e| format!("encoding: {e}"))?;
        let m = Manifest {
            watermarked: !tag.is_empty(),
            ..manifest.clone()
        };
        let signed = signer.sign(&mp4, m);
        io(dir.join(format!("thumbnail{tag}.png")), thumbnail(c)?)?;
        io(dir.join(format!("spritesheet{tag}.png")), spritesheet(c)?)?;
        // the clean video last: its presence is what marks a complete set
        io(dir.join(format!("video{tag}.mp4")), signed)?;
    }
    Ok(())
}

/// The provenance manifest of a job (the key and hash are filled in when signed).
fn manifest_of(row: &VideoRow) -> Manifest {
    Manifest {
        format: String::new(),
        server_key: String::new(),
        model: row.model.clone(),
        request_id: row.id.clone(),
        created_at: row.created_at as i64,
        characters: row.spec.characters.clone(),
        derived_from: (!row.spec.derived.is_empty()).then(|| Derived {
            kind: row.spec.derived.clone(),
            video_id: row.remixed_from.clone(),
        }),
        watermarked: false,
        content_sha256: String::new(),
    }
}

/// A worker's loop: claim, run, repeat, until the server stops.
pub fn worker_loop(st: Arc<AppState>, name: String) {
    let cfg = st.config.clone();
    while !st.stopping.load(Ordering::SeqCst) {
        let rows = match st.store.claim(&name, cfg.batch, cfg.lease_s, cfg.max_tries) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{name}: claiming jobs: {e}");
                std::thread::sleep(Duration::from_secs_f64(cfg.idle_poll_s));
                continue;
            }
        };
        if rows.is_empty() {
            let _ = st
                .wake_rx
                .recv_timeout(Duration::from_secs_f64(cfg.idle_poll_s));
            continue;
        }
        run_batch(&st, &name, rows);
    }
}

fn fail(st: &AppState, worker: &str, row: &VideoRow, e: JobError) {
    tracing::warn!("job {} failed: {}", row.id, e.message);
    metrics::counter!("sonora_jobs_finished_total", "status" => "failed").increment(1);
    if let Err(se) = st.store.fail(worker, &row.id, &e) {
        tracing::error!("recording the failure of {}: {se}", row.id);
    }
}

/// Runs one claimed batch to the end.
fn run_batch(st: &AppState, worker: &str, rows: Vec<VideoRow>) {
    let served = st.model.get();
    let g = &served.generator;
    let cfg = g.config().clone();
    let Ok(p) = prefix_frames(&cfg, st.config.extension_prefix_frames) else {
        for r in &rows {
            fail(
                st,
                worker,
                r,
                internal("extension_prefix_frames does not fit the model".into()),
            );
        }
        return;
    };
    let mut runs = Vec::new();
    for row in rows {
        let mut r = Run::plan(row, &cfg, p);
        match r.load(st, &cfg) {
            Ok(()) => runs.push(r),
            Err(e) => fail(st, worker, &r.row, e),
        }
    }
    // a reload between create and claim may change the plan: run each plan length apart
    runs.sort_by_key(|r| r.segments.len());
    while !runs.is_empty() {
        let n = runs[0].segments.len();
        let split = runs
            .iter()
            .position(|r| r.segments.len() != n)
            .unwrap_or(runs.len());
        let group: Vec<Run> = runs.drain(..split).collect();
        run_group(st, worker, g, &cfg, p, group);
    }
}

fn run_group(
    st: &AppState,
    worker: &str,
    g: &Generator,
    cfg: &ModelConfig,
    p: usize,
    mut runs: Vec<Run>,
) {
    let started = Instant::now();
    let n = runs[0].segments.len();
    let sc = st.config.sampler.clone();
    for seg in 0..n {
        // requests; a job whose request is refused fails alone
        let mut reqs = Vec::new();
        let mut kept = Vec::new();
        for r in runs.drain(..) {
            match r.request(seg, g, p) {
                Ok(q) => {
                    reqs.push(q);
                    kept.push(r);
                }
                Err(e) => fail(st, worker, &r.row, invalid(e.to_string())),
            }
        }
        runs = kept;
        if runs.is_empty() {
            return;
        }
        let ids: Vec<String> = runs.iter().map(|r| r.row.id.clone()).collect();
        let mut live = ids.clone();
        let mut last_beat = Instant::now();
        let mut last_step = Instant::now();
        let result = g.generate(&sc, &reqs, &mut |k, total| {
            metrics::histogram!("sonora_sampler_step_seconds")
                .record(last_step.elapsed().as_secs_f64());
            last_step = Instant::now();
            if last_beat.elapsed() < Duration::from_millis(200) && k < total {
                return true;
            }
            last_beat = Instant::now();
            let pct = ((seg * total + k) * 100 / (n * total).max(1)) as u32;
            match st.store.heartbeat(worker, &ids, pct, st.config.lease_s) {
                Ok(h) => live = h.live,
                Err(e) => tracing::error!("heartbeat: {e}"),
            }
            // every job of the batch deleted (or taken over): stop
            !live.is_empty() && !st.stopping.load(Ordering::SeqCst)
        });
        runs.retain(|r| live.contains(&r.row.id));
        match result {
            Ok(clips) => {
                for (r, c) in runs.iter_mut().zip(clips) {
                    r.absorb(seg, c, p, cfg);
                }
            }
            Err(GenerateError::Cancelled) => {
                if st.stopping.load(Ordering::SeqCst) {
                    for r in &runs {
                        let _ = st.store.release(worker, &r.row.id);
                    }
                } else {
                    // every job of the batch was deleted: the worker is free at once
                    metrics::counter!("sonora_jobs_cancelled_total").increment(ids.len() as u64);
                }
                return;
            }
            Err(GenerateError::BadRequest(m)) => {
                for r in &runs {
                    fail(st, worker, &r.row, invalid(m.clone()));
                }
                return;
            }
            Err(GenerateError::Internal(m)) => {
                for r in &runs {
                    fail(st, worker, &r.row, internal(m.clone()));
                }
                return;
            }
        }
    }
    for r in runs {
        let Some((row, clip)) = r.finish(cfg) else {
            continue;
        };
        let dir = video_dir(&st.state_dir, &row.id);
        if let Err(e) = write_outputs(&dir, &clip, &st.signer, &manifest_of(&row)) {
            fail(st, worker, &row, internal(e));
            continue;
        }
        match st.store.complete(worker, &row.id) {
            Ok(true) => {
                metrics::counter!("sonora_jobs_finished_total", "status" => "completed")
                    .increment(1);
                metrics::histogram!("sonora_job_seconds")
                    .record(crate::store::now() - row.created_at);
            }
            // deleted while it ran: its files go too
            Ok(false) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(e) => tracing::error!("completing {}: {e}", row.id),
        }
    }
    tracing::debug!("batch done in {:.2?}", started.elapsed());
}
