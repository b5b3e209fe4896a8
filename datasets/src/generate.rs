//! `sonora data synth`: generate the synthetic physics world into a dataset directory,
//! clips in parallel, rows written in index order (so output is byte-identical for a seed).

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media::{self, Mp4Options};

use crate::codec::record_from_clip;
use crate::error::{DatasetError, Result};
use crate::manifest::Manifest;
use crate::synth::{self, Split, SynthConfig};
use crate::writer::{DatasetWriter, WriterOptions};

/// Shard layout settings of a data config (`[shards]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardConfig {
    /// Target shard file size in MiB.
    pub target_shard_mib: f64,
    /// Rows per Parquet row group.
    pub rows_per_group: usize,
    /// zstd compression level.
    pub zstd_level: i32,
    /// H.264 quantiser of stored clips (0–51, lower is better).
    pub video_qp: u8,
}

impl Default for ShardConfig {
    fn default() -> Self {
        let w = WriterOptions::default();
        Self {
            target_shard_mib: (w.target_shard_bytes >> 20) as f64,
            rows_per_group: w.rows_per_group,
            zstd_level: w.zstd_level,
            video_qp: Mp4Options::default().qp,
        }
    }
}

impl ShardConfig {
    /// Writer options for these settings.
    pub fn writer_options(&self, overwrite: bool) -> Result<WriterOptions> {
        if !self.target_shard_mib.is_finite() || self.target_shard_mib <= 0.0 {
            return Err(DatasetError::Config(format!(
                "shards.target_shard_mib must be positive, got {}",
                self.target_shard_mib
            )));
        }
        if self.rows_per_group == 0 {
            return Err(DatasetError::Config(
                "shards.rows_per_group must be at least 1".into(),
            ));
        }
        Ok(WriterOptions {
            target_shard_bytes: (self.target_shard_mib * 1024.0 * 1024.0) as u64,
            rows_per_group: self.rows_per_group,
            zstd_level: self.zstd_level,
            overwrite,
        })
    }

    /// MP4 options for stored clips (video only; audio goes to WAV).
    pub fn mp4_options(&self) -> Mp4Options {
        Mp4Options {
            audio: false,
            qp: self.video_qp,
            ..Mp4Options::default()
        }
    }
}

/// A data config file (`configs/data/*.toml`): the world and the shard layout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthFile {
    /// The synthetic world.
    pub synth: SynthConfig,
    /// Shard layout.
    pub shards: ShardConfig,
}

/// What `synthesize` wrote.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    /// The dataset manifest.
    pub manifest: Manifest,
    /// Characters whose reference images were written under `characters/`.
    pub characters: usize,
}

/// Clips generated per parallel chunk (bounds memory).
const CHUNK: u64 = 64;

/// Generates every split of `file.synth` into `out`, calling `progress(done)` per clip.
pub fn synthesize(
    file: &SynthFile,
    out: &Path,
    overwrite: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SynthSummary> {
    file.synth
        .validate()
        .map_err(|e| DatasetError::Config(e.to_string()))?;
    let opts = file.shards.writer_options(overwrite)?;
    let mp4 = file.shards.mp4_options();
    let mut writer = DatasetWriter::create(out, "sonora data synth", opts)?;
    writer.set_source(serde_json::json!({ "synth": &file.synth, "shards": &file.shards }));
    let mut done = 0u64;
    for split in [Split::Train, Split::Val, Split::Test] {
        let count = file.synth.count(split);
        let mut start = 0;
        while start < count {
            let end = (start + CHUNK).min(count);
            let clips = synth::generate_split_parallel(&file.synth, split, start..end);
            let records: Vec<Result<_>> = clips
                .into_par_iter()
                .map(|c| {
                    let c = c.map_err(|e| DatasetError::Config(e.to_string()))?;
                    record_from_clip(&c.clip, split.as_str(), Some(c.labels), &mp4)
                })
                .collect();
            for r in records {
                writer.write(r?)?;
                done += 1;
                progress(done);
            }
            start = end;
        }
    }
    let characters = write_characters(out)?;
    let manifest = writer.finish()?;
    Ok(SynthSummary {
        manifest,
        characters,
    })
}

/// Writes each roster character's reference images to `out/characters/<id>/ref-N.png`
/// and the roster to `out/characters/roster.json`.
fn write_characters(out: &Path) -> Result<usize> {
    let roster = synth::roster();
    let dir = out.join("characters");
    const SIZE: usize = 64;
    const VIEWS: u32 = 4;
    for ch in &roster {
        for v in 0..VIEWS {
            let rgb = synth::render_reference(ch, SIZE, v);
            let png = media::encode_png(&rgb, SIZE, SIZE).map_err(|e| DatasetError::Encode {
                clip_id: ch.id.clone(),
                message: e.to_string(),
            })?;
            let p = crate::reader::reference_path(out, &ch.id, v as usize);
            write_atomic(&p, &png).map_err(|e| DatasetError::io(&p, e))?;
        }
    }
    let list: Vec<_> = roster
        .iter()
        .map(|c| serde_json::json!({"id": c.id, "name": c.name, "references": (0..VIEWS).map(|v| format!("{}/ref-{v}.png", c.id)).collect::<Vec<_>>()}))
        .collect();
    let p = dir.join("roster.json");
    write_atomic(
        &p,
        serde_json::to_string_pretty(&list)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| DatasetError::io(&p, e))?;
    Ok(roster.len())
}
