//! Ground-truth physics labels carried by every synthetic clip (the `physics` column).
//!
//! Units: pixels of the clip's own frame (x right, y down), seconds, and pixels per
//! second (squared). Per-frame arrays have one entry per video frame.

use serde::{Deserialize, Serialize};

/// The scene-level truth of one synthetic clip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhysicsLabels {
    /// Downward acceleration in px/s².
    pub gravity: f64,
    /// Floor material name (`"wood"`, `"metal"`, `"rubber"`, …).
    pub floor_material: String,
    /// Restitution of the floor (0–1).
    pub floor_restitution: f64,
    /// Wall material name.
    pub wall_material: String,
    /// Restitution of the side walls (0–1).
    pub wall_restitution: f64,
    /// Floor surface line (y of the floor top), in px.
    pub floor_y: f64,
    /// An occluding panel objects can pass behind, if the scene has one.
    pub occluder: Option<Occluder>,
    /// Every object in the scene, with its per-frame track.
    pub objects: Vec<ObjectLabel>,
    /// Every contact (object–floor, object–wall, object–object), in time order.
    pub contacts: Vec<Contact>,
}

/// An axis-aligned occluding panel drawn in front of the objects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occluder {
    /// Left edge, px.
    pub x0: f64,
    /// Top edge, px.
    pub y0: f64,
    /// Right edge, px.
    pub x1: f64,
    /// Bottom edge, px.
    pub y1: f64,
}

/// One object and its per-frame ground truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLabel {
    /// Index of the object within the scene (0-based).
    pub id: u32,
    /// `"ball"`, `"box"`, `"triangle"`, … or `"character"`.
    pub shape: String,
    /// Material name; sets restitution and impact timbre.
    pub material: String,
    /// Colour name used in captions (`"red"`).
    pub color: String,
    /// Colour as RGB bytes.
    pub rgb: Vec<u8>,
    /// Surface texture (`"plain"`, `"striped"`, `"dotted"`, `"checkered"`).
    pub texture: String,
    /// Radius (half extent) in px.
    pub size: f64,
    /// Restitution of the object's material (0–1).
    pub restitution: f64,
    /// Roster id when the object is a named character.
    pub character_id: Option<String>,
    /// Centre x per frame, px.
    pub center_x: Vec<f32>,
    /// Centre y per frame, px.
    pub center_y: Vec<f32>,
    /// Whether the object is visible (not occluded, inside the frame) per frame.
    pub visible: Vec<bool>,
}

/// A contact event; every contact has an impact sound at exactly `time_s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Time of contact in seconds from the clip start.
    pub time_s: f64,
    /// The video frame in which the contact happens (`floor(time_s * fps)`).
    pub frame: u32,
    /// Object that made contact.
    pub object: u32,
    /// What it hit: `"floor"`, `"wall_left"`, `"wall_right"`, `"ceiling"` or `"object:N"`.
    pub other: String,
    /// Normal speed at impact, px/s (sets the sound's loudness).
    pub speed: f64,
}
