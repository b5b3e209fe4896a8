//! The `Clip` value every crate passes around: RGB frames, audio, fps, caption, metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RGB video frames, `T×H×W×3` bytes in row-major order (frame, row, column, channel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frames {
    /// Pixel bytes, length `t * h * w * 3`.
    pub data: Vec<u8>,
    /// Number of frames (T).
    pub t: usize,
    /// Height in pixels (H).
    pub h: usize,
    /// Width in pixels (W).
    pub w: usize,
}

impl Frames {
    /// Frames of the given shape, every pixel black.
    pub fn zeros(t: usize, h: usize, w: usize) -> Self {
        Self {
            data: vec![0; t * h * w * 3],
            t,
            h,
            w,
        }
    }

    /// Wraps `data` as `T×H×W×3`; `None` when the length does not match the shape.
    pub fn from_vec(data: Vec<u8>, t: usize, h: usize, w: usize) -> Option<Self> {
        (data.len() == t * h * w * 3).then_some(Self { data, t, h, w })
    }

    /// Bytes in one frame (`H*W*3`).
    pub fn frame_len(&self) -> usize {
        self.h * self.w * 3
    }

    /// Frame `i` as `H×W×3` bytes.
    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.frame_len();
        &self.data[i * n..(i + 1) * n]
    }

    /// Frame `i` as mutable `H×W×3` bytes.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let n = self.frame_len();
        &mut self.data[i * n..(i + 1) * n]
    }
}

/// Audio samples, interleaved by channel, `f32` in `[-1, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// Interleaved samples, length `frames * channels`.
    pub samples: Vec<f32>,
    /// 1 (mono) or 2 (stereo).
    pub channels: u16,
    /// Samples per second per channel.
    pub sample_rate: u32,
}

impl Audio {
    /// `n` samples per channel of silence.
    pub fn silence(n: usize, channels: u16, sample_rate: u32) -> Self {
        Self {
            samples: vec![0.0; n * channels as usize],
            channels,
            sample_rate,
        }
    }

    /// Samples per channel.
    pub fn num_frames(&self) -> usize {
        if self.channels == 0 {
            0
        } else {
            self.samples.len() / self.channels as usize
        }
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            0.0
        } else {
            self.num_frames() as f64 / self.sample_rate as f64
        }
    }

    /// The channels averaged into one mono signal.
    pub fn to_mono(&self) -> Vec<f32> {
        let c = self.channels.max(1) as usize;
        self.samples
            .chunks(c)
            .map(|s| s.iter().sum::<f32>() / c as f32)
            .collect()
    }
}

/// Descriptive metadata carried with a clip into datasets and outputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClipMetadata {
    /// Stable identifier, unique within a dataset.
    pub clip_id: String,
    /// Free-form tags (`"synthetic"`, `"bounce"`, …).
    pub tags: Vec<String>,
    /// Ids of registered characters that appear in the clip.
    pub character_ids: Vec<String>,
    /// Where the clip came from (a file path for ingested media).
    pub source_path: Option<String>,
    /// Start of the clip within its source, in seconds.
    pub source_start_s: Option<f64>,
    /// Anything else, as string key/values.
    pub extra: BTreeMap<String, String>,
}

/// A short video with synchronised sound.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// RGB frames `T×H×W×3`.
    pub frames: Frames,
    /// The sound track, aligned so that sample 0 plays with frame 0.
    pub audio: Audio,
    /// Frames per second.
    pub fps: f64,
    /// Natural-language description.
    pub caption: String,
    /// Identifiers, tags and provenance.
    pub metadata: ClipMetadata,
}

impl Clip {
    /// Video duration in seconds (`T / fps`).
    pub fn duration_s(&self) -> f64 {
        if self.fps > 0.0 {
            self.frames.t as f64 / self.fps
        } else {
            0.0
        }
    }
}

/// The shape a consumer wants clips in: frames×height×width at an fps, audio at a rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSpec {
    /// Frames per clip.
    pub frames: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frame width in pixels.
    pub width: usize,
    /// Frames per second.
    pub fps: f64,
    /// Audio sample rate in Hz.
    pub sample_rate: u32,
    /// Audio channels (1 or 2).
    #[serde(default = "default_channels")]
    pub channels: u16,
}

fn default_channels() -> u16 {
    1
}

impl ClipSpec {
    /// Duration in seconds (`frames / fps`).
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.fps
    }

    /// Audio samples per channel that cover the clip exactly.
    pub fn audio_samples(&self) -> usize {
        (self.duration_s() * self.sample_rate as f64).round() as usize
    }
}
