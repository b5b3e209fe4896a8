//! Conversion between [`ClipRecord`]s and Arrow record batches of the v1 schema.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, Float64Array, Int32Array, Int64Array, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::labels::PhysicsLabels;
use crate::schema::{ClipRecord, MediaBlob, clip_schema, col, media_fields, physics_type};

/// Builds one record batch (schema v1) from records.
pub fn records_to_batch(records: &[ClipRecord]) -> Result<RecordBatch, String> {
    let schema = clip_schema();
    let strings = |f: fn(&ClipRecord) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(records.iter().map(f)))
    };
    let opt_strings = |f: fn(&ClipRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let f64s = |f: fn(&ClipRecord) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(records.iter().map(f)))
    };
    let i32s = |f: fn(&ClipRecord) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(records.iter().map(f)))
    };
    let lists = |f: fn(&ClipRecord) -> &Vec<String>| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for r in records {
            for s in f(r) {
                b.values().append_value(s);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        strings(|r| &r.clip_id),
        strings(|r| &r.split),
        strings(|r| &r.caption),
        media_array(records.iter().map(|r| &r.video)),
        media_array(records.iter().map(|r| &r.audio)),
        f64s(|r| r.fps),
        i32s(|r| r.num_frames),
        i32s(|r| r.width),
        i32s(|r| r.height),
        f64s(|r| r.duration_s),
        i32s(|r| r.audio_sample_rate),
        i32s(|r| r.audio_channels),
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.audio_num_samples),
        )),
        lists(|r| &r.tags),
        lists(|r| &r.character_ids),
        opt_strings(|r| r.source_path.as_deref()),
        Arc::new(
            records
                .iter()
                .map(|r| r.source_start_s)
                .collect::<Float64Array>(),
        ),
        physics_array(records)?,
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

fn media_array<'a>(blobs: impl Iterator<Item = &'a MediaBlob>) -> ArrayRef {
    let mut bytes = BinaryBuilder::new();
    let mut paths = StringBuilder::new();
    for b in blobs {
        bytes.append_value(&b.bytes);
        paths.append_option(b.path.as_deref());
    }
    let fields = media_fields();
    Arc::new(StructArray::new(
        fields,
        vec![Arc::new(bytes.finish()), Arc::new(paths.finish())],
        None,
    ))
}

#[derive(Serialize, Deserialize)]
struct PhysicsRow {
    #[serde(default)]
    physics: Option<PhysicsLabels>,
}

fn physics_field() -> Field {
    Field::new(col::PHYSICS, physics_type(), true)
}

/// Encodes the `physics` column through arrow-json's serde decoder, so the nested
/// Arrow layout always matches [`PhysicsLabels`].
fn physics_array(records: &[ClipRecord]) -> Result<ArrayRef, String> {
    let rows: Vec<PhysicsRow> = records
        .iter()
        .map(|r| PhysicsRow {
            physics: r.physics.clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![physics_field()]));
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .build_decoder()
        .map_err(|e| format!("physics column: {e}"))?;
    decoder
        .serialize(&rows)
        .map_err(|e| format!("physics labels: {e}"))?;
    let batch = decoder
        .flush()
        .map_err(|e| format!("physics labels: {e}"))?
        .ok_or_else(|| "physics labels: no rows".to_string())?;
    Ok(batch.column(0).clone())
}

/// Reads the `physics` column of a batch back into labels (`None` for null rows).
pub fn physics_from_array(array: &ArrayRef) -> Result<Vec<Option<PhysicsLabels>>, String> {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![physics_field()])),
        vec![array.clone()],
    )
    .map_err(|e| format!("physics column has an unexpected type: {e}"))?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        w.write(&batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<PhysicsRow> =
        serde_json::from_slice(&buf).map_err(|e| format!("physics labels: {e}"))?;
    Ok(rows.into_iter().map(|r| r.physics).collect())
}

/// Typed access to the columns of a (possibly projected) batch.
///
/// Missing columns read as defaults, so a loader can project only what it needs.
pub struct BatchView<'a> {
    batch: &'a RecordBatch,
}

fn downcast<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<Option<&'a T>, String> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(a) => a.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| {
            format!(
                "column `{name}` has type {}, expected schema v1's",
                a.data_type()
            )
        }),
    }
}

impl<'a> BatchView<'a> {
    /// Wraps a batch read from a v1 shard.
    pub fn new(batch: &'a RecordBatch) -> Self {
        Self { batch }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `clip_id` of row `i`, if the column is present and non-null.
    pub fn clip_id(&self, i: usize) -> Option<String> {
        let a = downcast::<StringArray>(self.batch, col::CLIP_ID)
            .ok()
            .flatten()?;
        (!a.is_null(i)).then(|| a.value(i).to_string())
    }

    /// Decodes every row into a record; a row whose cells are malformed gets an error string.
    pub fn records(&self) -> Result<Vec<Result<ClipRecord, String>>, String> {
        let b = self.batch;
        let s = |n| downcast::<StringArray>(b, n);
        let (clip_id, split, caption) = (s(col::CLIP_ID)?, s(col::SPLIT)?, s(col::CAPTION)?);
        let source_path = s(col::SOURCE_PATH)?;
        let f = |n| downcast::<Float64Array>(b, n);
        let (fps, duration, source_start) =
            (f(col::FPS)?, f(col::DURATION_S)?, f(col::SOURCE_START_S)?);
        let i = |n| downcast::<Int32Array>(b, n);
        let (nf, w, h, sr, ch) = (
            i(col::NUM_FRAMES)?,
            i(col::WIDTH)?,
            i(col::HEIGHT)?,
            i(col::AUDIO_SAMPLE_RATE)?,
            i(col::AUDIO_CHANNELS)?,
        );
        let ns = downcast::<Int64Array>(b, col::AUDIO_NUM_SAMPLES)?;
        let l = |n| downcast::<ListArray>(b, n);
        let (tags, chars) = (l(col::TAGS)?, l(col::CHARACTER_IDS)?);
        let video = downcast::<StructArray>(b, col::VIDEO)?;
        let audio = downcast::<StructArray>(b, col::AUDIO)?;
        let physics = match b.column_by_name(col::PHYSICS) {
            Some(a) => Some(physics_from_array(a)?),
            None => None,
        };
        let mut out = Vec::with_capacity(b.num_rows());
        for r in 0..b.num_rows() {
            out.push((|| {
                let req_str = |a: Option<&StringArray>, name: &str| -> Result<String, String> {
                    match a {
                        Some(a) if a.is_null(r) => Err(format!("`{name}` is null")),
                        Some(a) => Ok(a.value(r).to_string()),
                        None => Ok(String::new()),
                    }
                };
                let opt_f =
                    |a: Option<&Float64Array>| a.filter(|a| !a.is_null(r)).map(|a| a.value(r));
                let opt_i =
                    |a: Option<&Int32Array>| a.filter(|a| !a.is_null(r)).map(|a| a.value(r));
                Ok(ClipRecord {
                    clip_id: req_str(clip_id, col::CLIP_ID)?,
                    split: req_str(split, col::SPLIT)?,
                    caption: req_str(caption, col::CAPTION)?,
                    video: media_cell(video, r, col::VIDEO)?,
                    audio: media_cell(audio, r, col::AUDIO)?,
                    fps: opt_f(fps).unwrap_or(0.0),
                    num_frames: opt_i(nf).unwrap_or(0),
                    width: opt_i(w).unwrap_or(0),
                    height: opt_i(h).unwrap_or(0),
                    duration_s: opt_f(duration).unwrap_or(0.0),
                    audio_sample_rate: opt_i(sr).unwrap_or(0),
                    audio_channels: opt_i(ch).unwrap_or(0),
                    audio_num_samples: ns
                        .filter(|a| !a.is_null(r))
                        .map(|a| a.value(r))
                        .unwrap_or(0),
                    tags: list_cell(tags, r)?,
                    character_ids: list_cell(chars, r)?,
                    source_path: source_path
                        .filter(|a| !a.is_null(r))
                        .map(|a| a.value(r).to_string()),
                    source_start_s: opt_f(source_start),
                    physics: physics.as_ref().and_then(|p| p.get(r).cloned().flatten()),
                })
            })());
        }
        Ok(out)
    }
}

fn media_cell(a: Option<&StructArray>, r: usize, name: &str) -> Result<MediaBlob, String> {
    let Some(a) = a else {
        return Ok(MediaBlob::default());
    };
    if a.is_null(r) {
        return Err(format!("`{name}` is null"));
    }
    let bytes = a
        .column_by_name("bytes")
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| format!("`{name}` has no binary `bytes` field"))?;
    if bytes.is_null(r) {
        return Err(format!(
            "`{name}.bytes` is null (media referenced only by path is not supported)"
        ));
    }
    let path = a
        .column_by_name("path")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .filter(|p| !p.is_null(r))
        .map(|p| p.value(r).to_string());
    Ok(MediaBlob {
        bytes: bytes.value(r).to_vec(),
        path,
    })
}

fn list_cell(a: Option<&ListArray>, r: usize) -> Result<Vec<String>, String> {
    let Some(a) = a else { return Ok(Vec::new()) };
    if a.is_null(r) {
        return Ok(Vec::new());
    }
    let v = a.value(r);
    let s = v
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("list column has item type {}, expected utf8", v.data_type()))?;
    Ok(s.iter().flatten().map(str::to_string).collect())
}

/// Whether `dt` is the v1 type of column `name` (used to check shard schemas): the same
/// logical type, whatever the writer named the element field of a list (`item` for
/// arrow-rs and polars, `element` for pyarrow's compliant layout, DuckDB) or whether it
/// marked the elements nullable.
pub fn column_type_matches(name: &str, dt: &DataType) -> bool {
    clip_schema()
        .field_with_name(name)
        .map(|f| same_logical_type(f.data_type(), dt))
        .unwrap_or(false)
}

/// Type equality that ignores list element field names and nullability and 32- against
/// 64-bit offsets; struct field names still matter (they are the data's names).
pub fn same_logical_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (
            DataType::List(x) | DataType::LargeList(x),
            DataType::List(y) | DataType::LargeList(y),
        ) => same_logical_type(x.data_type(), y.data_type()),
        // 64-bit offsets (polars writes these) hold the same values
        (DataType::Utf8 | DataType::LargeUtf8, DataType::Utf8 | DataType::LargeUtf8)
        | (DataType::Binary | DataType::LargeBinary, DataType::Binary | DataType::LargeBinary) => {
            true
        }
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(p, q)| {
                    p.name() == q.name() && same_logical_type(p.data_type(), q.data_type())
                })
        }
        _ => a == b,
    }
}
