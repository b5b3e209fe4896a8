//! Drawing scenes into RGB frames: the room (back wall and floor in their materials'
//! colours and patterns), floor shadows, objects with textures or character sprites, and
//! the occluding panel in front.
//!
//! Pixel `(col, row)` covers `[col, col+1) × [row, row+1)` in label coordinates and is
//! filled when its centre `(col + 0.5, row + 0.5)` lies inside a shape (no antialiasing).

use sonora_framework::Frames;

use super::catalog::{Material, mix, scale, secondary_color};
use super::characters::sprite_pixel;
use super::config::SynthConfig;
use super::scene::{Panel, Scene, SceneObject};
use super::world::{FrameState, Simulation};

/// A cheap deterministic per-pixel hash in [0, 1) for surface grain.
fn grain(x: usize, y: usize, salt: u64) -> f64 {
    let mut h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ salt;
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The colour of the back wall at pixel `(x, y)`.
fn wall_pixel(m: &Material, x: usize, y: usize, w: usize, h: usize, floor_y: f64) -> [u8; 3] {
    let c = plain_wall_pixel(m, y, floor_y);
    let s = |k: f64| scale(c, k);
    match m.name {
        "wood" => {
            let pw = (w / 6).max(4);
            if x.is_multiple_of(pw) {
                s(0.72)
            } else {
                s(0.96 + 0.08 * grain(x / pw, 0, 11) + 0.03 * grain(x, y / 3, 12))
            }
        }
        "metal" => {
            let ph = (h / 4).max(6);
            let pw = (w / 3).max(8);
            let (ix, iy) = (x % pw, y % ph);
            if iy == 0 {
                s(0.75)
            } else if (ix == 2 || ix == pw - 2) && (iy == 2 || iy == ph - 2) {
                s(1.2)
            } else {
                s(1.0 + 0.06 * ((x + y) as f64 * 0.3).sin())
            }
        }
        "stone" => {
            let bh = (h / 8).max(4);
            let bw = 2 * bh;
            let row = y / bh;
            let off = if row % 2 == 1 { bw / 2 } else { 0 };
            if y.is_multiple_of(bh) || (x + off).is_multiple_of(bw) {
                mix(c, [235, 230, 220], 0.35)
            } else {
                s(0.92 + 0.12 * grain((x + off) / bw, row, 21))
            }
        }
        "ice" => {
            let period = (w / 3).max(6);
            if (x + y) % period < 2 {
                mix(c, [255, 255, 255], 0.5)
            } else {
                s(0.97 + 0.04 * grain(x, y, 31))
            }
        }
        "glass" => {
            let top = mix(
                c,
                [235, 245, 255],
                0.5 * (1.0 - y as f64 / floor_y.max(1.0)),
            );
            if x.is_multiple_of((w / 3).max(6)) {
                scale(top, 0.8)
            } else {
                top
            }
        }
        _ => s(0.96 + 0.06 * grain(x, y, 41)),
    }
}

/// The colour of the floor at pixel `(x, y)` (`y` at or below the floor line).
fn floor_pixel(
    m: &Material,
    same_as_wall: bool,
    x: usize,
    y: usize,
    w: usize,
    floor_row: usize,
) -> [u8; 3] {
    // the material's colour, or the lit front edge of the floor
    let c = plain_floor_pixel(m, same_as_wall, y, floor_row);
    let dy = y - floor_row;
    if dy == 0 {
        return c;
    }
    match m.name {
        "wood" => {
            let board = (dy - 1) / 3;
            let seam_x = (w / 3).max(6);
            if (dy - 1) % 3 == 2 || (x + board * 7).is_multiple_of(seam_x) {
                scale(c, 0.75)
            } else {
                c
            }
        }
        "stone" => {
            let t = 5;
            if (dy - 1) % t == t - 1 || (x + ((dy - 1) / t) * 3).is_multiple_of(2 * t) {
                mix(c, [230, 225, 215], 0.3)
            } else {
                scale(c, 0.93 + 0.1 * grain(x / 5, dy / 5, 51))
            }
        }
        "metal" => {
            if (x + 2 * dy).is_multiple_of(5) && dy % 2 == 1 {
                scale(c, 1.25)
            } else {
                c
            }
        }
        "ice" => {
            if (x + dy * 2) % (w / 2).max(8) < 2 {
                mix(c, [255, 255, 255], 0.45)
            } else {
                c
            }
        }
        "glass" => mix(c, [240, 250, 255], 0.25 * (1.0 / dy as f64)),
        _ => scale(c, 0.95 + 0.08 * grain(x, y, 61)),
    }
}

/// The back wall without its pattern: the material's colour, lighter near the top and a
/// little darker towards the floor.
fn plain_wall_pixel(m: &Material, y: usize, floor_y: f64) -> [u8; 3] {
    scale(m.color, 1.1 - 0.2 * (y as f64 / floor_y.max(1.0)))
}

/// The floor without its pattern: the material's colour with the lit front edge.
fn plain_floor_pixel(m: &Material, same_as_wall: bool, y: usize, floor_row: usize) -> [u8; 3] {
    let c = scale(m.color, if same_as_wall { 0.72 } else { 0.88 });
    if y == floor_row {
        scale(c, 1.22) // lit front edge of the floor
    } else {
        c
    }
}

/// The static room: `H×W×3` bytes.
pub(crate) fn background(cfg: &SynthConfig, scene: &Scene) -> Vec<u8> {
    let (w, h) = (cfg.width, cfg.height);
    let floor_row = scene.floor_y.ceil().max(0.0) as usize;
    let same = scene.floor.name == scene.wall.name;
    let mut out = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let on_floor = (y as f64 + 0.5) >= scene.floor_y;
            let c = match (on_floor, cfg.room_patterns) {
                (true, true) => floor_pixel(&scene.floor, same, x, y, w, floor_row.min(y)),
                (false, true) => wall_pixel(&scene.wall, x, y, w, h, scene.floor_y),
                (true, false) => plain_floor_pixel(&scene.floor, same, y, floor_row.min(y)),
                (false, false) => plain_wall_pixel(&scene.wall, y, scene.floor_y),
            };
            out[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&c);
        }
    }
    out
}

fn put(frame: &mut [u8], w: usize, x: usize, y: usize, c: [u8; 3]) {
    let i = (y * w + x) * 3;
    frame[i..i + 3].copy_from_slice(&c);
}

fn get(frame: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
    let i = (y * w + x) * 3;
    [frame[i], frame[i + 1], frame[i + 2]]
}

/// Pixel index range covering `[lo, hi)` in continuous coordinates, clipped to `0..n`.
fn span(lo: f64, hi: f64, n: usize) -> std::ops::Range<usize> {
    let a = lo.floor().max(0.0) as usize;
    let b = (hi.ceil().max(0.0) as usize).min(n);
    a.min(b)..b
}

fn draw_shadow(
    frame: &mut [u8],
    cfg: &SynthConfig,
    scene: &Scene,
    o: &SceneObject,
    s: &FrameState,
) {
    let (w, h) = (cfg.width, cfg.height);
    let [x, y] = s.pos;
    let above = (scene.floor_y - (y + o.size)).max(0.0);
    let k = (1.0 - above / (0.6 * h as f64)).clamp(0.2, 1.0);
    let (a, b) = (o.size * 1.1 * k, (o.size * 0.3 * k).max(0.8));
    let cy = scene.floor_y + 0.6;
    for py in span(cy - b, cy + b, h) {
        if (py as f64 + 0.5) < scene.floor_y {
            continue;
        }
        for px in span(x - a, x + a, w) {
            let (dx, dy) = ((px as f64 + 0.5 - x) / a, (py as f64 + 0.5 - cy) / b);
            if dx * dx + dy * dy <= 1.0 {
                let c = get(frame, w, px, py);
                put(frame, w, px, py, mix(c, [0, 0, 0], 0.35 * k));
            }
        }
    }
}

/// The colour of a plain object at normalised `(u, v)`, or `None` outside it.
fn object_pixel(o: &SceneObject, u: f64, v: f64, angle: f64) -> Option<[u8; 3]> {
    if !o.shape.contains(u, v) {
        return None;
    }
    let (sin, cos) = angle.sin_cos();
    let (tu, tv) = (u * cos + v * sin, -u * sin + v * cos);
    let mut c = if o.texture.secondary_at(tu, tv) {
        secondary_color(o.rgb)
    } else {
        o.rgb
    };
    let r = o.size;
    if r >= 6.0 && o.shape.edge_distance(u, v) * r < 0.9 {
        c = scale(c, 0.6);
    } else if r >= 5.0
        && o.shape == super::catalog::Shape::Ball
        && (u + 0.38).powi(2) + (v + 0.4).powi(2) < 0.04
    {
        c = mix(c, [255, 255, 255], 0.45);
    }
    Some(c)
}

fn draw_object(frame: &mut [u8], cfg: &SynthConfig, o: &SceneObject, s: &FrameState) {
    let (w, h) = (cfg.width, cfg.height);
    let [x, y] = s.pos;
    let r = o.size;
    let facing = (s.vel[0] / (0.2 * w as f64)).clamp(-1.0, 1.0);
    for py in span(y - r * 1.05, y + r * 1.05, h) {
        for px in span(x - r * 1.05, x + r * 1.05, w) {
            let (u, v) = ((px as f64 + 0.5 - x) / r, (py as f64 + 0.5 - y) / r);
            let c = match &o.character {
                Some(ch) => sprite_pixel(ch, u, v, facing, r),
                None => object_pixel(o, u, v, s.angle),
            };
            if let Some(c) = c {
                put(frame, w, px, py, c);
            }
        }
    }
}

fn draw_panel(frame: &mut [u8], cfg: &SynthConfig, p: &Panel) {
    let (w, h) = (cfg.width, cfg.height);
    let (xs, ys) = (span(p.x0, p.x1, w), span(p.y0, p.y1, h));
    let inside = |px: usize, py: usize| {
        let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
        cx >= p.x0 && cx < p.x1 && cy >= p.y0 && cy < p.y1
    };
    for py in ys.clone() {
        for px in xs.clone() {
            if !inside(px, py) {
                continue;
            }
            let border = !inside(px.wrapping_sub(1), py)
                || !inside(px + 1, py)
                || !inside(px, py.wrapping_sub(1));
            let c = if border && (p.x1 - p.x0) >= 6.0 {
                scale(p.rgb, 0.7)
            } else if (px as f64 - p.x0).rem_euclid(4.0) < 1.0 {
                scale(p.rgb, 0.92)
            } else {
                p.rgb
            };
            put(frame, w, px, py, c);
        }
    }
}

/// Renders every frame of a simulated scene: `T×H×W×3`.
pub(crate) fn render(cfg: &SynthConfig, scene: &Scene, sim: &Simulation) -> Frames {
    let t = cfg.num_frames();
    let bg = background(cfg, scene);
    let mut frames = Frames::zeros(t, cfg.height, cfg.width);
    for k in 0..t {
        let f = frames.frame_mut(k);
        f.copy_from_slice(&bg);
        for (i, o) in scene.objects.iter().enumerate() {
            draw_shadow(f, cfg, scene, o, &sim.states[i][k]);
        }
        for (i, o) in scene.objects.iter().enumerate() {
            draw_object(f, cfg, o, &sim.states[i][k]);
        }
        if let Some(p) = &scene.occluder {
            draw_panel(f, cfg, p);
        }
    }
    frames
}
