//! A scene: the room (floor, walls, optional occluder), gravity and the objects with their
//! initial state, drawn from the clip's RNG.

use rand::Rng;
use rand::seq::IndexedRandom;

use super::catalog::{
    FLOOR_MATERIALS, Material, OBJECT_MATERIALS, PALETTE, Shape, Texture, WALL_MATERIALS, mat_of,
};
use super::characters::{Character, roster};
use super::config::SynthConfig;

/// An occluding panel standing on the floor, drawn in front of the objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// Left edge, px.
    pub x0: f64,
    /// Top edge, px.
    pub y0: f64,
    /// Right edge, px.
    pub x1: f64,
    /// Bottom edge, px (the floor line for sampled scenes).
    pub y1: f64,
    /// Fill colour.
    pub rgb: [u8; 3],
    /// Colour word for captions.
    pub color_name: &'static str,
}

/// Colours an occluding panel may have (none is in the object palette).
pub const PANEL_COLORS: &[(&str, [u8; 3])] = &[
    ("grey", [104, 106, 114]),
    ("dark blue", [46, 58, 96]),
    ("brown", [112, 80, 54]),
    ("dark green", [48, 84, 60]),
];

/// One object of a scene with its initial state.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneObject {
    /// Drawn shape (ignored when `character` is set: the sprite is drawn instead).
    pub shape: Shape,
    /// Surface texture (ignored for characters).
    pub texture: Texture,
    /// Material: restitution, density, impact timbre.
    pub material: Material,
    /// Colour word.
    pub color_name: String,
    /// Main colour.
    pub rgb: [u8; 3],
    /// Collision radius and half extent, px.
    pub size: f64,
    /// Initial centre `[x, y]`, px.
    pub pos: [f64; 2],
    /// Initial velocity `[vx, vy]`, px/s (y down).
    pub vel: [f64; 2],
    /// The roster character this object is, if any.
    pub character: Option<Character>,
}

/// A full scene. Side walls are the frame edges `x = 0` and `x = width`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// Downward acceleration, px/s².
    pub gravity: f64,
    /// Floor material.
    pub floor: Material,
    /// Side (and back) wall material.
    pub wall: Material,
    /// Floor surface line, px from the top.
    pub floor_y: f64,
    /// Optional occluding panel.
    pub occluder: Option<Panel>,
    /// The objects, in drawing order.
    pub objects: Vec<SceneObject>,
}

impl SceneObject {
    /// A plain object with the given look at `pos` moving with `vel`.
    pub fn plain(
        shape: Shape,
        color: &str,
        texture: Texture,
        material: &str,
        size: f64,
        pos: [f64; 2],
        vel: [f64; 2],
    ) -> Self {
        let rgb = PALETTE
            .iter()
            .find(|(n, _)| *n == color)
            .map(|(_, c)| *c)
            .unwrap_or([200, 200, 200]);
        Self {
            shape,
            texture,
            material: mat_of(material),
            color_name: color.to_string(),
            rgb,
            size,
            pos,
            vel,
            character: None,
        }
    }

    /// A roster character at `pos` moving with `vel`.
    pub fn character(ch: Character, size: f64, pos: [f64; 2], vel: [f64; 2]) -> Self {
        Self {
            shape: Shape::Ball,
            texture: Texture::Plain,
            material: mat_of(&ch.material),
            color_name: ch.color_name.clone(),
            rgb: ch.primary,
            size,
            pos,
            vel,
            character: Some(ch),
        }
    }

    /// Object mass (density × area), in arbitrary units.
    pub(crate) fn mass(&self) -> f64 {
        self.material.density * self.size * self.size
    }

    /// Label shape name (`"character"` for characters).
    pub(crate) fn shape_name(&self) -> &'static str {
        if self.character.is_some() {
            "character"
        } else {
            self.shape.name()
        }
    }

    /// Label texture name.
    pub(crate) fn texture_name(&self) -> &'static str {
        match &self.character {
            Some(c) => c.pattern.texture_name(),
            None => self.texture.name(),
        }
    }
}

fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (it, w) in items {
        if x < *w {
            return it;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

/// Draws a random scene for `cfg` from `rng`.
pub fn sample_scene(cfg: &SynthConfig, rng: &mut impl Rng) -> Scene {
    let (w, h) = (cfg.width as f64, cfg.height as f64);
    let gravity = cfg.gravity * (1.0 + cfg.gravity_jitter * (2.0 * rng.random::<f64>() - 1.0));
    let floor = mat_of(FLOOR_MATERIALS.choose(rng).expect("floor materials"));
    let wall = mat_of(WALL_MATERIALS.choose(rng).expect("wall materials"));
    let floor_y = (h * rng.random_range(0.78..0.88)).round();
    let n = rng.random_range(cfg.min_objects..=cfg.max_objects);
    let sqrt_gh = (gravity * h).sqrt();

    let mut colors: Vec<(&str, [u8; 3])> = PALETTE.to_vec();
    let mut cast = roster();
    let mut objects: Vec<SceneObject> = Vec::with_capacity(n);
    for _ in 0..n {
        // At least 1 px radius so every object shows up in the frame.
        let size = (h * rng.random_range(cfg.min_size_frac..=cfg.max_size_frac))
            .min(w * 0.2)
            .max(1.0);
        let is_char = !cast.is_empty() && rng.random_bool(cfg.character_prob);
        // Characters are drawn a little larger so their faces read.
        let size = if is_char {
            size.max(h * 0.09).min(h * 0.25).min(w * 0.2)
        } else {
            size
        };
        // Place without overlap, above the floor.
        let mut placed = None;
        for _ in 0..100 {
            // the centred band `start_spread` of the usable width [size + 1, w − size − 1]
            let (lo, hi) = (size + 1.0, (w - size - 1.0).max(size + 1.5));
            let margin = (hi - lo) * (1.0 - cfg.start_spread) / 2.0;
            let x = rng.random_range((lo + margin)..(hi - margin));
            let y_lo = size + h * 0.06;
            let y_hi = (h * cfg.start_max_frac)
                .min(floor_y - size - 2.0)
                .max(y_lo + 0.5);
            let y = rng.random_range(y_lo..y_hi);
            if objects.iter().all(|o| {
                ((o.pos[0] - x).powi(2) + (o.pos[1] - y).powi(2)).sqrt() > o.size + size + 1.0
            }) {
                placed = Some([x, y]);
                break;
            }
        }
        let Some(pos) = placed else { continue };
        // One draw either way, so `drift_frac = 0` leaves the rest of the stream as it was.
        let d = cfg.drift_frac;
        let vx = if d > 0.0 {
            rng.random_range(-d..d)
        } else {
            rng.random::<f64>();
            0.0
        };
        let vel = [vx * w, rng.random_range(-0.35..0.15) * sqrt_gh];
        let obj = if is_char {
            let k = rng.random_range(0..cast.len());
            SceneObject::character(cast.swap_remove(k), size, pos, vel)
        } else {
            let shape = *weighted(
                rng,
                &[
                    (Shape::Ball, 0.4),
                    (Shape::Box, 0.25),
                    (Shape::Triangle, 0.15),
                    (Shape::Diamond, 0.2),
                ],
            );
            let drawn = *weighted(
                rng,
                &[
                    (Texture::Plain, 0.35),
                    (Texture::Striped, 0.25),
                    (Texture::Dotted, 0.2),
                    (Texture::Checkered, 0.2),
                ],
            );
            let texture = if cfg.textures { drawn } else { Texture::Plain };
            let (cname, rgb) = colors.swap_remove(rng.random_range(0..colors.len()));
            let material = mat_of(OBJECT_MATERIALS.choose(rng).expect("object materials"));
            SceneObject {
                shape,
                texture,
                material,
                color_name: cname.to_string(),
                rgb,
                size,
                pos,
                vel,
                character: None,
            }
        };
        objects.push(obj);
    }

    let occluder = if rng.random_bool(cfg.occluder_prob) && !objects.is_empty() {
        let max_r = objects.iter().map(|o| o.size).fold(0.0, f64::max);
        let pw = (w * rng.random_range(0.18..0.28))
            .max((2.4 * max_r).ceil())
            .min(w * 0.45)
            .round();
        let x0 = (w * rng.random_range(0.3..0.55))
            .min(w - pw - 2.0)
            .max(2.0)
            .round();
        let y0 = (h * rng.random_range(0.12..0.4)).round();
        let (color_name, rgb) = *PANEL_COLORS.choose(rng).expect("panel colours");
        // Send the first object towards the panel so it passes behind it.
        let o = &mut objects[0];
        let centre = x0 + pw * 0.5;
        let speed = rng.random_range(0.3..0.55) * w;
        o.vel[0] = if centre >= o.pos[0] { speed } else { -speed };
        Some(Panel {
            x0,
            y0,
            x1: x0 + pw,
            y1: floor_y,
            rgb,
            color_name,
        })
    } else {
        None
    };
    Scene {
        gravity,
        floor,
        wall,
        floor_y,
        occluder,
        objects,
    }
}
