//! What an ingest run did: files used, files skipped and why, clips per split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::REPORT_FILE;

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
    /// Those files, by path relative to the source folder (not media by their extension;
    /// add one to `ingest.extensions` to read it).
    #[serde(default)]
    pub ignored: Vec<String>,
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
