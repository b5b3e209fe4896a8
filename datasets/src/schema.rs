//! Clip schema v1: one Parquet row per clip.
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `clip_id` | utf8, not null | unique id within the dataset |
//! | `split` | utf8, not null | `train`, `val` or `test` |
//! | `caption` | utf8, not null | natural-language description |
//! | `video` | struct<bytes: binary, path: utf8> | MP4 (H.264, no audio track) — Hugging Face `Video` convention |
//! | `audio` | struct<bytes: binary, path: utf8> | WAV (16-bit PCM) — Hugging Face `Audio` convention |
//! | `fps` | float64 | frames per second |
//! | `num_frames` | int32 | frames in `video` |
//! | `width`, `height` | int32 | frame size in px |
//! | `duration_s` | float64 | `num_frames / fps` |
//! | `audio_sample_rate` | int32 | Hz |
//! | `audio_channels` | int32 | 1 or 2 |
//! | `audio_num_samples` | int64 | samples per channel in `audio` |
//! | `tags` | list<utf8> | free-form tags |
//! | `character_ids` | list<utf8> | registered characters in the clip |
//! | `source_path` | utf8, nullable | original media file (ingested clips) |
//! | `source_start_s` | float64, nullable | clip start within `source_path` |
//! | `physics` | struct, nullable | ground truth of synthetic clips ([`PhysicsLabels`]) |
//!
//! The schema version lives in the Parquet file's key-value metadata and in the Arrow
//! schema metadata under [`SCHEMA_VERSION_KEY`]; readers refuse any other version.
//! Audio sample 0 plays with video frame 0.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use crate::labels::PhysicsLabels;

/// Key of the schema version in the file's key-value metadata.
pub const SCHEMA_VERSION_KEY: &str = "sonora.schema_version";
/// The version this crate writes and reads.
pub const SCHEMA_VERSION: &str = "1";

/// Column names, in schema order.
pub mod col {
    /// Unique id within the dataset.
    pub const CLIP_ID: &str = "clip_id";
    /// `train` / `val` / `test`.
    pub const SPLIT: &str = "split";
    /// Caption text.
    pub const CAPTION: &str = "caption";
    /// `struct<bytes, path>` MP4.
    pub const VIDEO: &str = "video";
    /// `struct<bytes, path>` WAV.
    pub const AUDIO: &str = "audio";
    /// Frames per second.
    pub const FPS: &str = "fps";
    /// Frame count.
    pub const NUM_FRAMES: &str = "num_frames";
    /// Width px.
    pub const WIDTH: &str = "width";
    /// Height px.
    pub const HEIGHT: &str = "height";
    /// Seconds.
    pub const DURATION_S: &str = "duration_s";
    /// Hz.
    pub const AUDIO_SAMPLE_RATE: &str = "audio_sample_rate";
    /// Channel count.
    pub const AUDIO_CHANNELS: &str = "audio_channels";
    /// Samples per channel.
    pub const AUDIO_NUM_SAMPLES: &str = "audio_num_samples";
    /// list<utf8>.
    pub const TAGS: &str = "tags";
    /// list<utf8>.
    pub const CHARACTER_IDS: &str = "character_ids";
    /// Source file.
    pub const SOURCE_PATH: &str = "source_path";
    /// Source offset.
    pub const SOURCE_START_S: &str = "source_start_s";
    /// Physics ground truth.
    pub const PHYSICS: &str = "physics";
}

/// Fields of a Hugging Face media struct: `bytes` (binary) and `path` (utf8).
pub fn media_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn f32_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
}

fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

/// Arrow type of the `physics` column (mirrors [`PhysicsLabels`]).
pub fn physics_type() -> DataType {
    let occluder = DataType::Struct(Fields::from(vec![
        Field::new("x0", DataType::Float64, false),
        Field::new("y0", DataType::Float64, false),
        Field::new("x1", DataType::Float64, false),
        Field::new("y1", DataType::Float64, false),
    ]));
    let object = DataType::Struct(Fields::from(vec![
        Field::new("id", DataType::UInt32, false),
        Field::new("shape", DataType::Utf8, false),
        Field::new("material", DataType::Utf8, false),
        Field::new("color", DataType::Utf8, false),
        Field::new("rgb", list_of(DataType::UInt8), false),
        Field::new("texture", DataType::Utf8, false),
        Field::new("size", DataType::Float64, false),
        Field::new("restitution", DataType::Float64, false),
        Field::new("character_id", DataType::Utf8, true),
        Field::new("center_x", f32_list(), false),
        Field::new("center_y", f32_list(), false),
        Field::new("visible", list_of(DataType::Boolean), false),
    ]));
    let contact = DataType::Struct(Fields::from(vec![
        Field::new("time_s", DataType::Float64, false),
        Field::new("frame", DataType::UInt32, false),
        Field::new("object", DataType::UInt32, false),
        Field::new("other", DataType::Utf8, false),
        Field::new("speed", DataType::Float64, false),
    ]));
    DataType::Struct(Fields::from(vec![
        Field::new("gravity", DataType::Float64, false),
        Field::new("floor_material", DataType::Utf8, false),
        Field::new("floor_restitution", DataType::Float64, false),
        Field::new("wall_material", DataType::Utf8, false),
        Field::new("wall_restitution", DataType::Float64, false),
        Field::new("floor_y", DataType::Float64, false),
        Field::new("occluder", occluder, true),
        Field::new("objects", list_of(object), false),
        Field::new("contacts", list_of(contact), false),
    ]))
}

/// The v1 Arrow schema, with the version in its metadata.
pub fn clip_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields = vec![
                Field::new(col::CLIP_ID, DataType::Utf8, false),
                Field::new(col::SPLIT, DataType::Utf8, false),
                Field::new(col::CAPTION, DataType::Utf8, false),
                Field::new(col::VIDEO, DataType::Struct(media_fields()), true),
                Field::new(col::AUDIO, DataType::Struct(media_fields()), true),
                Field::new(col::FPS, DataType::Float64, false),
                Field::new(col::NUM_FRAMES, DataType::Int32, false),
                Field::new(col::WIDTH, DataType::Int32, false),
                Field::new(col::HEIGHT, DataType::Int32, false),
                Field::new(col::DURATION_S, DataType::Float64, false),
                Field::new(col::AUDIO_SAMPLE_RATE, DataType::Int32, false),
                Field::new(col::AUDIO_CHANNELS, DataType::Int32, false),
                Field::new(col::AUDIO_NUM_SAMPLES, DataType::Int64, false),
                Field::new(col::TAGS, utf8_list(), false),
                Field::new(col::CHARACTER_IDS, utf8_list(), false),
                Field::new(col::SOURCE_PATH, DataType::Utf8, true),
                Field::new(col::SOURCE_START_S, DataType::Float64, true),
                Field::new(col::PHYSICS, physics_type(), true),
            ];
            let meta =
                HashMap::from([(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]);
            Arc::new(Schema::new_with_metadata(fields, meta))
        })
        .clone()
}

/// A media blob in the Hugging Face `struct<bytes, path>` convention.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaBlob {
    /// Encoded file bytes (MP4 for video, WAV for audio).
    pub bytes: Vec<u8>,
    /// Original file name or path, if any.
    pub path: Option<String>,
}

/// One row of the clip schema, with media still encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipRecord {
    /// Unique id within the dataset.
    pub clip_id: String,
    /// `train`, `val` or `test`.
    pub split: String,
    /// Caption text.
    pub caption: String,
    /// MP4 bytes (H.264).
    pub video: MediaBlob,
    /// WAV bytes.
    pub audio: MediaBlob,
    /// Frames per second.
    pub fps: f64,
    /// Frames in the video.
    pub num_frames: i32,
    /// Width px.
    pub width: i32,
    /// Height px.
    pub height: i32,
    /// Seconds.
    pub duration_s: f64,
    /// Hz.
    pub audio_sample_rate: i32,
    /// 1 or 2.
    pub audio_channels: i32,
    /// Samples per channel.
    pub audio_num_samples: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Registered characters in the clip.
    pub character_ids: Vec<String>,
    /// Source media file of an ingested clip.
    pub source_path: Option<String>,
    /// Offset of the clip in its source, seconds.
    pub source_start_s: Option<f64>,
    /// Ground truth of a synthetic clip.
    pub physics: Option<PhysicsLabels>,
}
