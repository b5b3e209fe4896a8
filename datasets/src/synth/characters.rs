//! The fixed roster of named characters: distinctive sprites (body shape, pattern, two
//! colours and a face) drawn into clips and into reference images.

use super::catalog::{mix, scale};

/// Body outline of a character sprite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpriteShape {
    /// A round blob.
    Round,
    /// A rounded square (robots, crates).
    Square,
    /// A round head-body with two pointed ears on top (foxes, cats).
    Eared,
    /// A tall rounded capsule (people).
    Capsule,
    /// A diamond (kites).
    Diamond,
    /// A round body wearing a three-pointed crown.
    Crowned,
}

/// Body pattern of a character sprite, in the secondary colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// No pattern.
    Plain,
    /// Diagonal stripes.
    Striped,
    /// Round spots.
    Spotted,
    /// A checkered chest panel.
    Checkered,
    /// One horizontal band (a scarf or belt).
    Band,
}

impl Pattern {
    /// The texture label of an object drawn with this pattern.
    pub fn texture_name(self) -> &'static str {
        match self {
            Pattern::Plain => "plain",
            Pattern::Striped => "striped",
            Pattern::Spotted => "dotted",
            Pattern::Checkered => "checkered",
            Pattern::Band => "banded",
        }
    }
}

/// A named character of the fixed roster.
#[derive(Clone, Debug, PartialEq)]
pub struct Character {
    /// Stable id (`"pip"`), used in `character_ids` and reference folders.
    pub id: String,
    /// Display name (`"Pip"`).
    pub name: String,
    /// `"person"`, `"pet"` or `"object"`.
    pub kind: String,
    /// Body outline.
    pub shape: SpriteShape,
    /// Body pattern.
    pub pattern: Pattern,
    /// Main body colour.
    pub primary: [u8; 3],
    /// Pattern colour.
    pub secondary: [u8; 3],
    /// Colour word for the primary colour (`"orange"`).
    pub color_name: String,
    /// Material of the character's body (sets bounce and impact sound).
    pub material: String,
    /// What it is, for captions (`"fox"`).
    pub noun: String,
    /// One-phrase description used in captions: `"Pip, a small orange fox with white stripes"`.
    pub description: String,
}

#[allow(clippy::too_many_arguments)]
fn ch(
    id: &str,
    name: &str,
    kind: &str,
    shape: SpriteShape,
    pattern: Pattern,
    primary: [u8; 3],
    secondary: [u8; 3],
    color_name: &str,
    material: &str,
    noun: &str,
    rest: &str,
) -> Character {
    Character {
        id: id.into(),
        name: name.into(),
        kind: kind.into(),
        shape,
        pattern,
        primary,
        secondary,
        color_name: color_name.into(),
        material: material.into(),
        noun: noun.into(),
        description: format!("{name}, {rest}"),
    }
}

/// The fixed roster (always the same six characters, in the same order).
pub fn roster() -> Vec<Character> {
    use Pattern as P;
    use SpriteShape as S;
    vec![
        ch(
            "pip",
            "Pip",
            "pet",
            S::Eared,
            P::Striped,
            [232, 118, 34],
            [252, 244, 230],
            "orange",
            "plush",
            "fox",
            "a small orange fox with white stripes",
        ),
        ch(
            "momo",
            "Momo",
            "pet",
            S::Round,
            P::Spotted,
            [238, 150, 196],
            [112, 52, 150],
            "pink",
            "rubber",
            "blob",
            "a round pink blob with purple spots",
        ),
        ch(
            "bolt",
            "Bolt",
            "object",
            S::Square,
            P::Checkered,
            [70, 112, 198],
            [250, 212, 44],
            "blue",
            "metal",
            "robot",
            "a boxy blue robot with a yellow checkered chest",
        ),
        ch(
            "juno",
            "Juno",
            "person",
            S::Capsule,
            P::Band,
            [58, 166, 92],
            [248, 248, 240],
            "green",
            "plush",
            "figure",
            "a tall green figure wearing a white scarf",
        ),
        ch(
            "ziggy",
            "Ziggy",
            "object",
            S::Diamond,
            P::Striped,
            [34, 176, 170],
            [24, 36, 92],
            "teal",
            "plastic",
            "kite",
            "a teal diamond-shaped kite with navy stripes",
        ),
        ch(
            "rex",
            "Rex",
            "person",
            S::Crowned,
            P::Plain,
            [128, 64, 176],
            [246, 196, 40],
            "purple",
            "wood",
            "king",
            "a little purple king with a golden crown",
        ),
    ]
}

/// Whether `(u, v)` (units of the sprite radius, y down) is on the body outline.
fn body_contains(shape: SpriteShape, u: f64, v: f64) -> bool {
    let round = |r: f64| u * u + v * v <= r * r;
    match shape {
        SpriteShape::Round => round(0.95),
        SpriteShape::Square => {
            // Rounded square: corners cut by a circle of radius 0.3.
            let (a, b) = ((u.abs() - 0.62).max(0.0), (v.abs() - 0.62).max(0.0));
            u.abs() <= 0.92 && v.abs() <= 0.92 && a * a + b * b <= 0.3 * 0.3
        }
        SpriteShape::Eared => {
            let body = u * u + (v - 0.12).powi(2) <= 0.82 * 0.82;
            // Ears: triangles with apex at (±0.55, -1.0) and base on the head.
            let ear = |cx: f64| {
                let du = (u - cx).abs();
                (-1.0..=-0.35).contains(&v) && du <= (v + 1.0) * 0.55
            };
            body || ear(0.5) || ear(-0.5)
        }
        SpriteShape::Capsule => {
            let (a, b) = (u.abs(), (v.abs() - 0.45).max(0.0));
            a <= 0.55 && a * a + b * b <= 0.55 * 0.55
        }
        SpriteShape::Diamond => u.abs() + v.abs() <= 1.0,
        SpriteShape::Crowned => u * u + (v - 0.2).powi(2) <= 0.78 * 0.78,
    }
}

/// The crown of [`SpriteShape::Crowned`] (drawn in the secondary colour).
fn crown_contains(u: f64, v: f64) -> bool {
    if !(-1.0..=-0.45).contains(&v) || u.abs() > 0.5 {
        return false;
    }
    if v >= -0.7 {
        return true;
    }
    // Three points at u = -0.4, 0, 0.4.
    let d = [(-0.4f64), 0.0, 0.4]
        .iter()
        .map(|c| (u - c).abs())
        .fold(f64::MAX, f64::min);
    d <= (v + 1.0) * 0.6
}

fn pattern_at(pattern: Pattern, u: f64, v: f64) -> bool {
    match pattern {
        Pattern::Plain => false,
        Pattern::Striped => (((u + v) * 2.2).floor() as i64).rem_euclid(2) == 1,
        Pattern::Spotted => {
            let spots = [
                (-0.4, 0.35),
                (0.45, 0.3),
                (0.0, 0.65),
                (-0.55, -0.2),
                (0.55, -0.3),
            ];
            spots
                .iter()
                .any(|(a, b)| (u - a).powi(2) + (v - b).powi(2) < 0.17 * 0.17)
        }
        Pattern::Checkered => {
            u.abs() < 0.5
                && (0.15..0.75).contains(&v)
                && (((u * 3.0).floor() + (v * 3.0).floor()) as i64).rem_euclid(2) == 1
        }
        Pattern::Band => (0.15..0.38).contains(&v),
    }
}

/// The colour of a character sprite at `(u, v)` (units of the sprite radius, y down),
/// or `None` outside the sprite. `facing` in [-1, 1] turns the face left (−) or right (+);
/// `px` is the sprite radius in pixels (small sprites get simpler, bolder faces).
pub(crate) fn sprite_pixel(
    ch: &Character,
    u: f64,
    v: f64,
    facing: f64,
    px: f64,
) -> Option<[u8; 3]> {
    if ch.shape == SpriteShape::Crowned && crown_contains(u, v) {
        return Some(ch.secondary);
    }
    if !body_contains(ch.shape, u, v) {
        return None;
    }
    // Face: two eyes and a mouth, shifted towards the facing direction.
    let fx = facing.clamp(-1.0, 1.0) * 0.18;
    let (eye_y, eye_dx) = match ch.shape {
        SpriteShape::Capsule => (-0.45, 0.24),
        SpriteShape::Crowned => (0.0, 0.3),
        _ => (-0.15, 0.32),
    };
    let small = px < 7.0;
    let eye_r = if small {
        (0.75 / px.max(1.0)).max(0.2)
    } else {
        0.2
    };
    for side in [-1.0, 1.0] {
        let (ex, ey) = (fx + side * eye_dx, eye_y);
        let d2 = (u - ex).powi(2) + (v - ey).powi(2);
        if d2 <= eye_r * eye_r {
            if small {
                return Some([20, 20, 24]);
            }
            let pupil = (u - ex - facing * 0.08).powi(2) + (v - ey).powi(2) <= 0.1 * 0.1;
            return Some(if pupil { [16, 16, 20] } else { [250, 250, 250] });
        }
    }
    let mouth_y = eye_y + 0.38;
    let mouth_h = if small {
        (0.6 / px.max(1.0)).max(0.08)
    } else {
        0.08
    };
    let mu = u - fx;
    if mu.abs() <= 0.26 && (v - (mouth_y + 0.25 * mu * mu)).abs() <= mouth_h {
        return Some([70, 24, 30]);
    }
    if pattern_at(ch.pattern, u, v) {
        return Some(ch.secondary);
    }
    // A soft shade on the lower body gives volume.
    if v > 0.55 && ch.shape != SpriteShape::Diamond {
        return Some(scale(ch.primary, 0.85));
    }
    Some(ch.primary)
}

/// Neutral grey of reference images.
pub const REFERENCE_BACKGROUND: [u8; 3] = [128, 128, 128];

/// A reference image of `ch`: `size×size×3` RGB bytes (row-major), the character centred
/// on a neutral grey background. Views differ slightly: view 0 faces the camera, view 1
/// looks left, view 2 looks right and is a little larger, view 3 is slightly tilted and
/// offset; further views cycle with small extra variations.
pub fn render_reference(ch: &Character, size: usize, view: u32) -> Vec<u8> {
    let mut out = vec![0u8; size * size * 3];
    for px in out.chunks_exact_mut(3) {
        px.copy_from_slice(&REFERENCE_BACKGROUND);
    }
    let s = size as f64;
    let cycle = (view / 4) as f64;
    let (scale_k, dx, dy, angle, facing): (f64, f64, f64, f64, f64) = match view % 4 {
        0 => (1.0, 0.0, 0.0, 0.0, 0.0),
        1 => (0.96, -0.03, 0.0, 0.0, -1.0),
        2 => (1.06, 0.03, 0.01, 0.0, 1.0),
        _ => (0.92, 0.02, -0.03, 0.14, 0.4),
    };
    let r = s * 0.36 * scale_k * (1.0 - 0.03 * cycle).max(0.7);
    let (cx, cy) = (s * (0.5 + dx), s * (0.5 + dy + 0.02 * cycle.min(2.0)));
    let (sin, cos) = (-angle).sin_cos();
    // Soft floor shadow below the character.
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let (u, v) = ((px * cos - py * sin) / r, (px * sin + py * cos) / r);
            let i = (y * size + x) * 3;
            let c = match sprite_pixel(ch, u, v, facing, r) {
                Some(c) => c,
                None => {
                    let sh = (px / (0.8 * r)).powi(2) + ((py - 1.02 * r) / (0.14 * r)).powi(2);
                    if sh <= 1.0 {
                        mix(REFERENCE_BACKGROUND, [60, 60, 60], 0.35)
                    } else {
                        continue;
                    }
                }
            };
            out[i..i + 3].copy_from_slice(&c);
        }
    }
    out
}
