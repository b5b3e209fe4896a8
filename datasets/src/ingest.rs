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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonora_framework::fsutil::write_atomic;
use sonora_framework::media;
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

use crate::codec::record_from_clip;
use crate::error::{DatasetError, Result};
use crate::generate::ShardConfig;
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

/// The `[ingest]` section of an ingest config: clip shape, cutting and splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Length of each clip cut from a source video, seconds.
    pub clip_seconds: f64,
    /// Frame rate of the stored clips (frames are sampled from the source).
    pub fps: f64,
    /// Width of the stored clips, px (even).
    pub width: usize,
    /// Height of the stored clips, px (even).
    pub height: usize,
    /// Audio sample rate of the stored clips, Hz.
    pub sample_rate: u32,
    /// Audio channels of the stored clips (1 = mono mix, 2 = stereo).
    pub channels: u16,
    /// At most this many clips from one source file (0 = no limit).
    pub max_clips_per_file: usize,
    /// A trailing piece shorter than this many seconds is dropped.
    pub min_clip_seconds: f64,
    /// Fraction of source files assigned to `val`.
    pub val_fraction: f64,
    /// Fraction of source files assigned to `test`.
    pub test_fraction: f64,
    /// Video file extensions to ingest (case-insensitive, without the dot).
    pub extensions: Vec<String>,
    /// Skip a video whose decoded frames would exceed this many MiB (decoding is in memory).
    pub max_decoded_mib: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            clip_seconds: 2.0,
            fps: 12.0,
            width: 64,
            height: 64,
            sample_rate: 16_000,
            channels: 1,
            max_clips_per_file: 0,
            min_clip_seconds: 1.0,
            val_fraction: 0.05,
            test_fraction: 0.05,
            extensions: vec!["mp4".into(), "m4v".into(), "mov".into()],
            max_decoded_mib: 4096,
        }
    }
}

impl IngestConfig {
    /// Checks every value, naming the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DatasetError::Config(m));
        if !(self.clip_seconds > 0.0 && self.clip_seconds.is_finite()) {
            return bad(format!(
                "ingest.clip_seconds must be positive, got {}",
                self.clip_seconds
            ));
        }
        if !(self.fps > 0.0 && self.fps.is_finite()) {
            return bad(format!("ingest.fps must be positive, got {}", self.fps));
        }
        for (k, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v % 2 != 0 {
                return bad(format!(
                    "ingest.{k} must be a positive even number (H.264 4:2:0), got {v}"
                ));
            }
        }
        if self.sample_rate == 0 {
            return bad("ingest.sample_rate must be positive".into());
        }
        if !matches!(self.channels, 1 | 2) {
            return bad(format!(
                "ingest.channels must be 1 or 2, got {}",
                self.channels
            ));
        }
        if !(self.min_clip_seconds >= 0.0 && self.min_clip_seconds <= self.clip_seconds) {
            return bad(format!(
                "ingest.min_clip_seconds must be between 0 and ingest.clip_seconds ({}), got {}",
                self.clip_seconds, self.min_clip_seconds
            ));
        }
        if self.clip_seconds * self.fps < 1.0 {
            return bad(format!(
                "ingest.clip_seconds ({}) at ingest.fps ({}) is less than one frame",
                self.clip_seconds, self.fps
            ));
        }
        for (k, v) in [
            ("val_fraction", self.val_fraction),
            ("test_fraction", self.test_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("ingest.{k} must be within [0, 1], got {v}"));
            }
        }
        if self.val_fraction + self.test_fraction > 1.0 {
            return bad(format!(
                "ingest.val_fraction + ingest.test_fraction must not exceed 1, got {}",
                self.val_fraction + self.test_fraction
            ));
        }
        if self.extensions.is_empty() {
            return bad("ingest.extensions must list at least one video extension".into());
        }
        Ok(())
    }

    /// Whether `ext` (no dot, any case) is one of the video extensions to ingest.
    pub fn accepts(&self, ext: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.trim_start_matches('.').eq_ignore_ascii_case(ext))
    }

    /// The split (`train`, `val`, `test`) of a source file, from a hash of its relative path.
    pub fn split_for(&self, rel_path: &str) -> &'static str {
        let h = Sha256::digest(rel_path.as_bytes());
        let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
        let u = x as f64 / 18_446_744_073_709_551_616.0; // 2^64
        if u < self.test_fraction {
            "test"
        } else if u < self.test_fraction + self.val_fraction {
            "val"
        } else {
            "train"
        }
    }

    /// Clip starts and lengths (seconds) cut from a source lasting `duration_s`.
    pub fn plan_pieces(&self, duration_s: f64) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for k in 0usize.. {
            if self.max_clips_per_file > 0 && k >= self.max_clips_per_file {
                break;
            }
            let start = k as f64 * self.clip_seconds;
            if start >= duration_s - 1e-9 {
                break;
            }
            let len = (duration_s - start).min(self.clip_seconds);
            if len + 1e-9 < self.min_clip_seconds || self.frames_for(len) == 0 {
                break;
            }
            out.push((start, len));
        }
        out
    }

    fn frames_for(&self, len_s: f64) -> usize {
        (len_s * self.fps + 1e-6).floor() as usize
    }
}

/// An ingest config file: `[ingest]` and the shard layout `[shards]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestFile {
    /// Clip shape, cutting and splits.
    pub ingest: IngestConfig,
    /// Shard layout.
    pub shards: ShardConfig,
}

/// A file that was not ingested, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Path relative to the source folder.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// One source file that yielded clips.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestedFile {
    /// Path relative to the source folder.
    pub path: String,
    /// Split all its clips went to.
    pub split: String,
    /// Clips written from it.
    pub clips: u64,
    /// Source duration, seconds.
    pub duration_s: f64,
    /// Whether a caption was found for it.
    pub captioned: bool,
    /// Whether it had an audio track.
    pub has_audio: bool,
}

/// What an ingest did: files seen, clips per split, files skipped with reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Source folder.
    pub src: String,
    /// Output dataset directory.
    pub out: String,
    /// Regular files found under the source folder.
    pub files_seen: u64,
    /// Files that yielded at least one clip.
    pub files_ingested: u64,
    /// Files that are not media at all (unknown extensions), left alone.
    pub files_ignored: u64,
    /// Clips written per split.
    pub clips_written: BTreeMap<String, u64>,
    /// Clips written in total.
    pub clips_total: u64,
    /// Media files not ingested, with the reason.
    pub skipped: Vec<SkippedFile>,
    /// Every file that yielded clips.
    pub ingested: Vec<IngestedFile>,
    /// Keys of the captions file that matched no ingested file.
    pub unmatched_captions: Vec<String>,
}

impl IngestReport {
    /// Path of the report inside the output directory.
    pub fn report_path(&self) -> PathBuf {
        Path::new(&self.out).join(REPORT_FILE)
    }
}

/// Captions keyed by source file: the path relative to the source folder or the bare name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Captions {
    by_key: HashMap<String, String>,
}

fn normalize_key(k: &str) -> String {
    let k = k.trim().replace('\\', "/");
    let mut k = k.as_str();
    while let Some(rest) = k.strip_prefix("./") {
        k = rest;
    }
    k.to_string()
}

impl Captions {
    /// Loads a captions file: JSONL (`.jsonl`, `.ndjson`, `.json`, or content starting with
    /// `{`) with `file` and `caption` keys, otherwise CSV with a `file,caption` header.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let jsonl = match ext.as_str() {
            "jsonl" | "ndjson" | "json" => true,
            "csv" => false,
            _ => text
                .trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('{'),
        };
        if jsonl {
            Self::parse_jsonl(&text, path)
        } else {
            Self::parse_csv(&text, path)
        }
    }

    /// Parses CSV text with a header naming `file` and `caption` (other columns ignored;
    /// quoted fields may hold commas, doubled quotes and newlines).
    pub fn parse_csv(text: &str, path: &Path) -> Result<Self> {
        let err = |line: usize, m: String| {
            DatasetError::Config(format!("{}: line {line}: {m}", path.display()))
        };
        let records = parse_csv_records(text).map_err(|(line, m)| err(line, m))?;
        let mut it = records.into_iter();
        let Some((hline, header)) = it.next() else {
            return Err(DatasetError::Config(format!(
                "{}: empty captions file (expected a `file,caption` header)",
                path.display()
            )));
        };
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let (Some(fi), Some(ci)) = (find("file"), find("caption")) else {
            return Err(err(
                hline,
                format!("the header must name `file` and `caption` columns, found {header:?}"),
            ));
        };
        let mut out = Self::default();
        for (line, fields) in it {
            if fields.len() != header.len() {
                return Err(err(
                    line,
                    format!(
                        "expected {} fields like the header, found {}",
                        header.len(),
                        fields.len()
                    ),
                ));
            }
            out.insert(&fields[fi], &fields[ci])
                .map_err(|m| err(line, m))?;
        }
        Ok(out)
    }

    /// Parses JSON Lines: one `{"file": "...", "caption": "..."}` object per line.
    pub fn parse_jsonl(text: &str, path: &Path) -> Result<Self> {
        let mut out = Self::default();
        for (i, line) in text.lines().enumerate() {
            let err = |m: String| {
                DatasetError::Config(format!("{}: line {}: {m}", path.display(), i + 1))
            };
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
            let obj = v
                .as_object()
                .ok_or_else(|| err("expected a JSON object".into()))?;
            let file = obj
                .get("file")
                .and_then(|f| f.as_str())
                .ok_or_else(|| err("missing string field `file`".into()))?;
            let caption = match obj.get("caption") {
                Some(serde_json::Value::String(s)) => s.as_str(),
                Some(serde_json::Value::Null) => "",
                Some(_) => return Err(err("field `caption` must be a string".into())),
                None => return Err(err("missing field `caption`".into())),
            };
            out.insert(file, caption).map_err(err)?;
        }
        Ok(out)
    }

    fn insert(&mut self, file: &str, caption: &str) -> std::result::Result<(), String> {
        let key = normalize_key(file);
        if key.is_empty() {
            return Err("empty `file` value".into());
        }
        if let Some(prev) = self.by_key.insert(key.clone(), caption.trim().to_string()) {
            tracing::warn!(
                "captions: `{key}` appears more than once; keeping the later caption (was {prev:?})"
            );
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The caption of a file given its path relative to the source folder: an entry for the
    /// relative path wins over one for the bare file name. Returns the matched key too.
    pub fn lookup(&self, rel_path: &str) -> Option<(&str, &str)> {
        let rel = normalize_key(rel_path);
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        for k in [rel.as_str(), name] {
            if let Some((k, v)) = self.by_key.get_key_value(k) {
                return Some((k.as_str(), v.as_str()));
            }
        }
        None
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.by_key.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}

/// CSV records as `(line, fields)`.
type CsvRecords = Vec<(usize, Vec<String>)>;

/// Splits CSV text into records of fields (the `csv` crate: quoted fields may hold
/// commas, doubled quotes and newlines), each with the line it starts on. Blank lines are
/// skipped; an error carries the line number and what is wrong.
fn parse_csv_records(text: &str) -> std::result::Result<CsvRecords, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            (line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue;
        }
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    // The csv crate closes a quote left open at the end of the file silently; an odd
    // number of quote characters means the last record's quoted field never ended.
    if text.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
        let line = out.last().map_or(1, |r| r.0);
        return Err((line, "unterminated quoted field".into()));
    }
    Ok(out)
}

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
struct FileClips {
    records: Vec<ClipRecord>,
    duration_s: f64,
    has_audio: bool,
}

/// Decodes, cuts and encodes one source video. An `Err` is the reason it is skipped.
fn ingest_file(
    path: &Path,
    rel: &str,
    id_base: &str,
    split: &str,
    caption: Option<&str>,
    file: &IngestFile,
) -> std::result::Result<FileClips, String> {
    let cfg = &file.ingest;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let info = media::probe_mp4(&bytes).map_err(|e| e.to_string())?;
    let decoded_mib = (info.width as u64 * info.height as u64 * 3 * info.num_frames as u64) >> 20;
    if decoded_mib > cfg.max_decoded_mib {
        return Err(format!(
            "{} frames of {}x{} decode to {decoded_mib} MiB, over ingest.max_decoded_mib ({}); split the file or raise the limit",
            info.num_frames, info.width, info.height, cfg.max_decoded_mib
        ));
    }
    let decoded = media::decode_mp4(&bytes).map_err(|e| e.to_string())?;
    drop(bytes);
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
            } else {
                report.files_ignored += 1;
                continue;
            }
            done += 1;
            progress(done, media_total);
            continue;
        }
        let caption = caps.as_ref().and_then(|c| c.lookup(rel));
        let split = cfg.split_for(rel);
        let mut id_base = sanitize_id(rel);
        if used_ids.contains(&id_base) {
            id_base = format!(
                "{id_base}_{}",
                &hex::encode(Sha256::digest(rel.as_bytes()))[..8]
            );
        }
        match ingest_file(path, rel, &id_base, split, caption.map(|(_, c)| c), file) {
            Ok(fc) => {
                used_ids.insert(id_base);
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
                    path: rel.clone(),
                    split: split.to_string(),
                    clips: n,
                    duration_s: fc.duration_s,
                    captioned: caption.is_some(),
                    has_audio: fc.has_audio,
                });
            }
            Err(reason) => {
                tracing::warn!("skipping {rel}: {reason}");
                report.skipped.push(skip(&reason));
            }
        }
        done += 1;
        progress(done, media_total);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::Dataset;

    fn test_video(t: usize, fps: f64, with_audio: bool) -> Vec<u8> {
        let (h, w) = (32, 48);
        let mut frames = Frames::zeros(t, h, w);
        for k in 0..t {
            for (i, px) in frames.frame_mut(k).chunks_mut(3).enumerate() {
                px.copy_from_slice(&[(k * 9) as u8, (i % w * 5) as u8, (i / w * 7) as u8]);
            }
        }
        let sr = 16_000u32;
        let n = (t as f64 / fps * sr as f64).round() as usize;
        let samples = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let clip = Clip {
            frames,
            audio: Audio {
                samples,
                channels: 1,
                sample_rate: sr,
            },
            fps,
            caption: String::new(),
            metadata: ClipMetadata::default(),
        };
        let opts = media::Mp4Options {
            audio: with_audio,
            ..media::Mp4Options::default()
        };
        media::encode_mp4(&clip, &opts).expect("encode test video")
    }

    fn small_config() -> IngestFile {
        IngestFile {
            ingest: IngestConfig {
                clip_seconds: 1.0,
                fps: 8.0,
                width: 16,
                height: 16,
                sample_rate: 8_000,
                min_clip_seconds: 0.3,
                val_fraction: 0.0,
                test_fraction: 0.0,
                ..IngestConfig::default()
            },
            shards: ShardConfig {
                rows_per_group: 4,
                ..ShardConfig::default()
            },
        }
    }

    #[test]
    fn csv_captions_handle_quotes_commas_and_errors() {
        let p = Path::new("caps.csv");
        let c = Captions::parse_csv(
            "file,caption\n\"a.mp4\",\"a cat, a dog\"\nsub/b.mp4,\"say \"\"hi\"\"\"\r\n\nc.mp4,\"two\nlines\"\n",
            p,
        )
        .unwrap();
        assert_eq!(c.lookup("x/a.mp4").unwrap().1, "a cat, a dog");
        assert_eq!(c.lookup("sub/b.mp4").unwrap().1, "say \"hi\"");
        assert_eq!(c.lookup("c.mp4").unwrap().1, "two\nlines");
        assert!(c.lookup("b.mp4").is_none());
        let e = Captions::parse_csv("file,caption\na.mp4,ok\nb.mp4,\"open\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("caps.csv") && e.contains("line 3") && e.contains("unterminated"),
            "{e}"
        );
        let e = Captions::parse_csv("file,caption\na.mp4,ok,extra\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = Captions::parse_csv("name,text\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("`file`"), "{e}");
    }

    #[test]
    fn jsonl_captions_and_errors() {
        let p = Path::new("caps.jsonl");
        let c =
            Captions::parse_jsonl("{\"file\":\"./v/a.mp4\",\"caption\":\"hello\"}\n\n", p).unwrap();
        assert_eq!(c.lookup("v/a.mp4").unwrap().1, "hello");
        let e = Captions::parse_jsonl("{\"file\":\"a\",\"caption\":\"x\"}\n{oops\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("caps.jsonl") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn pieces_drop_short_tail_and_respect_max() {
        let mut c = IngestConfig {
            clip_seconds: 2.0,
            min_clip_seconds: 1.0,
            ..IngestConfig::default()
        };
        assert_eq!(c.plan_pieces(5.5), vec![(0.0, 2.0), (2.0, 2.0), (4.0, 1.5)]);
        assert_eq!(c.plan_pieces(4.5), vec![(0.0, 2.0), (2.0, 2.0)]);
        c.max_clips_per_file = 1;
        assert_eq!(c.plan_pieces(5.5), vec![(0.0, 2.0)]);
        let s = IngestConfig {
            val_fraction: 0.3,
            test_fraction: 0.3,
            ..IngestConfig::default()
        };
        assert_eq!(s.split_for("a/b.mp4"), s.split_for("a/b.mp4"));
        assert!(
            IngestConfig {
                width: 15,
                ..IngestConfig::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn ingests_folder_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        // 2.5 s → clips at 0, 1, 2 (trailing 0.5 s ≥ 0.3 s kept).
        std::fs::write(src.join("sub/long.mp4"), test_video(25, 10.0, true)).unwrap();
        // 1.2 s without audio → one clip, the 0.2 s tail dropped.
        std::fs::write(src.join("short.mp4"), test_video(12, 10.0, false)).unwrap();
        std::fs::write(
            src.join("bad.mp4"),
            (0..4000u32)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let wav = media::encode_wav(&Audio::silence(800, 1, 8000)).unwrap();
        std::fs::write(src.join("song.wav"), wav).unwrap();
        std::fs::write(src.join("notes.txt"), "hello").unwrap();
        let caps = dir.path().join("caps.csv");
        std::fs::write(
            &caps,
            "file,caption\nsub/long.mp4,\"a gradient, moving\"\nnothere.mp4,x\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let rep = ingest(&src, &out, &small_config(), Some(&caps), false, &|_, _| {}).unwrap();

        assert_eq!(rep.files_seen, 5);
        assert_eq!(rep.files_ignored, 1);
        assert_eq!(rep.files_ingested, 2);
        assert_eq!(rep.clips_total, 4);
        assert_eq!(rep.clips_written.get("train"), Some(&4));
        let reasons: BTreeMap<_, _> = rep
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(!reasons["bad.mp4"].is_empty());
        assert_eq!(reasons["song.wav"], "audio-only file");
        assert_eq!(rep.unmatched_captions, vec!["nothere.mp4".to_string()]);

        let on_disk: IngestReport =
            serde_json::from_str(&std::fs::read_to_string(out.join(REPORT_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk, rep);

        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.manifest.total_clips(), 4);
        assert_eq!(ds.manifest.skipped, 2);
        let mut recs = Vec::new();
        for s in ds.shards(None) {
            let r = ds.open_shard(&s).unwrap();
            for g in 0..r.num_row_groups() {
                recs.extend(
                    r.read_records(g, None)
                        .unwrap()
                        .into_iter()
                        .map(|x| x.unwrap()),
                );
            }
        }
        recs.sort_by(|a, b| a.clip_id.cmp(&b.clip_id));
        let ids: Vec<_> = recs.iter().map(|r| r.clip_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "short_mp4-000",
                "sub_long_mp4-000",
                "sub_long_mp4-001",
                "sub_long_mp4-002"
            ]
        );
        let long: Vec<_> = recs
            .iter()
            .filter(|r| r.source_path.as_deref() == Some("sub/long.mp4"))
            .collect();
        let starts: Vec<f64> = long.iter().map(|r| r.source_start_s.unwrap()).collect();
        for (s, want) in starts.iter().zip([0.0, 1.0, 2.0]) {
            assert!((s - want).abs() < 1e-3, "{starts:?}");
        }
        assert_eq!(long[0].caption, "a gradient, moving");
        assert_eq!(long[0].tags, vec!["ingested"]);
        assert_eq!(long[0].num_frames, 8);
        assert_eq!(long[2].num_frames, 4);
        let short = &recs[0];
        assert_eq!(short.caption, "");
        assert_eq!(short.tags, vec!["ingested", "uncaptioned", "no-audio"]);
        for r in &recs {
            let clip = crate::codec::decode_record(r).unwrap();
            assert_eq!((clip.frames.h, clip.frames.w), (16, 16));
            assert_eq!(clip.audio.sample_rate, 8000);
        }
    }

    #[test]
    fn nothing_ingestible_is_an_error_with_report() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("bad.mp4"), b"not an mp4").unwrap();
        let out = dir.path().join("out");
        let e = ingest(&src, &out, &small_config(), None, false, &|_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("no clips"), "{e}");
        assert!(out.join(REPORT_FILE).is_file());
    }
}
