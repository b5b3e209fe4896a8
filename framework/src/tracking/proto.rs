//! The protobuf messages of TensorBoard's event files (`tensorflow/core/util/event.proto`,
//! `summary.proto`, `tensor.proto`), only the fields sonora writes, with their wire tags.

/// One record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in the first record.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The values logged at this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// A set of tagged values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

/// One tagged value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    /// The tag (`loss/video`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// An encoded image.
    #[prost(message, optional, tag = "4")]
    pub image: Option<Image>,
    /// An encoded sound.
    #[prost(message, optional, tag = "6")]
    pub audio: Option<Audio>,
    /// A tensor (text summaries are string tensors).
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    /// Which plugin reads the value.
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// A PNG image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Height, px.
    #[prost(int32, tag = "1")]
    pub height: i32,
    /// Width, px.
    #[prost(int32, tag = "2")]
    pub width: i32,
    /// 3 = RGB.
    #[prost(int32, tag = "3")]
    pub colorspace: i32,
    /// PNG bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_image_string: Vec<u8>,
}

/// A WAV sound.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Audio {
    /// Hz.
    #[prost(float, tag = "1")]
    pub sample_rate: f32,
    /// Channels.
    #[prost(int64, tag = "2")]
    pub num_channels: i64,
    /// Frames.
    #[prost(int64, tag = "3")]
    pub length_frames: i64,
    /// WAV bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub encoded_audio_string: Vec<u8>,
    /// `audio/wav`.
    #[prost(string, tag = "5")]
    pub content_type: String,
}

/// Plugin routing of a value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// A plugin's name and private data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `text`, `scalars`, …
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// Plugin-specific bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// A tensor (only string tensors are written).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// 7 = DT_STRING.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    /// Values of a string tensor.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// A tensor shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {
    /// Dimensions.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<Dim>,
}

/// One dimension.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dim {
    /// Size.
    #[prost(int64, tag = "1")]
    pub size: i64,
}
