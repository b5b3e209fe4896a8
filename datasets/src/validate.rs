//! `sonora data validate`: a full scan that collects every problem of a dataset.
//!
//! Checks, in order: the manifest is present and parseable and its split counts add up;
//! every shard exists with the manifest's size, SHA-256, row and row-group counts, and a
//! schema this version reads; every row decodes ([`decode_record`]: frame count, size,
//! sample rate, audio no shorter than video, no zero-frame clips), its `duration_s`
//! matches `num_frames / fps`, its `audio_num_samples` and `audio_channels` match the
//! WAV, its split matches its shard's, and clip ids are unique. Rows of a row group are
//! checked in parallel. Nothing stops at the first problem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;
use sonora_framework::fsutil::sha256_file;

use crate::codec::decode_record;
use crate::error::{DatasetError, Result, RowLocation};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::reader::ShardReader;
use crate::schema::ClipRecord;

/// Largest allowed gap between `duration_s` and `num_frames / fps`, seconds.
pub const DURATION_TOLERANCE_S: f64 = 1e-3;

/// One problem, with as precise a location as is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Shard file (relative to the dataset root); `None` for dataset-level problems.
    pub shard: Option<String>,
    /// Row group within the shard.
    pub row_group: Option<usize>,
    /// Row within the row group.
    pub row: Option<usize>,
    /// The row's clip id, when it could be read.
    pub clip_id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    fn dataset(message: impl Into<String>) -> Self {
        Self {
            shard: None,
            row_group: None,
            row: None,
            clip_id: None,
            message: message.into(),
        }
    }

    fn shard(shard: &str, message: impl Into<String>) -> Self {
        Self {
            shard: Some(shard.to_string()),
            ..Self::dataset(message)
        }
    }

    fn row(loc: RowLocation, message: impl Into<String>) -> Self {
        Self {
            shard: Some(loc.shard),
            row_group: Some(loc.row_group),
            row: Some(loc.row),
            clip_id: loc.clip_id,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shard {
            None => write!(f, "dataset: ")?,
            Some(s) => {
                write!(f, "shard {s}")?;
                if let Some(g) = self.row_group {
                    write!(f, ", row group {g}")?;
                }
                if let Some(r) = self.row {
                    write!(f, ", row {r}")?;
                }
                if let Some(id) = &self.clip_id {
                    write!(f, " (clip_id {id})")?;
                }
                write!(f, ": ")?;
            }
        }
        write!(f, "{}", self.message)
    }
}

/// The outcome of a validation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidateReport {
    /// The dataset directory.
    pub dataset: String,
    /// Shards listed in the manifest.
    pub shards: usize,
    /// Rows read and checked.
    pub rows: u64,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Whether no problem was found.
    pub ok: bool,
}

/// Problems shown by [`ValidateReport::render_text`] before it summarises the rest.
const SHOWN: usize = 50;

impl ValidateReport {
    /// A human-readable report: totals and each problem on its own line.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "dataset  {}", self.dataset);
        let _ = writeln!(o, "shards   {}", self.shards);
        let _ = writeln!(o, "rows     {} checked", self.rows);
        if self.ok {
            let _ = writeln!(o, "OK: no problems found");
            return o;
        }
        let _ = writeln!(o, "{} problem(s):", self.problems.len());
        for p in self.problems.iter().take(SHOWN) {
            let _ = writeln!(o, "  - {p}");
        }
        if self.problems.len() > SHOWN {
            let _ = writeln!(
                o,
                "  … and {} more (use --json for all)",
                self.problems.len() - SHOWN
            );
        }
        o
    }
}

/// Checks one decoded row beyond what [`decode_record`] checks. Returns the problems.
fn check_row(rec: &ClipRecord, shard_split: &str) -> Vec<String> {
    let mut out = Vec::new();
    if rec.clip_id.trim().is_empty() {
        out.push("empty clip_id".into());
    }
    if rec.split != shard_split {
        out.push(format!(
            "split is `{}` but the row sits in a `{shard_split}` shard",
            rec.split
        ));
    }
    if !(rec.fps > 0.0 && rec.fps.is_finite()) {
        out.push(format!("fps must be positive, got {}", rec.fps));
    } else if rec.num_frames > 0 {
        let expected = rec.num_frames as f64 / rec.fps;
        if rec.duration_s.is_nan() || (rec.duration_s - expected).abs() > DURATION_TOLERANCE_S {
            out.push(format!(
                "duration_s is {} but num_frames / fps = {} / {} = {expected:.6}",
                rec.duration_s, rec.num_frames, rec.fps
            ));
        }
    }
    match decode_record(rec) {
        Err(e) => out.push(e),
        Ok(clip) => {
            let n = clip.audio.num_frames() as i64;
            if n != rec.audio_num_samples {
                out.push(format!(
                    "declares audio_num_samples {} but the WAV has {n}",
                    rec.audio_num_samples
                ));
            }
            if clip.audio.channels as i32 != rec.audio_channels {
                out.push(format!(
                    "declares audio_channels {} but the WAV has {}",
                    rec.audio_channels, clip.audio.channels
                ));
            }
        }
    }
    out
}

/// Validates the dataset at `dataset_dir`, calling `progress(rows_done, rows_expected)`.
///
/// Every problem found (a missing or unparseable manifest included) is collected into the
/// report, whose `ok` is true when there is none. The only error is a `dataset_dir` that
/// is not a directory at all.
pub fn validate(
    dataset_dir: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ValidateReport> {
    if !dataset_dir.is_dir() {
        return Err(DatasetError::Manifest {
            path: dataset_dir.to_path_buf(),
            message: "dataset directory does not exist".into(),
        });
    }
    let mut report = ValidateReport {
        dataset: dataset_dir.display().to_string(),
        shards: 0,
        rows: 0,
        problems: Vec::new(),
        ok: false,
    };
    let manifest = match Manifest::load(dataset_dir) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(Problem::dataset(e.to_string()));
            return Ok(report);
        }
    };
    report.shards = manifest.shards.len();
    let problems = &mut report.problems;
    if manifest.shards.is_empty() {
        problems.push(Problem::dataset(format!(
            "{MANIFEST_FILE} lists no shards (no clips)"
        )));
    }
    let mut per_split: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &manifest.shards {
        *per_split.entry(s.split.as_str()).or_insert(0) += s.rows;
    }
    let names: BTreeSet<&str> = manifest
        .splits
        .keys()
        .map(String::as_str)
        .chain(per_split.keys().copied())
        .collect();
    for split in names {
        let declared = manifest.splits.get(split).copied().unwrap_or(0);
        let listed = per_split.get(split).copied().unwrap_or(0);
        if declared != listed {
            problems.push(Problem::dataset(format!(
                "{MANIFEST_FILE} counts {declared} clips in split `{split}` but its shards hold {listed}"
            )));
        }
    }

    let expected = manifest.total_clips();
    let done = AtomicU64::new(0);
    let mut ids: HashMap<String, RowLocation> = HashMap::new();
    for info in &manifest.shards {
        let path = dataset_dir.join(&info.path);
        if !path.is_file() {
            problems.push(Problem::shard(
                &info.path,
                "listed in the manifest but the file is missing",
            ));
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.len() != info.bytes => problems.push(Problem::shard(
                &info.path,
                format!(
                    "file is {} bytes but the manifest says {}",
                    m.len(),
                    info.bytes
                ),
            )),
            Ok(_) => {}
            Err(e) => problems.push(Problem::shard(&info.path, format!("cannot stat: {e}"))),
        }
        match sha256_file(&path) {
            Ok(h) if h != info.sha256 => problems.push(Problem::shard(
                &info.path,
                format!("sha256 mismatch: file is {h}, manifest says {} (the shard was altered or corrupted; if it was rewritten on purpose, `sonora data reindex` records it after checking every row)", info.sha256),
            )),
            Ok(_) => {}
            Err(e) => problems.push(Problem::shard(&info.path, format!("cannot read: {e}"))),
        }
        let reader = match ShardReader::open(dataset_dir, &info.path) {
            Ok(r) => r,
            Err(e) => {
                problems.push(Problem::shard(&info.path, e.to_string()));
                continue;
            }
        };
        if reader.num_rows() as u64 != info.rows {
            problems.push(Problem::shard(
                &info.path,
                format!(
                    "holds {} rows but the manifest says {}",
                    reader.num_rows(),
                    info.rows
                ),
            ));
        }
        if reader.num_row_groups() as u64 != info.row_groups {
            problems.push(Problem::shard(
                &info.path,
                format!(
                    "holds {} row groups but the manifest says {}",
                    reader.num_row_groups(),
                    info.row_groups
                ),
            ));
        }
        for g in 0..reader.num_row_groups() {
            let rows = match reader.read_records(g, None) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem {
                        row_group: Some(g),
                        ..Problem::shard(&info.path, e.to_string())
                    });
                    continue;
                }
            };
            let checked: Vec<(RowLocation, Vec<String>)> = rows
                .into_par_iter()
                .enumerate()
                .map(|(r, res)| {
                    let out = match res {
                        Err(e) => (e.location, vec![e.reason]),
                        Ok(rec) => {
                            let msgs = check_row(&rec, &info.split);
                            (reader.location(g, r, Some(rec.clip_id)), msgs)
                        }
                    };
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, expected);
                    out
                })
                .collect();
            for (loc, msgs) in checked {
                report.rows += 1;
                if let Some(id) = &loc.clip_id {
                    if let Some(first) = ids.get(id) {
                        problems.push(Problem::row(
                            loc.clone(),
                            format!("duplicate clip_id (first at {first})"),
                        ));
                    } else {
                        ids.insert(id.clone(), loc.clone());
                    }
                }
                problems.extend(msgs.into_iter().map(|m| Problem::row(loc.clone(), m)));
            }
        }
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::record_from_clip;
    use crate::stats::tests::{tiny_clip, write_dataset, write_records};
    use sonora_framework::media::Mp4Options;

    #[test]
    fn clean_dataset_passes() {
        let dir = tempfile::tempdir().unwrap();
        let clips: Vec<_> = (0..5)
            .map(|i| (tiny_clip(&format!("c{i}"), 4, "x", &[], &[]), "train"))
            .collect();
        write_dataset(dir.path(), &clips);
        let calls = AtomicU64::new(0);
        let rep = validate(dir.path(), &|_, _| {
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        assert!(rep.ok, "{}", rep.render_text());
        assert_eq!((rep.shards, rep.rows), (1, 5));
        assert_eq!(calls.load(Ordering::Relaxed), 5);
        assert!(rep.render_text().contains("OK"));
    }

    #[test]
    fn wrong_num_frames_is_reported_with_clip_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = Vec::new();
        for i in 0..3 {
            let clip = tiny_clip(&format!("c{i}"), 4, "x", &[], &[]);
            let mut rec = record_from_clip(&clip, "train", None, &Mp4Options::default()).unwrap();
            if i == 2 {
                rec.num_frames = 5;
            }
            if i == 1 {
                rec.audio_num_samples += 7;
            }
            records.push(rec);
        }
        write_records(dir.path(), records);
        let rep = validate(dir.path(), &|_, _| {}).unwrap();
        assert!(!rep.ok);
        assert_eq!(rep.rows, 3);
        let bad: Vec<_> = rep
            .problems
            .iter()
            .filter(|p| p.clip_id.as_deref() == Some("c2"))
            .collect();
        assert!(
            bad.iter().any(|p| p.message.contains("declares 5 frames")),
            "{}",
            rep.render_text()
        );
        assert!(
            bad.iter().any(|p| p.message.contains("duration_s")),
            "{}",
            rep.render_text()
        );
        assert_eq!((bad[0].row_group, bad[0].row), (Some(1), Some(0)));
        assert!(
            rep.problems
                .iter()
                .any(|p| p.clip_id.as_deref() == Some("c1")
                    && p.message.contains("audio_num_samples")),
            "{}",
            rep.render_text()
        );
        assert!(
            rep.problems
                .iter()
                .all(|p| p.clip_id.as_deref() != Some("c0"))
        );
        assert!(rep.render_text().contains("clip_id c2"));
    }

    #[test]
    fn altered_shard_fails_checksum_and_missing_manifest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let clips: Vec<_> = (0..3)
            .map(|i| (tiny_clip(&format!("c{i}"), 4, "x", &[], &[]), "val"))
            .collect();
        write_dataset(dir.path(), &clips);
        let m = Manifest::load(dir.path()).unwrap();
        let p = dir.path().join(&m.shards[0].path);
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let rep = validate(dir.path(), &|_, _| {}).unwrap();
        assert!(!rep.ok);
        assert!(
            rep.problems
                .iter()
                .any(|p| p.message.contains("sha256 mismatch")
                    && p.shard.as_deref() == Some(m.shards[0].path.as_str())),
            "{}",
            rep.render_text()
        );
        std::fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
        let rep = validate(dir.path(), &|_, _| {}).unwrap();
        assert!(!rep.ok && rep.problems.len() == 1 && rep.problems[0].shard.is_none());
    }
}
