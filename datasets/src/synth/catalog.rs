//! The world's vocabulary: named colours, materials (restitution, colour, impact timbre),
//! shapes and textures.

/// How a material sounds when struck: a few decaying partials (modal synthesis).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timbre {
    /// Fundamental of the struck body, Hz (objects scale it with their size).
    pub base_hz: f64,
    /// Partial frequencies as multiples of the fundamental.
    pub ratios: &'static [f64],
    /// Relative amplitude of each partial.
    pub amps: &'static [f64],
    /// Decay time constant of the fundamental, s (higher partials decay faster).
    pub decay_s: f64,
    /// Level of the broadband contact click relative to the partials (0–1).
    pub click: f64,
    /// Share of each partial that keeps ringing for `decay_s`; the rest is the strike,
    /// which dies within about 12 ms (ringing materials keep a loud, sharp onset).
    pub ring: f64,
}

/// A material: how bouncy it is, how it looks and how it sounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Material {
    /// Name used in labels (`"wood"`).
    pub name: &'static str,
    /// Adjective used in captions (`"wooden"`).
    pub adjective: &'static str,
    /// Coefficient of restitution (0–1); a contact uses the geometric mean of both sides.
    pub restitution: f64,
    /// Density relative to water-ish plastic (sets object mass with its area).
    pub density: f64,
    /// Base colour when drawn as a floor or wall.
    pub color: [u8; 3],
    /// Impact sound.
    pub timbre: Timbre,
    /// Words for the impact sound in captions.
    pub sound_words: &'static [&'static str],
}

const fn mat(
    name: &'static str,
    adjective: &'static str,
    restitution: f64,
    density: f64,
    color: [u8; 3],
    timbre: Timbre,
    sound_words: &'static [&'static str],
) -> Material {
    Material {
        name,
        adjective,
        restitution,
        density,
        color,
        timbre,
        sound_words,
    }
}

/// Every material of the world.
pub const MATERIALS: &[Material] = &[
    mat(
        "wood",
        "wooden",
        0.55,
        0.7,
        [150, 104, 60],
        Timbre {
            base_hz: 520.0,
            ratios: &[1.0, 2.71, 5.15],
            amps: &[1.0, 0.5, 0.2],
            decay_s: 0.06,
            click: 0.5,
            ring: 1.0,
        },
        &["hollow knock", "woody clack", "dry tock"],
    ),
    mat(
        "metal",
        "metal",
        0.75,
        3.0,
        [158, 164, 176],
        Timbre {
            base_hz: 880.0,
            ratios: &[1.0, 2.76, 5.40, 8.93],
            amps: &[1.0, 0.7, 0.45, 0.3],
            decay_s: 0.3,
            click: 0.4,
            ring: 0.3,
        },
        &[
            "bright metallic clang",
            "ringing clank",
            "sharp metallic ping",
        ],
    ),
    mat(
        "rubber",
        "rubber",
        0.85,
        1.2,
        [62, 60, 66],
        Timbre {
            base_hz: 150.0,
            ratios: &[1.0, 1.6, 2.3],
            amps: &[1.0, 0.4, 0.15],
            decay_s: 0.035,
            click: 0.3,
            ring: 1.0,
        },
        &["dull thud", "muffled thump", "soft bump"],
    ),
    mat(
        "stone",
        "stone",
        0.45,
        2.5,
        [132, 130, 124],
        Timbre {
            base_hz: 360.0,
            ratios: &[1.0, 2.32, 3.91],
            amps: &[1.0, 0.6, 0.35],
            decay_s: 0.045,
            click: 0.8,
            ring: 1.0,
        },
        &["sharp crack", "gritty knock", "hard clack"],
    ),
    mat(
        "ice",
        "icy",
        0.65,
        0.9,
        [188, 222, 240],
        Timbre {
            base_hz: 1700.0,
            ratios: &[1.0, 2.93, 5.82],
            amps: &[1.0, 0.45, 0.25],
            decay_s: 0.15,
            click: 0.5,
            ring: 0.4,
        },
        &["high glassy clink", "crisp tink", "icy click"],
    ),
    mat(
        "glass",
        "glass",
        0.7,
        2.5,
        [176, 208, 204],
        Timbre {
            base_hz: 1400.0,
            ratios: &[1.0, 2.41, 4.63],
            amps: &[1.0, 0.5, 0.3],
            decay_s: 0.22,
            click: 0.4,
            ring: 0.35,
        },
        &["clear chime-like clink", "glassy ting", "bright clink"],
    ),
    mat(
        "plastic",
        "plastic",
        0.68,
        1.0,
        [210, 210, 200],
        Timbre {
            base_hz: 700.0,
            ratios: &[1.0, 2.2, 3.7],
            amps: &[1.0, 0.4, 0.2],
            decay_s: 0.05,
            click: 0.6,
            ring: 1.0,
        },
        &["light plastic tap", "hollow clack", "plasticky click"],
    ),
    mat(
        "plush",
        "plush",
        0.4,
        0.3,
        [180, 150, 150],
        Timbre {
            base_hz: 110.0,
            ratios: &[1.0, 1.5],
            amps: &[1.0, 0.3],
            decay_s: 0.03,
            click: 0.2,
            ring: 1.0,
        },
        &["soft thump", "cushioned flop", "quiet pat"],
    ),
];

/// Materials a floor may be made of.
pub const FLOOR_MATERIALS: &[&str] = &["wood", "metal", "rubber", "stone", "ice", "glass"];
/// Materials the side walls may be made of.
pub const WALL_MATERIALS: &[&str] = &["wood", "metal", "rubber", "stone", "ice", "glass"];
/// Materials a plain (non-character) object may be made of.
pub const OBJECT_MATERIALS: &[&str] = &["rubber", "wood", "metal", "plastic", "glass", "stone"];

/// Looks up a material by name.
pub fn material(name: &str) -> Option<Material> {
    MATERIALS.iter().copied().find(|m| m.name == name)
}

/// The material named `name`; panics on names outside [`MATERIALS`] (internal use only).
pub(crate) fn mat_of(name: &str) -> Material {
    material(name).unwrap_or_else(|| panic!("unknown material {name}"))
}

/// Named object colours (name, RGB). None of them occurs in backgrounds or panels.
pub const PALETTE: &[(&str, [u8; 3])] = &[
    ("red", [220, 38, 38]),
    ("green", [40, 176, 64]),
    ("blue", [40, 88, 222]),
    ("yellow", [242, 210, 36]),
    ("purple", [150, 58, 202]),
    ("orange", [246, 138, 28]),
    ("cyan", [36, 200, 222]),
    ("white", [246, 246, 246]),
    ("pink", [246, 128, 182]),
];

/// The drawn shape of a plain object (all collide as circles of radius `size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A disc.
    Ball,
    /// An axis-aligned square of half side `size`.
    Box,
    /// An upright triangle: apex at the top, base on the bottom of the bounding square.
    Triangle,
    /// A square rotated by 45°, corners at ±`size`.
    Diamond,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [Shape::Ball, Shape::Box, Shape::Triangle, Shape::Diamond];

    /// Label name (`"ball"`).
    pub fn name(self) -> &'static str {
        match self {
            Shape::Ball => "ball",
            Shape::Box => "box",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
        }
    }

    /// Caption nouns for the shape.
    pub(crate) fn nouns(self) -> &'static [&'static str] {
        match self {
            Shape::Ball => &["ball", "ball", "sphere", "orb"],
            Shape::Box => &["box", "cube", "block", "box"],
            Shape::Triangle => &["triangle", "wedge", "triangular block"],
            Shape::Diamond => &["diamond", "diamond-shaped tile", "rhombus"],
        }
    }

    /// Whether the normalised point `(u, v)` (units of `size`, y down) is inside.
    pub(crate) fn contains(self, u: f64, v: f64) -> bool {
        match self {
            Shape::Ball => u * u + v * v <= 1.0,
            Shape::Box => u.abs() <= 1.0 && v.abs() <= 1.0,
            Shape::Triangle => v <= 1.0 && u.abs() <= (v + 1.0) * 0.5,
            Shape::Diamond => u.abs() + v.abs() <= 1.0,
        }
    }

    /// Distance from an inside point `(u, v)` to the outline, in units of `size`.
    pub(crate) fn edge_distance(self, u: f64, v: f64) -> f64 {
        match self {
            Shape::Ball => 1.0 - (u * u + v * v).sqrt(),
            Shape::Box => 1.0 - u.abs().max(v.abs()),
            Shape::Triangle => (1.0 - v).min((v + 1.0 - 2.0 * u.abs()) / 5f64.sqrt()),
            Shape::Diamond => (1.0 - u.abs() - v.abs()) / std::f64::consts::SQRT_2,
        }
    }
}

/// Surface pattern of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Texture {
    /// One colour.
    Plain,
    /// Horizontal bands of the secondary colour.
    Striped,
    /// A grid of dots of the secondary colour.
    Dotted,
    /// A checkerboard of both colours.
    Checkered,
}

impl Texture {
    /// Every texture.
    pub const ALL: [Texture; 4] = [
        Texture::Plain,
        Texture::Striped,
        Texture::Dotted,
        Texture::Checkered,
    ];

    /// Label name (`"striped"`).
    pub fn name(self) -> &'static str {
        match self {
            Texture::Plain => "plain",
            Texture::Striped => "striped",
            Texture::Dotted => "dotted",
            Texture::Checkered => "checkered",
        }
    }

    /// Caption adjectives for the texture (empty for plain).
    pub(crate) fn adjectives(self) -> &'static [&'static str] {
        match self {
            Texture::Plain => &["plain", "solid", "single-coloured"],
            Texture::Striped => &["striped", "stripy", "banded"],
            Texture::Dotted => &["dotted", "polka-dot", "spotted"],
            Texture::Checkered => &["checkered", "chequered", "checkerboard"],
        }
    }

    /// Whether the normalised point `(u, v)` shows the secondary colour.
    pub(crate) fn secondary_at(self, u: f64, v: f64) -> bool {
        match self {
            Texture::Plain => false,
            Texture::Striped => ((v * 2.5 + 0.5).floor() as i64).rem_euclid(2) == 1,
            Texture::Dotted => {
                let (cu, cv) = ((u / 0.8).round() * 0.8, (v / 0.8).round() * 0.8);
                (u - cu).powi(2) + (v - cv).powi(2) < 0.26 * 0.26
            }
            Texture::Checkered => {
                ((u * 1.6).floor() as i64 + (v * 1.6).floor() as i64).rem_euclid(2) == 1
            }
        }
    }
}

/// The contrasting colour a texture uses with `rgb` (darker for light colours, lighter
/// for dark ones).
pub fn secondary_color(rgb: [u8; 3]) -> [u8; 3] {
    let lum = 0.299 * rgb[0] as f64 + 0.587 * rgb[1] as f64 + 0.114 * rgb[2] as f64;
    if lum > 140.0 {
        scale(rgb, 0.5)
    } else {
        mix(rgb, [255, 255, 255], 0.6)
    }
}

/// `rgb * k`, clamped.
pub(crate) fn scale(rgb: [u8; 3], k: f64) -> [u8; 3] {
    rgb.map(|c| (c as f64 * k).round().clamp(0.0, 255.0) as u8)
}

/// Linear mix `a + (b - a) * t`.
pub(crate) fn mix(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let mut o = [0u8; 3];
    for i in 0..3 {
        o[i] = (a[i] as f64 + (b[i] as f64 - a[i] as f64) * t)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    o
}
