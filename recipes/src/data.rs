//! From dataset rows to training examples: the loader geometry a model needs, captions for
//! the tokenizer, character references, and the fixed validation set.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sonora_datasets::Dataset;
use sonora_datasets::loader::{Batch, LoaderConfig};
use sonora_framework::diffusion::{Example, FlowConfig, Mode, flow_loss, make_batch};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, ModelConfig, PatchCodec, SonoraDit};
use sonora_framework::{Clip, ClipMetadata};

use crate::train::{TrainError, err};

/// All captions of a dataset split (for training the tokenizer).
pub fn captions(ds: &Dataset, split: &str) -> Result<Vec<String>, TrainError> {
    let mut out = Vec::new();
    for shard in ds.shards(Some(split)) {
        let r = ds.open_shard(&shard).map_err(err)?;
        for g in 0..r.num_row_groups() {
            for rec in r.read_records(g, None).map_err(err)? {
                out.push(rec.map_err(err)?.caption);
            }
        }
    }
    Ok(out)
}

/// Refuses `[data.loader]` keys that training does not take from there: the clip geometry
/// (`frames`, `height`, `width`, `fps`, `sample_rate`) comes from the model config,
/// `channels` is mono, `buckets` would mix shapes one model cannot take, and the loader's
/// seed is `run.seed`. A key left at its default, or set to what training uses anyway, is
/// fine; any other value would be accepted and ignored, so it is an error naming the key
/// and where its value comes from. (`shuffle` is honoured for the training split.)
pub fn check_loader_keys(
    base: &LoaderConfig,
    m: &ModelConfig,
    run_seed: u64,
) -> Result<(), String> {
    let d = LoaderConfig::default();
    let geometry: [(&str, f64, f64, f64); 5] = [
        (
            "frames",
            base.frames as f64,
            d.frames as f64,
            m.frames as f64,
        ),
        (
            "height",
            base.height as f64,
            d.height as f64,
            m.height as f64,
        ),
        ("width", base.width as f64, d.width as f64, m.width as f64),
        ("fps", base.fps, d.fps, m.fps),
        (
            "sample_rate",
            base.sample_rate as f64,
            d.sample_rate as f64,
            m.sample_rate as f64,
        ),
    ];
    for (k, v, default, model) in geometry {
        if v != default && v != model {
            return Err(format!(
                "data.loader.{k} = {v}: training takes the clip shape from the model config ({k} = {model}); remove the key or change the model's"
            ));
        }
    }
    if base.channels != 1 {
        return Err(format!(
            "data.loader.channels = {}: the model's audio is mono; remove the key",
            base.channels
        ));
    }
    if !base.buckets.is_empty() {
        return Err(
            "data.loader.buckets: a model trains on the one clip shape of its config; remove the buckets"
                .into(),
        );
    }
    if base.seed != d.seed && base.seed != run_seed {
        return Err(format!(
            "data.loader.seed = {}: the loader is seeded by run.seed ({run_seed}); set run.seed instead",
            base.seed
        ));
    }
    Ok(())
}

/// Loader settings with the model's clip geometry.
pub fn loader_config(
    base: &LoaderConfig,
    m: &ModelConfig,
    split: &str,
    seed: u64,
    shuffle: bool,
) -> LoaderConfig {
    LoaderConfig {
        split: split.into(),
        frames: m.frames,
        height: m.height,
        width: m.width,
        fps: m.fps,
        sample_rate: m.sample_rate,
        channels: 1,
        buckets: Vec::new(),
        seed,
        shuffle,
        ..base.clone()
    }
}

/// The characters a run casts: one (`character.id = "pip"`) or every character of the
/// dataset (`"*"`), each with its reference images as model tokens.
pub struct CharacterRefs {
    /// `(id, references × ref_tokens × ref_patch_dim values)`, sorted by id.
    pub cast: Vec<(String, Vec<f32>)>,
}

impl CharacterRefs {
    /// Reads `characters/<id>/ref-0.png … ref-{n−1}.png` of the dataset at `root` (of every
    /// folder under `characters/` for `id = "*"`), resized to the model's reference size.
    pub fn load(root: &Path, id: &str, n: usize, cfg: &ModelConfig) -> Result<Self, TrainError> {
        let ids = if id == "*" {
            sonora_datasets::reader::character_ids(root)
                .map_err(|e| err(format!("character.id = `*`: {e}")))?
        } else {
            vec![id.to_string()]
        };
        let codec = PatchCodec::new(cfg);
        let mut cast = Vec::with_capacity(ids.len());
        for id in ids {
            let bad = |e: String| err(format!("character.id = `{id}`: {e}"));
            let mut tokens = Vec::new();
            for (rgb, w, h) in
                sonora_datasets::reader::read_references(root, &id, n).map_err(bad)?
            {
                let s = cfg.ref_size;
                let rgb = sonora_framework::media::resize_rgb(&rgb, h, w, s, s)
                    .map_err(|e| bad(e.to_string()))?;
                tokens.extend(codec.encode_reference(&rgb).map_err(err)?);
            }
            cast.push((id, tokens));
        }
        Ok(Self { cast })
    }

    /// The references of the first character in `ids` (a clip's `character_ids`) that the
    /// run casts; `None` when it shows none of them.
    pub fn for_clip(&self, ids: &[String]) -> Option<&[f32]> {
        ids.iter().find_map(|id| {
            self.cast
                .iter()
                .find(|(c, _)| c == id)
                .map(|(_, t)| t.as_slice())
        })
    }
}

/// Loader batch → training examples: text → video + audio, or, with characters, the
/// clips that show one with its references cast (clips without one are left out).
/// Positions in `batch` of the samples [`examples`] keeps (those showing a cast character,
/// or all).
pub fn kept_positions(batch: &Batch, character: Option<&CharacterRefs>) -> Vec<usize> {
    batch
        .samples
        .iter()
        .enumerate()
        .filter(|(_, s)| character.is_none_or(|c| c.for_clip(&s.character_ids).is_some()))
        .map(|(i, _)| i)
        .collect()
}

pub fn examples(
    batch: &Batch,
    codec: &PatchCodec,
    tok: &CaptionTokenizer,
    character: Option<&CharacterRefs>,
) -> Result<Vec<Example>, TrainError> {
    batch
        .samples
        .iter()
        .filter_map(|s| match character {
            None => Some((s, None)),
            Some(c) => c.for_clip(&s.character_ids).map(|r| (s, Some(r))),
        })
        .map(|(s, refs)| {
            let clip = Clip {
                frames: s.frames.clone(),
                audio: s.audio.clone(),
                fps: batch.target.fps,
                caption: s.caption.clone(),
                metadata: ClipMetadata {
                    clip_id: s.clip_id.clone(),
                    ..ClipMetadata::default()
                },
            };
            Ok(Example {
                tokens: codec.encode(&clip).map_err(err)?,
                refs: refs.map(<[f32]>::to_vec).unwrap_or_default(),
                text: tok.encode(&s.caption).map_err(err)?,
                mode: if refs.is_some() {
                    Mode::Character
                } else {
                    Mode::TextToAv
                },
            })
        })
        .collect()
}

/// Mean loss over `batches` with noise and timesteps drawn from a fixed seed.
pub fn validation_loss(
    model: &SonoraDit,
    batches: &[Vec<Example>],
    cfg: &ModelConfig,
    device: &burn::prelude::Device,
) -> Result<Option<f64>, TrainError> {
    let batches: Vec<&Vec<Example>> = batches.iter().filter(|b| !b.is_empty()).collect();
    if batches.is_empty() {
        return Ok(None);
    }
    let fc = FlowConfig {
        caption_dropout: 0.0,
        ..FlowConfig::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(12345);
    let mut total = 0.0;
    for ex in &batches {
        let b = make_batch(cfg, &fc, ex, &mut rng, device).map_err(err)?;
        total += flow_loss(model.forward(b.input.clone(), &b.rope), &b, &fc)
            .total
            .into_scalar::<f64>();
    }
    Ok(Some(total / batches.len() as f64))
}
