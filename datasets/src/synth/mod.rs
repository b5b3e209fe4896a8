//! The synthetic physics world behind `sonora data synth`.
//!
//! Every clip is a side view of a small room: a back wall and two side walls (at `x = 0`
//! and `x = width`) of one material, a floor band of another below `floor_y`, one to
//! [`SynthConfig::max_objects`] objects (balls, boxes, triangles, diamonds, or roster
//! [characters](roster)) of varied colour, texture, size and material falling under
//! gravity, bouncing off the floor and walls and colliding with each other, and sometimes
//! an occluding panel in front. The clip comes with:
//!
//! - frames `T×H×W×3` (`T = round(duration_s · fps)`);
//! - mono audio of `round(duration_s · sample_rate)` samples: quiet room tone plus one
//!   impact sound per contact, starting exactly at sample `round(time_s · sample_rate)`
//!   with a timbre set by the materials and the object's size;
//! - a caption from varied templates describing what happened;
//! - [`PhysicsLabels`]: per-frame centres and visibility of every object (sampled at
//!   `t = frame / fps`) and every contact with its exact time.
//!
//! Conventions: coordinates are pixels of the frame, x right and y down, pixel `(col, row)`
//! covering `[col, col+1) × [row, row+1)`. Every object collides as a circle of radius
//! `size`. An object is *visible* in a frame when its centre is inside the frame and less
//! than half of its `2·size` bounding square is covered by the occluder. Contacts slower
//! than `0.1·sqrt(gravity·height)` are not recorded and make no sound; an object landing
//! that slowly comes to rest on the floor (no endless micro-bounces).
//!
//! Generation is deterministic in `(seed, split, index)` only: each clip seeds its own
//! ChaCha8 streams from a hash of those three values, so splits never share seeds and a
//! clip does not depend on which other clips are generated or on thread scheduling.
//!
//! Submodules: `config` (settings), `catalog` (materials, colours, shapes), `scene`
//! (random scenes), `world` (event-driven physics), `render` (frames), `audio`, `caption`,
//! `characters` (roster sprites and reference images).

mod audio;
mod caption;
mod catalog;
mod characters;
mod config;
mod render;
mod scene;
#[cfg(test)]
mod tests;
mod world;

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sonora_framework::{Audio, Clip, ClipMetadata};

pub use catalog::{
    MATERIALS, Material, PALETTE, Shape, Texture, Timbre, material, secondary_color,
};
pub use characters::{
    Character, Pattern, REFERENCE_BACKGROUND, SpriteShape, render_reference, roster,
};
pub use config::{MAX_OBJECTS, Split, SynthConfig, SynthError};
pub use scene::{PANEL_COLORS, Panel, Scene, SceneObject, sample_scene};

use crate::labels::{ObjectLabel, Occluder, PhysicsLabels};

/// One generated clip with its ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthClip {
    /// Frames `T×H×W×3`, mono audio, caption and metadata (id `synth-{split}-{index:06}`).
    pub clip: Clip,
    /// Ground-truth physics (tracks, contacts, materials).
    pub labels: PhysicsLabels,
    /// The split the clip belongs to.
    pub split: Split,
}

/// Independent random streams of one clip.
#[derive(Clone, Copy)]
enum Stream {
    Scene = 1,
    Audio = 2,
    Caption = 3,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The RNG of one stream of clip `(seed, split, index)`.
fn clip_rng(seed: u64, split: Split, index: u64, stream: Stream) -> ChaCha8Rng {
    let mut h = splitmix64(seed ^ 0x736f_6e6f_7261_2d73); // "sonora-s"
    h = splitmix64(h ^ split.tag());
    h = splitmix64(h ^ index);
    h = splitmix64(h ^ stream as u64);
    let mut key = [0u8; 32];
    for (k, chunk) in key.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix64(h.wrapping_add(k as u64)).to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// The clip id of `(split, index)`: `synth-{split}-{index:06}`.
pub fn clip_id(split: Split, index: u64) -> String {
    format!("synth-{}-{index:06}", split.as_str())
}

/// Generates clip `index` of `split`. Deterministic in `(cfg.seed, split, index)` and the
/// rest of `cfg`.
pub fn generate_clip(cfg: &SynthConfig, split: Split, index: u64) -> Result<SynthClip, SynthError> {
    cfg.validate()?;
    let mut rng = clip_rng(cfg.seed, split, index, Stream::Scene);
    let scene = sample_scene(cfg, &mut rng);
    clip_from_scene(cfg, split, index, &scene)
}

/// Generates clips `range` of `split` in parallel; results are in index order.
pub fn generate_split_parallel(
    cfg: &SynthConfig,
    split: Split,
    range: Range<u64>,
) -> Vec<Result<SynthClip, SynthError>> {
    range
        .into_par_iter()
        .map(|i| generate_clip(cfg, split, i))
        .collect()
}

fn check_scene(cfg: &SynthConfig, scene: &Scene) -> Result<(), String> {
    let (w, h) = (cfg.width as f64, cfg.height as f64);
    if !(scene.gravity.is_finite() && scene.gravity > 0.0) {
        return Err(format!("gravity must be positive, got {}", scene.gravity));
    }
    if !(scene.floor_y > 0.0 && scene.floor_y <= h) {
        return Err(format!(
            "floor_y must be in (0, {h}], got {}",
            scene.floor_y
        ));
    }
    if scene.objects.is_empty() {
        return Err("a scene needs at least one object".into());
    }
    for (i, o) in scene.objects.iter().enumerate() {
        let finite = o.pos.iter().chain(&o.vel).all(|v| v.is_finite());
        if !finite || !o.size.is_finite() || o.size <= 0.0 || 2.0 * o.size >= w {
            return Err(format!(
                "object {i}: needs a finite state and 0 < size < width/2"
            ));
        }
        if o.pos[1] + o.size > scene.floor_y + 1e-9 || o.pos[0] < o.size || o.pos[0] > w - o.size {
            return Err(format!(
                "object {i} starts inside the floor or a wall at {:?}",
                o.pos
            ));
        }
    }
    Ok(())
}

/// Simulates, renders, sonifies and captions `scene` as clip `index` of `split`.
///
/// [`generate_clip`] calls this with a scene from [`sample_scene`]; hand-built scenes
/// (tests, demos) work too. The audio and caption streams are seeded from
/// `(cfg.seed, split, index)`.
pub fn clip_from_scene(
    cfg: &SynthConfig,
    split: Split,
    index: u64,
    scene: &Scene,
) -> Result<SynthClip, SynthError> {
    let id = clip_id(split, index);
    check_scene(cfg, scene).map_err(|message| SynthError::Generate {
        clip_id: id.clone(),
        message,
    })?;
    let sim = world::simulate(cfg, scene);
    let frames = render::render(cfg, scene, &sim);
    let samples = audio::render_audio(
        cfg,
        scene,
        &sim,
        &mut clip_rng(cfg.seed, split, index, Stream::Audio),
    );
    let caption = caption::caption(
        cfg,
        scene,
        &sim,
        &mut clip_rng(cfg.seed, split, index, Stream::Caption),
    );

    let objects: Vec<ObjectLabel> = scene
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| ObjectLabel {
            id: i as u32,
            shape: o.shape_name().into(),
            material: o.material.name.into(),
            color: o.color_name.clone(),
            rgb: o.rgb.to_vec(),
            texture: o.texture_name().into(),
            size: o.size,
            restitution: o.material.restitution,
            character_id: o.character.as_ref().map(|c| c.id.clone()),
            center_x: sim.states[i].iter().map(|s| s.pos[0] as f32).collect(),
            center_y: sim.states[i].iter().map(|s| s.pos[1] as f32).collect(),
            visible: sim.visible[i].clone(),
        })
        .collect();
    let labels = PhysicsLabels {
        gravity: scene.gravity,
        floor_material: scene.floor.name.into(),
        floor_restitution: scene.floor.restitution,
        wall_material: scene.wall.name.into(),
        wall_restitution: scene.wall.restitution,
        floor_y: scene.floor_y,
        occluder: scene.occluder.as_ref().map(|p| Occluder {
            x0: p.x0,
            y0: p.y0,
            x1: p.x1,
            y1: p.y1,
        }),
        objects,
        contacts: sim.contacts.clone(),
    };

    let mut tags = vec!["synthetic".to_string()];
    let has = |p: &dyn Fn(&str) -> bool| sim.contacts.iter().any(|c| p(&c.other));
    if has(&|o| o == "floor") {
        tags.push("bounce".into());
    }
    if has(&|o| o.starts_with("wall")) {
        tags.push("wall".into());
    }
    if has(&|o| o.starts_with("object:")) {
        tags.push("collision".into());
    }
    if sim
        .floor_travel
        .iter()
        .any(|&d| d > 0.15 * cfg.width as f64)
    {
        tags.push("roll".into());
    }
    if scene.occluder.is_some() {
        tags.push("occluder".into());
    }
    if sim.hidden.iter().any(|h| h.iter().any(|&x| x)) {
        tags.push("occlusion".into());
    }
    if scene.objects.len() > 1 {
        tags.push("multi-object".into());
    }
    let character_ids: Vec<String> = scene
        .objects
        .iter()
        .filter_map(|o| o.character.as_ref().map(|c| c.id.clone()))
        .collect();
    if !character_ids.is_empty() {
        tags.push("character".into());
    }
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("generator".to_string(), "sonora-synth-v1".to_string());
    extra.insert("floor_material".to_string(), scene.floor.name.to_string());
    extra.insert("wall_material".to_string(), scene.wall.name.to_string());
    extra.insert("num_objects".to_string(), scene.objects.len().to_string());
    extra.insert("num_contacts".to_string(), sim.contacts.len().to_string());
    let clip = Clip {
        frames,
        audio: Audio {
            samples,
            channels: 1,
            sample_rate: cfg.sample_rate,
        },
        fps: cfg.fps,
        caption,
        metadata: ClipMetadata {
            clip_id: id,
            tags,
            character_ids,
            source_path: None,
            source_start_s: None,
            extra,
        },
    };
    Ok(SynthClip {
        clip,
        labels,
        split,
    })
}
