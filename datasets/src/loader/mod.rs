//! The streaming loader: projection, rank/world sharding, deterministic shuffle by
//! `(seed, epoch)`, prefetch on worker threads, fitting clips to the recipe's shape,
//! bucketing by shape, a bad-row policy, and a small resumable [`LoaderState`].

mod pipeline;
pub mod plan;
pub mod transform;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sonora_framework::{Audio, Frames};

use crate::codec::decode_record;
use crate::error::{DatasetError, Result, RowError};
use crate::reader::{Dataset, ShardReader};
use crate::schema::col;
use pipeline::{Output, Pipeline};
use plan::{ClipRef, Layout, PlanParams, epoch_plan, mix_seed};
pub use transform::{CropMode, Target};

/// What to do with a row that cannot be decoded or fitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum BadRowPolicy {
    /// Stop with an error naming shard, row group, row, clip_id and the problem.
    #[default]
    Error,
    /// Skip the row, count it, log it, and report it at the end.
    Skip,
}

/// An extra shape clips may be bucketed into (same fps and sample rate as the main spec).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Frames.
    pub frames: usize,
    /// Height px.
    pub height: usize,
    /// Width px.
    pub width: usize,
}

/// Loader settings (the `data` section of a recipe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Split to read (`train`, `val`, `test`); all rows when empty.
    pub split: String,
    /// Frames per sample.
    pub frames: usize,
    /// Height px.
    pub height: usize,
    /// Width px.
    pub width: usize,
    /// Frames per second clips are resampled to.
    pub fps: f64,
    /// Audio sample rate clips are resampled to.
    pub sample_rate: u32,
    /// Audio channels (1 or 2).
    pub channels: u16,
    /// Extra shapes; a clip goes to the shape (including the main one) closest to its aspect ratio.
    pub buckets: Vec<Bucket>,
    /// Samples per batch.
    pub batch_size: usize,
    /// Decode threads.
    pub workers: usize,
    /// Batches prefetched ahead of the consumer.
    pub prefetch_batches: usize,
    /// Shuffle clips each epoch.
    pub shuffle: bool,
    /// Shuffle seed.
    pub seed: u64,
    /// Clips per local shuffle window (bounds reader memory).
    pub shuffle_window: usize,
    /// Where the time window is taken from in longer clips.
    pub temporal_crop: CropMode,
    /// Where the spatial crop is taken from after resizing to cover.
    pub spatial_crop: CropMode,
    /// Drop a last, partial batch of each bucket at the end of an epoch.
    pub drop_last: bool,
    /// Give every rank the same number of clips by dropping the last, incomplete round of
    /// `world × batch_size` clips (nothing in a world of one).
    pub even_ranks: bool,
    /// Bad-row policy.
    pub bad_rows: BadRowPolicy,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            split: "train".into(),
            frames: 16,
            height: 64,
            width: 64,
            fps: 8.0,
            sample_rate: 16_000,
            channels: 1,
            buckets: Vec::new(),
            batch_size: 8,
            workers: 2,
            prefetch_batches: 2,
            shuffle: true,
            seed: 0,
            shuffle_window: 256,
            temporal_crop: CropMode::Center,
            spatial_crop: CropMode::Center,
            drop_last: false,
            even_ranks: false,
            bad_rows: BadRowPolicy::Error,
        }
    }
}

impl LoaderConfig {
    /// Checks values, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |k: &str, why: String| Err(DatasetError::Config(format!("data.loader.{k}: {why}")));
        if self.frames == 0 {
            return bad("frames", "must be at least 1".into());
        }
        if self.height == 0 || self.width == 0 {
            return bad("height/width", "must be at least 1".into());
        }
        if !(self.fps > 0.0 && self.fps.is_finite()) {
            return bad("fps", format!("must be positive, got {}", self.fps));
        }
        if self.sample_rate == 0 {
            return bad("sample_rate", "must be positive".into());
        }
        if !(1..=2).contains(&self.channels) {
            return bad("channels", format!("must be 1 or 2, got {}", self.channels));
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self
            .buckets
            .iter()
            .any(|b| b.frames == 0 || b.height == 0 || b.width == 0)
        {
            return bad(
                "buckets",
                "every bucket needs frames, height and width ≥ 1".into(),
            );
        }
        Ok(())
    }

    /// The bucket targets: the main shape first, then `buckets`.
    pub fn targets(&self) -> Vec<Target> {
        let mk = |frames, height, width| Target {
            frames,
            height,
            width,
            fps: self.fps,
            sample_rate: self.sample_rate,
            channels: self.channels,
        };
        std::iter::once(mk(self.frames, self.height, self.width))
            .chain(self.buckets.iter().map(|b| mk(b.frames, b.height, b.width)))
            .collect()
    }
}

/// Where the loader stands: enough to continue exactly where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderState {
    /// Current epoch.
    pub epoch: u64,
    /// Next plan position to read.
    pub cursor: u64,
    /// Plan positions read but still waiting in a partly filled bucket.
    pub pending: Vec<u64>,
    /// Rows skipped so far in this run (policy `skip`).
    pub skipped: u64,
}

/// One fitted clip.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The row's clip id.
    pub clip_id: String,
    /// Caption.
    pub caption: String,
    /// Frames `T×H×W×3` at the bucket's shape.
    pub frames: Frames,
    /// Audio at the target rate and channels, exactly the span of the frames.
    pub audio: Audio,
    /// Characters in the clip.
    pub character_ids: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Seconds into the source clip where the sample starts.
    pub start_s: f64,
    /// Plan position (for resumption).
    pub pos: u64,
}

/// A batch of samples sharing one shape.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Index into [`LoaderConfig::targets`].
    pub bucket: usize,
    /// The shape every sample has.
    pub target: Target,
    /// Samples, in plan order.
    pub samples: Vec<Sample>,
    /// Epoch the batch belongs to.
    pub epoch: u64,
}

impl Batch {
    /// Frames stacked as `[B, T, H, W, 3]` bytes.
    pub fn video_u8(&self) -> Vec<u8> {
        self.samples
            .iter()
            .flat_map(|s| s.frames.data.iter().copied())
            .collect()
    }

    /// Audio stacked as `[B, N, C]` (interleaved per sample).
    pub fn audio_f32(&self) -> Vec<f32> {
        self.samples
            .iter()
            .flat_map(|s| s.audio.samples.iter().copied())
            .collect()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Rows skipped under policy `skip`, with reasons.
#[derive(Clone, Debug, Default)]
pub struct SkipReport {
    /// Every skipped row's error (location and reason).
    pub rows: Vec<RowError>,
}

/// Columns the loader reads (everything but the physics labels).
pub const LOADER_COLUMNS: &[&str] = &[
    col::CLIP_ID,
    col::SPLIT,
    col::CAPTION,
    col::VIDEO,
    col::AUDIO,
    col::FPS,
    col::NUM_FRAMES,
    col::WIDTH,
    col::HEIGHT,
    col::AUDIO_SAMPLE_RATE,
    col::AUDIO_CHANNELS,
    col::TAGS,
    col::CHARACTER_IDS,
];

/// A streaming, resumable clip loader for one rank.
pub struct Loader {
    cfg: LoaderConfig,
    rank: u32,
    world: u32,
    shards: Arc<Vec<ShardReader>>,
    layout: Layout,
    targets: Vec<Target>,
    state: LoaderState,
    plan: Vec<ClipRef>,
    pipeline: Option<Pipeline<(Sample, usize)>>,
    expected: VecDeque<u64>,
    refeed_left: usize,
    reorder: BTreeMap<u64, std::result::Result<(Sample, usize), RowError>>,
    buckets: Vec<Vec<Sample>>,
    ready: VecDeque<Batch>,
    report: SkipReport,
}

impl Loader {
    /// A loader over `dataset` for `rank` of `world`, starting at epoch 0.
    pub fn new(dataset: &Dataset, cfg: LoaderConfig, rank: u32, world: u32) -> Result<Self> {
        cfg.validate()?;
        if world == 0 || rank >= world {
            return Err(DatasetError::Config(format!(
                "rank {rank} is not in a world of {world}"
            )));
        }
        let split = (!cfg.split.is_empty()).then_some(cfg.split.as_str());
        let infos = dataset.shards(split);
        if infos.is_empty() {
            return Err(DatasetError::Manifest {
                path: dataset.root.clone(),
                message: format!("no shards for split `{}`", cfg.split),
            });
        }
        let shards: Vec<ShardReader> = infos
            .iter()
            .map(|s| dataset.open_shard(s))
            .collect::<Result<_>>()?;
        let layout = Layout {
            groups: shards
                .iter()
                .map(|s| {
                    (0..s.num_row_groups())
                        .map(|g| s.row_group_rows(g) as u32)
                        .collect()
                })
                .collect(),
        };
        let targets = cfg.targets();
        let n = targets.len();
        let mut l = Self {
            cfg,
            rank,
            world,
            shards: Arc::new(shards),
            layout,
            targets,
            state: LoaderState::default(),
            plan: Vec::new(),
            pipeline: None,
            expected: VecDeque::new(),
            refeed_left: 0,
            reorder: BTreeMap::new(),
            buckets: vec![Vec::new(); n],
            ready: VecDeque::new(),
            report: SkipReport::default(),
        };
        l.plan = l.make_plan(0);
        Ok(l)
    }

    fn make_plan(&self, epoch: u64) -> Vec<ClipRef> {
        epoch_plan(
            &self.layout,
            &PlanParams {
                seed: self.cfg.seed,
                epoch,
                rank: self.rank,
                world: self.world,
                shuffle: self.cfg.shuffle,
                shuffle_window: self.cfg.shuffle_window,
                even_ranks: self.cfg.even_ranks,
                block: self.cfg.batch_size,
            },
        )
    }

    /// Clips this rank sees per epoch.
    pub fn epoch_len(&self) -> usize {
        self.plan.len()
    }

    /// The bucket shapes.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Rows skipped so far (policy `skip`).
    pub fn skip_report(&self) -> &SkipReport {
        &self.report
    }

    /// The position after the last batch returned: save it with a checkpoint.
    pub fn state(&self) -> LoaderState {
        let mut s = self.state.clone();
        if self.pipeline.is_none() {
            return s;
        }
        let mut pending: Vec<u64> = self.buckets.iter().flatten().map(|x| x.pos).collect();
        pending.extend(
            self.ready
                .iter()
                .flat_map(|b| b.samples.iter().map(|x| x.pos)),
        );
        pending.extend(self.expected.iter().take(self.refeed_left));
        pending.sort_unstable();
        // Positions read ahead by the pipeline but not yet returned are read again on resume.
        s.cursor = self
            .expected
            .get(self.refeed_left)
            .copied()
            .unwrap_or(self.plan.len() as u64);
        s.pending = pending;
        s
    }

    /// Continues from a saved state (drops any prefetched work).
    pub fn restore(&mut self, state: LoaderState) {
        self.pipeline = None;
        self.expected.clear();
        self.refeed_left = 0;
        self.reorder.clear();
        self.ready.clear();
        self.buckets.iter_mut().for_each(Vec::clear);
        self.plan = self.make_plan(state.epoch);
        self.state = state;
    }

    /// The next batch, or `None` at the end of an epoch (the following call starts the next).
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            if self.pipeline.is_none() {
                self.start_pipeline();
            }
            match self.expected.front().copied() {
                Some(pos) => {
                    let item = self.wait_for(pos)?;
                    self.expected.pop_front();
                    self.refeed_left = self.refeed_left.saturating_sub(1);
                    self.accept(pos, item)?;
                }
                None => {
                    // Epoch exhausted: flush partial buckets, then end the epoch.
                    let epoch = self.state.epoch;
                    for (i, b) in self.buckets.iter_mut().enumerate() {
                        if !b.is_empty() && !self.cfg.drop_last {
                            let samples = std::mem::take(b);
                            self.ready.push_back(Batch {
                                bucket: i,
                                target: self.targets[i],
                                samples,
                                epoch,
                            });
                        }
                        b.clear();
                    }
                    if let Some(b) = self.ready.pop_front() {
                        return Ok(Some(b));
                    }
                    self.pipeline = None;
                    self.state = LoaderState {
                        epoch: epoch + 1,
                        cursor: 0,
                        pending: Vec::new(),
                        skipped: self.state.skipped,
                    };
                    self.plan = self.make_plan(epoch + 1);
                    if !self.report.rows.is_empty() {
                        tracing::warn!(
                            skipped = self.report.rows.len(),
                            "epoch {epoch} finished with {} skipped rows",
                            self.report.rows.len()
                        );
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn start_pipeline(&mut self) {
        let mut items: Vec<(u64, ClipRef)> = Vec::new();
        for &p in &self.state.pending {
            if let Some(c) = self.plan.get(p as usize) {
                items.push((p, *c));
            }
        }
        self.state.pending.clear();
        self.refeed_left = items.len();
        let cursor = self.state.cursor as usize;
        items.extend(
            self.plan
                .iter()
                .enumerate()
                .skip(cursor)
                .map(|(i, c)| (i as u64, *c)),
        );
        self.state.cursor = self.plan.len() as u64;
        self.expected = items.iter().map(|(p, _)| *p).collect();
        let targets = self.targets.clone();
        let (temporal, spatial, seed, epoch) = (
            self.cfg.temporal_crop,
            self.cfg.spatial_crop,
            self.cfg.seed,
            self.state.epoch,
        );
        let shards = self.shards.clone();
        let process = Arc::new(move |job: &pipeline::Job| {
            let rec = job.record.as_ref().expect("checked by the worker");
            let loc = || {
                shards[job.clip.shard as usize].location(
                    job.clip.row_group as usize,
                    job.clip.row as usize,
                    Some(rec.clip_id.clone()),
                )
            };
            let clip = decode_record(rec).map_err(|reason| RowError {
                location: loc(),
                reason,
            })?;
            let bucket = nearest_bucket(&targets, clip.frames.w, clip.frames.h);
            let seed = mix_seed(&[seed, epoch, job.pos, 3]);
            let (frames, audio, start_s) =
                transform::fit_clip(&clip, &targets[bucket], temporal, spatial, seed).map_err(
                    |reason| RowError {
                        location: loc(),
                        reason,
                    },
                )?;
            Ok((
                Sample {
                    clip_id: rec.clip_id.clone(),
                    caption: rec.caption.clone(),
                    frames,
                    audio,
                    character_ids: rec.character_ids.clone(),
                    tags: rec.tags.clone(),
                    start_s,
                    pos: job.pos,
                },
                bucket,
            ))
        });
        let cap = self.cfg.batch_size * self.cfg.prefetch_batches.max(1);
        self.pipeline = Some(pipeline::start(
            self.shards.clone(),
            Arc::new(LOADER_COLUMNS.to_vec()),
            items,
            self.cfg.shuffle_window.max(self.cfg.batch_size),
            self.cfg.workers,
            cap,
            process,
        ));
    }

    fn wait_for(&mut self, pos: u64) -> Result<std::result::Result<(Sample, usize), RowError>> {
        loop {
            if let Some(item) = self.reorder.remove(&pos) {
                return Ok(item);
            }
            let rx = &self.pipeline.as_ref().expect("pipeline running").rx;
            match rx.recv() {
                Ok(Output::Item(p, r)) => {
                    self.reorder.insert(p, r);
                }
                Ok(Output::Fatal(e)) => {
                    self.pipeline = None;
                    return Err(e);
                }
                Err(_) => {
                    return Err(DatasetError::Config(format!(
                        "loader pipeline stopped before position {pos}"
                    )));
                }
            }
        }
    }

    fn accept(
        &mut self,
        _pos: u64,
        item: std::result::Result<(Sample, usize), RowError>,
    ) -> Result<()> {
        match item {
            Ok((sample, b)) => {
                self.buckets[b].push(sample);
                if self.buckets[b].len() == self.cfg.batch_size {
                    let samples = std::mem::take(&mut self.buckets[b]);
                    self.ready.push_back(Batch {
                        bucket: b,
                        target: self.targets[b],
                        samples,
                        epoch: self.state.epoch,
                    });
                }
                Ok(())
            }
            Err(e) => match self.cfg.bad_rows {
                BadRowPolicy::Error => {
                    self.pipeline = None;
                    Err(DatasetError::Row(e))
                }
                BadRowPolicy::Skip => {
                    tracing::warn!("skipping bad row: {e}");
                    self.state.skipped += 1;
                    self.report.rows.push(e);
                    Ok(())
                }
            },
        }
    }
}

/// The target whose aspect ratio is closest to `w/h` (ties: the earlier one).
pub fn nearest_bucket(targets: &[Target], w: usize, h: usize) -> usize {
    let a = (w.max(1) as f64 / h.max(1) as f64).ln();
    let mut best = (0, f64::INFINITY);
    for (i, t) in targets.iter().enumerate() {
        let d = ((t.width as f64 / t.height as f64).ln() - a).abs();
        if d < best.1 - 1e-9 {
            best = (i, d);
        }
    }
    best.0
}

sonora_framework::config_enum!(BadRowPolicy {
    "error" => BadRowPolicy::Error,
    "skip" => BadRowPolicy::Skip,
});
