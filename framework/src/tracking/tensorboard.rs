//! TensorBoard event files written directly: each record is `u64 length`, masked CRC-32C
//! of the length, the serialised `Event` protobuf, masked CRC-32C of the data (the
//! TFRecord framing). Scalars, images (PNG), audio (WAV) and text (the `text` plugin's
//! string tensors) — what `tensorboard-rs` leaves unimplemented. Each record is flushed,
//! so a crash loses at most the record being written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::proto::{
    Audio, Dim, Event, Image, PluginData, Summary, SummaryMetadata, TensorProto, TensorShape, Value,
};
use crate::media::{encode_png, encode_wav};

/// Writing an event file failed.
#[derive(Debug, thiserror::Error)]
pub enum TensorboardError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The event file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An image or sound could not be encoded.
    #[error("tag `{tag}`: {why}")]
    Encode {
        /// The tag.
        tag: String,
        /// Why.
        why: String,
    },
}

/// Appends events to one `events.out.tfevents.*` file in a log directory.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `dir` and a new event file in it, starting with the file-version record.
    pub fn create(dir: &Path) -> Result<Self, TensorboardError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TensorboardError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sonora".into());
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            now() as u64,
            std::process::id()
        ));
        let file = File::create(&path).map_err(io(&path))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.write_event(Event {
            wall_time: now(),
            step: 0,
            file_version: Some("brain.Event:2".into()),
            summary: None,
        })?;
        Ok(w)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, e: Event) -> Result<(), TensorboardError> {
        let data = e.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(&data);
        rec.extend_from_slice(&masked_crc(&data).to_le_bytes());
        let path = self.path.clone();
        self.out
            .write_all(&rec)
            .and_then(|_| self.out.flush())
            .map_err(|source| TensorboardError::Io { path, source })
    }

    fn write_value(&mut self, step: u64, v: Value) -> Result<(), TensorboardError> {
        self.write_event(Event {
            wall_time: now(),
            step: step as i64,
            file_version: None,
            summary: Some(Summary { value: vec![v] }),
        })
    }

    /// Logs a scalar.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), TensorboardError> {
        self.write_value(
            step,
            Value {
                tag: tag.into(),
                simple_value: Some(value as f32),
                ..Value::default()
            },
        )
    }

    /// Logs an `h×w` RGB image (encoded as PNG).
    pub fn image(
        &mut self,
        tag: &str,
        step: u64,
        rgb: &[u8],
        h: usize,
        w: usize,
    ) -> Result<(), TensorboardError> {
        let png = encode_png(rgb, h, w).map_err(|e| TensorboardError::Encode {
            tag: tag.into(),
            why: e.to_string(),
        })?;
        let image = Image {
            height: h as i32,
            width: w as i32,
            colorspace: 3,
            encoded_image_string: png,
        };
        self.write_value(
            step,
            Value {
                tag: tag.into(),
                image: Some(image),
                ..Value::default()
            },
        )
    }

    /// Logs a sound (encoded as WAV).
    pub fn audio(
        &mut self,
        tag: &str,
        step: u64,
        audio: &crate::Audio,
    ) -> Result<(), TensorboardError> {
        let wav = encode_wav(audio).map_err(|e| TensorboardError::Encode {
            tag: tag.into(),
            why: e.to_string(),
        })?;
        let a = Audio {
            sample_rate: audio.sample_rate as f32,
            num_channels: audio.channels as i64,
            length_frames: audio.num_frames() as i64,
            encoded_audio_string: wav,
            content_type: "audio/wav".into(),
        };
        self.write_value(
            step,
            Value {
                tag: tag.into(),
                audio: Some(a),
                ..Value::default()
            },
        )
    }

    /// Logs markdown text (TensorBoard's `text` plugin).
    pub fn text(&mut self, tag: &str, step: u64, text: &str) -> Result<(), TensorboardError> {
        let tensor = TensorProto {
            dtype: 7,
            tensor_shape: Some(TensorShape {
                dim: vec![Dim { size: 1 }],
            }),
            string_val: vec![text.as_bytes().to_vec()],
        };
        let metadata = SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".into(),
                content: Vec::new(),
            }),
        };
        self.write_value(
            step,
            Value {
                tag: tag.into(),
                tensor: Some(tensor),
                metadata: Some(metadata),
                ..Value::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tfrecord() {
        // crc32c("") = 0, masked = 0xa282ead8; crc32c("123456789") = 0xe3069283
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        let c: u32 = 0xe306_9283;
        assert_eq!(
            masked_crc(b"123456789"),
            c.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }
}
