//! `sonora data ingest`: a folder of media files into a clip dataset.
//!
//! Every video file under the source folder (searched recursively, in sorted order) is
//! decoded, cut into consecutive clips of `ingest.clip_seconds`, sampled at the target
//! fps, resized (cover, then centre crop) to the target size, and its sound resampled to
//! the target rate and channel count. All clips of one source file land in the same
//! split, chosen by hashing the file's relative path, so a re-ingest is deterministic and
//! no source leaks across splits.
//!
//! A file that cannot be read or decoded never aborts the run: it is listed in the
//! report (`ingest_report.json` in the output directory) with the reason, and the rest
//! of the folder is ingested. Problems in the captions file, by contrast, are hard errors
//! naming the file and line, since a silently mis-captioned dataset is worse than none.

mod captions;
mod config;
mod report;
#[cfg(test)]
mod tests;

pub use captions::Captions;
pub use config::{IngestConfig, IngestFile};
pub use report::{IngestReport, IngestedFile, SkippedFile};

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use sha2::{Digest, Sha256};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media::{self, DecodeOptions, DecodedMp4, MediaInput};
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

use crate::codec::record_from_clip;
use crate::error::{DatasetError, Result};
use crate::loader::transform::{CropMode, Target, fit_clip};
use crate::manifest::Manifest;
use crate::schema::ClipRecord;
use crate::writer::DatasetWriter;

/// File name of the ingest report inside the output dataset directory.
pub const REPORT_FILE: &str = "ingest_report.json";

/// Extensions of audio-only files: recognised, but not clips (listed as skipped).
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac"];

/// Extensions of still images: recognised, but not clips (listed as skipped).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp"];

/// Tag carried by every ingested clip.
pub const TAG_INGESTED: &str = "ingested";
/// Tag of clips whose source has no caption in the captions file.
pub const TAG_UNCAPTIONED: &str = "uncaptioned";
/// Tag of clips whose source video has no audio track (the clip gets silence).
pub const TAG_NO_AUDIO: &str = "no-audio";

/// A clip id fragment from a relative path: ASCII letters, digits, `-` and `_` kept,
/// everything else `_`.
pub fn sanitize_id(rel_path: &str) -> String {
    rel_path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every regular file under `dir` (recursive, sorted by name at each level; hidden entries
/// and `exclude` skipped), as (full path, relative path with `/` separators).
fn walk(dir: &Path, exclude: Option<&Path>) -> Result<Vec<(PathBuf, String)>> {
    fn go(
        dir: &Path,
        rel: &str,
        exclude: Option<&Path>,
        out: &mut Vec<(PathBuf, String)>,
    ) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| DatasetError::io(dir, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| DatasetError::io(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type().map_err(|err| DatasetError::io(&path, err))?;
            if ft.is_dir() {
                if exclude.is_some_and(|x| path.canonicalize().is_ok_and(|p| p == x)) {
                    continue;
                }
                go(&path, &rel, exclude, out)?;
            } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
                out.push((path, rel));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(dir, "", exclude, &mut out)?;
    Ok(out)
}

/// What one source video became.
pub(crate) struct FileClips {
    pub(crate) records: Vec<ClipRecord>,
    pub(crate) duration_s: f64,
    pub(crate) has_audio: bool,
}

/// Decodes one source video: through FFmpeg when this build has it (any container and
/// codec, frames shrunk on the way to what still covers the target size), else with
/// sonora's own MP4 decoder (H.264 MP4 only). An `Err` is the reason it is skipped.
fn decode_source(
    source: MediaInput,
    cfg: &IngestConfig,
) -> std::result::Result<DecodedMp4, String> {
    if media::FFMPEG {
        let opts = DecodeOptions {
            cover: Some((cfg.height, cfg.width)),
            max_frame_bytes: Some(cfg.max_decoded_mib << 20),
        };
        return media::decode_media(source, &opts).map_err(|e| match e {
            media::MediaError::Invalid(m) => {
                format!("{m} (ingest.max_decoded_mib); split the file or raise the limit")
            }
            e => e.to_string(),
        });
    }
    decode_builtin(source, cfg)
}

/// Sonora's own MP4 decoder (builds without FFmpeg), its errors saying what the build lacks.
fn decode_builtin(
    source: MediaInput,
    cfg: &IngestConfig,
) -> std::result::Result<DecodedMp4, String> {
    let bytes = match source {
        MediaInput::Path(p) => std::fs::read(&p).map_err(|e| format!("cannot read: {e}"))?,
        MediaInput::Bytes { bytes, .. } => bytes,
    };
    let hint = "this build reads only H.264 MP4 (rebuild with the cargo feature `ffmpeg` for other formats)";
    let info = media::probe_mp4(&bytes).map_err(|e| format!("{e}; {hint}"))?;
    let decoded_mib = (info.width as u64 * info.height as u64 * 3 * info.num_frames as u64) >> 20;
    if decoded_mib > cfg.max_decoded_mib {
        return Err(format!(
            "{} frames of {}x{} decode to {decoded_mib} MiB, over ingest.max_decoded_mib ({}); split the file or raise the limit",
            info.num_frames, info.width, info.height, cfg.max_decoded_mib
        ));
    }
    media::decode_mp4(&bytes).map_err(|e| format!("{e}; {hint}"))
}

/// Decodes, cuts and encodes one source video. An `Err` is the reason it is skipped.
pub(crate) fn ingest_file(
    source: MediaInput,
    rel: &str,
    id_base: &str,
    split: &str,
    caption: Option<&str>,
    extra_tags: &[String],
    file: &IngestFile,
) -> std::result::Result<FileClips, String> {
    let cfg = &file.ingest;
    let decoded = decode_source(source, cfg)?;
    let src = decoded.frames;
    if src.t == 0 || src.h == 0 || src.w == 0 {
        return Err("the video has no frames".into());
    }
    let src_fps = decoded.fps;
    if !(src_fps > 0.0 && src_fps.is_finite()) {
        return Err(format!("the video's frame rate ({src_fps}) is not usable"));
    }
    let duration_s = src.t as f64 / src_fps;
    let (audio, has_audio) = match decoded.audio {
        Some(a) if a.num_frames() > 0 && a.sample_rate > 0 && a.channels > 0 => (a, true),
        _ => {
            let n = (duration_s * cfg.sample_rate as f64).ceil() as usize;
            (Audio::silence(n, cfg.channels, cfg.sample_rate), false)
        }
    };
    let pieces = cfg.plan_pieces(duration_s);
    if pieces.is_empty() {
        return Err(format!(
            "the video lasts {duration_s:.2} s, shorter than ingest.min_clip_seconds ({} s)",
            cfg.min_clip_seconds
        ));
    }
    let mut tags = vec![TAG_INGESTED.to_string()];
    if caption.is_none() {
        tags.push(TAG_UNCAPTIONED.into());
    }
    if !has_audio {
        tags.push(TAG_NO_AUDIO.into());
    }
    tags.extend(
        extra_tags
            .iter()
            .filter(|t| !tags.contains(t))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mp4 = file.shards.mp4_options();
    let records = pieces
        .par_iter()
        .enumerate()
        .map(|(k, &(start, len))| {
            let target = Target {
                frames: cfg.frames_for(len).max(1),
                height: cfg.height,
                width: cfg.width,
                fps: cfg.fps,
                sample_rate: cfg.sample_rate,
                channels: cfg.channels,
            };
            let (sub, t0) = sub_clip(&src, src_fps, &audio, start, len);
            let (frames, audio, _) = fit_clip(&sub, &target, CropMode::Start, CropMode::Center, 0)
                .map_err(|e| format!("clip {k}: {e}"))?;
            let clip = Clip {
                frames,
                audio,
                fps: cfg.fps,
                caption: caption.unwrap_or("").to_string(),
                metadata: ClipMetadata {
                    clip_id: format!("{id_base}-{k:03}"),
                    tags: tags.clone(),
                    character_ids: Vec::new(),
                    source_path: Some(rel.to_string()),
                    source_start_s: Some((t0 * 1e6).round() / 1e6),
                    extra: Default::default(),
                },
            };
            record_from_clip(&clip, split, None, &mp4).map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok(FileClips {
        records,
        duration_s,
        has_audio,
    })
}

/// The part of a decoded source covering `[start, start + len)`, beginning at the source
/// frame shown at `start`; returns it with the exact source time of its first frame.
fn sub_clip(src: &Frames, src_fps: f64, audio: &Audio, start: f64, len: f64) -> (Clip, f64) {
    let j0 = ((start * src_fps + 1e-3).floor().max(0.0) as usize).min(src.t - 1);
    let t0 = j0 as f64 / src_fps;
    let j1 = ((((t0 + len) * src_fps).ceil() as usize) + 1).clamp(j0 + 1, src.t);
    let fl = src.frame_len();
    let frames = Frames {
        data: src.data[j0 * fl..j1 * fl].to_vec(),
        t: j1 - j0,
        h: src.h,
        w: src.w,
    };
    let ch = audio.channels.max(1) as usize;
    let sr = audio.sample_rate as f64;
    let n = audio.num_frames();
    let a0 = ((t0 * sr).round() as usize).min(n);
    let a1 = ((((t0 + len) * sr).ceil() as usize) + 1).clamp(a0, n);
    let audio = Audio {
        samples: audio.samples[a0 * ch..a1 * ch].to_vec(),
        channels: audio.channels,
        sample_rate: audio.sample_rate,
    };
    let clip = Clip {
        frames,
        audio,
        fps: src_fps,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    };
    (clip, t0)
}

fn extension(rel: &str) -> String {
    Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Ingests every video under `src_dir` into a dataset at `out`.
///
/// `captions` is an optional CSV/JSONL captions file (see [`Captions::load`]).
/// `progress(done, total)` is called after each media file. Unreadable files are skipped
/// and listed in the returned report, which is also written to `out/ingest_report.json`.
/// It is an error when no clip at all could be ingested (the report is still written).
pub fn ingest(
    src_dir: &Path,
    out: &Path,
    file: &IngestFile,
    captions: Option<&Path>,
    overwrite: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<IngestReport> {
    let cfg = &file.ingest;
    cfg.validate()?;
    if !src_dir.is_dir() {
        return Err(DatasetError::Config(format!(
            "{}: source folder does not exist",
            src_dir.display()
        )));
    }
    let caps = match captions {
        Some(p) => Some(Captions::load(p)?),
        None => None,
    };
    let exclude = out.canonicalize().ok();
    let captions_file = captions.and_then(|p| p.canonicalize().ok());
    let files = walk(src_dir, exclude.as_deref())?;
    let opts = file.shards.writer_options(overwrite)?;
    let mut writer = DatasetWriter::create(out, "sonora data ingest", opts)?;
    writer.set_source(serde_json::json!({
        "ingest": {
            "src": src_dir.display().to_string(),
            "captions": captions.map(|p| p.display().to_string()),
            "config": cfg,
        },
        "shards": &file.shards,
    }));

    let mut report = IngestReport {
        src: src_dir.display().to_string(),
        out: out.display().to_string(),
        files_seen: files.len() as u64,
        files_ingested: 0,
        files_ignored: 0,
        ignored: Vec::new(),
        clips_written: BTreeMap::new(),
        clips_total: 0,
        skipped: Vec::new(),
        ingested: Vec::new(),
        unmatched_captions: Vec::new(),
    };
    let media_total = files
        .iter()
        .filter(|(_, rel)| {
            let ext = extension(rel);
            cfg.accepts(&ext)
                || AUDIO_EXTENSIONS.contains(&ext.as_str())
                || IMAGE_EXTENSIONS.contains(&ext.as_str())
        })
        .count() as u64;
    let mut used_keys: HashSet<String> = HashSet::new();
    let mut used_ids: HashSet<String> = HashSet::new();
    let mut done = 0u64;
    // the media files to decode, each with its id, split and caption
    let mut plan = Vec::new();
    for (path, rel) in &files {
        let ext = extension(rel);
        let skip = |reason: &str| SkippedFile {
            path: rel.clone(),
            reason: reason.to_string(),
        };
        if !cfg.accepts(&ext) {
            if AUDIO_EXTENSIONS.contains(&ext.as_str()) {
                report.skipped.push(skip("audio-only file"));
            } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                report.skipped.push(skip("still image (not a clip)"));
            } else if captions_file.is_some() && path.canonicalize().ok() == captions_file {
                continue; // the captions file is input, not an ignored file
            } else {
                report.files_ignored += 1;
                report.ignored.push(rel.clone());
                continue;
            }
            done += 1;
            progress(done, media_total);
            continue;
        }
        let mut id_base = sanitize_id(rel);
        if !used_ids.insert(id_base.clone()) {
            id_base = format!(
                "{id_base}_{}",
                &hex::encode(Sha256::digest(rel.as_bytes()))[..8]
            );
            used_ids.insert(id_base.clone());
        }
        let caption = caps.as_ref().and_then(|c| c.lookup(rel));
        plan.push((path, rel, id_base, cfg.split_for(rel), caption));
    }
    // decoded a few files at a time (one per core), written in the walk's order
    for chunk in plan.chunks(rayon::current_num_threads().max(1)) {
        let results: Vec<_> = chunk
            .par_iter()
            .map(|(path, rel, id_base, split, caption)| {
                let source = MediaInput::Path(path.to_path_buf());
                ingest_file(
                    source,
                    rel,
                    id_base,
                    split,
                    caption.map(|(_, c)| c),
                    &[],
                    file,
                )
            })
            .collect();
        for ((_, rel, _, split, caption), res) in chunk.iter().zip(results) {
            match res {
                Ok(fc) => {
                    if let Some((k, _)) = caption {
                        used_keys.insert(k.to_string());
                    }
                    let n = fc.records.len() as u64;
                    for r in fc.records {
                        writer.write(r)?;
                    }
                    *report.clips_written.entry(split.to_string()).or_insert(0) += n;
                    report.clips_total += n;
                    report.files_ingested += 1;
                    report.ingested.push(IngestedFile {
                        path: rel.to_string(),
                        split: split.to_string(),
                        clips: n,
                        duration_s: fc.duration_s,
                        captioned: caption.is_some(),
                        has_audio: fc.has_audio,
                    });
                }
                Err(reason) => {
                    tracing::warn!("skipping {rel}: {reason}");
                    report.skipped.push(SkippedFile {
                        path: rel.to_string(),
                        reason,
                    });
                }
            }
            done += 1;
            progress(done, media_total);
        }
    }
    if let Some(c) = &caps {
        report.unmatched_captions = c
            .keys()
            .into_iter()
            .filter(|k| !used_keys.contains(*k))
            .map(str::to_string)
            .collect();
    }
    writer.note_skipped(report.skipped.len() as u64);
    let report_path = out.join(REPORT_FILE);
    let text = serde_json::to_string_pretty(&report).expect("report serialises");
    write_atomic(&report_path, text.as_bytes()).map_err(|e| DatasetError::io(&report_path, e))?;
    if report.clips_total == 0 {
        return Err(DatasetError::Config(format!(
            "no clips were ingested from {} ({} files seen, {} skipped); see {}",
            src_dir.display(),
            report.files_seen,
            report.skipped.len(),
            report_path.display()
        )));
    }
    let _: Manifest = writer.finish()?;
    Ok(report)
}
