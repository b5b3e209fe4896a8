//! What the FFmpeg decoder is given and what it reports (defined with or without the
//! `ffmpeg` feature, so callers compile either way and learn at run time).

use std::path::PathBuf;

/// Where the media comes from: a file, or a file's bytes already in memory (a Parquet
/// cell) with its name as a format hint.
#[derive(Debug)]
pub enum MediaInput {
    /// A file on disk.
    Path(PathBuf),
    /// A whole file's bytes; the name (if known) helps FFmpeg pick the container.
    Bytes {
        /// The file's content.
        bytes: Vec<u8>,
        /// Its original name, e.g. `clip.webm`.
        name: Option<String>,
    },
}

/// How to decode.
#[derive(Clone, Debug, Default)]
pub struct DecodeOptions {
    /// Shrink frames (keeping the aspect ratio) to the smallest size that still covers
    /// `(height, width)`; sources already smaller keep their size.
    pub cover: Option<(usize, usize)>,
    /// Refuse (with the estimate) when the decoded RGB frames would exceed this many bytes.
    pub max_frame_bytes: Option<u64>,
}

/// What a media file holds, read from its headers: enough to explain a refusal.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    /// Container format name(s) as FFmpeg reports them (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    /// Video codec (`h264`, `vp9`, …) and profile (`High 4:4:4 Predictive`), if any video.
    pub video: Option<String>,
    /// Audio codec (`aac`, `opus`, …), if any audio.
    pub audio: Option<String>,
}
