//! The physics: event-driven rigid circles under gravity with a floor and two side walls.
//!
//! Time advances in windows of at most [`DT`] that also stop exactly at every frame time.
//! Inside a window the motion is ballistic (exact), and contact times with the floor and
//! walls are solved analytically; object pairs use the relative motion over the window
//! (exact up to `g·DT²/2 ≈ 1e-4` px). So every recorded contact time is exact to far below
//! a frame or an audio sample.

use super::config::SynthConfig;
use super::scene::{Panel, Scene};
use crate::labels::Contact;

/// Longest simulation window, s.
pub(crate) const DT: f64 = 1e-3;
/// Normal speed (in units of `sqrt(g·height)`) below which contacts are silent and a
/// body landing on the floor comes to rest (a bounce of under 0.5% of the height).
pub(crate) const REST_SPEED: f64 = 0.1;
/// Most events handled in one window before overlaps are resolved by position only.
const MAX_EVENTS_PER_WINDOW: usize = 64;

/// The state of one object at one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FrameState {
    /// Centre `[x, y]`, px.
    pub pos: [f64; 2],
    /// Velocity `[vx, vy]`, px/s.
    pub vel: [f64; 2],
    /// Rotation of a rolling ball, radians.
    pub angle: f64,
    /// Whether the object rests on the floor.
    pub resting: bool,
}

/// The result of simulating a scene.
#[derive(Clone, Debug)]
pub(crate) struct Simulation {
    /// Per object, per frame (`[object][frame]`).
    pub states: Vec<Vec<FrameState>>,
    /// Per object, per frame: inside the frame and not mostly behind the occluder.
    pub visible: Vec<Vec<bool>>,
    /// Per object, per frame: inside the frame but mostly behind the occluder.
    pub hidden: Vec<Vec<bool>>,
    /// Distance rolled or slid along the floor per object, px.
    pub floor_travel: Vec<f64>,
    /// Every recorded contact, in time order.
    pub contacts: Vec<Contact>,
}

#[derive(Clone, Debug)]
struct Body {
    p: [f64; 2],
    v: [f64; 2],
    r: f64,
    inv_m: f64,
    e: f64,
    ball: bool,
    resting: bool,
    angle: f64,
    omega: f64,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Floor(usize),
    WallLeft(usize),
    WallRight(usize),
    Pair(usize, usize),
}

struct World {
    bodies: Vec<Body>,
    g: f64,
    floor_y: f64,
    width: f64,
    e_floor: f64,
    e_wall: f64,
    rest_speed: f64,
    fps: f64,
    num_frames: usize,
    t_lim: f64,
    contacts: Vec<Contact>,
    floor_travel: Vec<f64>,
}

/// Fraction of the square `[x±r]×[y±r]` covered by `panel`.
pub(crate) fn coverage(panel: &Panel, x: f64, y: f64, r: f64) -> f64 {
    let ox = ((x + r).min(panel.x1) - (x - r).max(panel.x0)).max(0.0);
    let oy = ((y + r).min(panel.y1) - (y - r).max(panel.y0)).max(0.0);
    ox * oy / (4.0 * r * r).max(1e-12)
}

/// Simulates `scene` for the clip length of `cfg`, sampling states at `t = k / fps`.
pub(crate) fn simulate(cfg: &SynthConfig, scene: &Scene) -> Simulation {
    let num_frames = cfg.num_frames();
    let fps = cfg.fps;
    let t_lim = cfg.duration_s.min(num_frames as f64 / fps);
    let g = scene.gravity;
    let bodies: Vec<Body> = scene
        .objects
        .iter()
        .map(|o| Body {
            p: o.pos,
            v: o.vel,
            r: o.size,
            inv_m: 1.0 / o.mass().max(1e-9),
            e: o.material.restitution,
            ball: o.character.is_none() && o.shape == super::catalog::Shape::Ball,
            resting: false,
            angle: 0.0,
            omega: o.vel[0] / o.size.max(1e-9),
        })
        .collect();
    let n = bodies.len();
    let mut w = World {
        bodies,
        g,
        floor_y: scene.floor_y,
        width: cfg.width as f64,
        e_floor: scene.floor.restitution,
        e_wall: scene.wall.restitution,
        rest_speed: REST_SPEED * (g * cfg.height as f64).sqrt(),
        fps,
        num_frames,
        t_lim,
        contacts: Vec::new(),
        floor_travel: vec![0.0; n],
    };
    let mut states = vec![Vec::with_capacity(num_frames); n];
    let mut t = 0.0;
    let mut k = 0usize;
    loop {
        while k < num_frames && t >= k as f64 / fps - 1e-12 {
            for (i, b) in w.bodies.iter().enumerate() {
                states[i].push(FrameState {
                    pos: b.p,
                    vel: b.v,
                    angle: b.angle,
                    resting: b.resting,
                });
            }
            k += 1;
        }
        // Every frame time (k / fps for k < T) lies before t_lim, so all are sampled.
        if t >= t_lim - 1e-12 {
            break;
        }
        let next_frame = if k < num_frames {
            k as f64 / fps
        } else {
            f64::INFINITY
        };
        let t1 = (t + DT).min(next_frame).min(t_lim);
        w.advance(t, t1);
        w.friction(t1 - t);
        t = t1;
    }
    let (mut visible, mut hidden) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, o) in scene.objects.iter().enumerate() {
        let (mut vis, mut hid) = (
            Vec::with_capacity(num_frames),
            Vec::with_capacity(num_frames),
        );
        for s in &states[i] {
            let [x, y] = s.pos;
            let inside =
                (0.0..cfg.width as f64).contains(&x) && (0.0..cfg.height as f64).contains(&y);
            let covered = scene
                .occluder
                .as_ref()
                .is_some_and(|p| coverage(p, x, y, o.size) >= 0.5);
            vis.push(inside && !covered);
            hid.push(inside && covered);
        }
        visible.push(vis);
        hidden.push(hid);
    }
    Simulation {
        states,
        visible,
        hidden,
        floor_travel: w.floor_travel,
        contacts: w.contacts,
    }
}

impl World {
    /// Advances from `t0` to `t1`, handling every event in between in time order.
    fn advance(&mut self, t0: f64, t1: f64) {
        let mut t = t0;
        let mut events = 0;
        while t < t1 {
            let rem = t1 - t;
            match self.earliest(rem) {
                None => {
                    self.drift(rem);
                    break;
                }
                Some((tau, ev)) => {
                    self.drift(tau);
                    t += tau;
                    self.handle(ev, t);
                    events += 1;
                    if events >= MAX_EVENTS_PER_WINDOW {
                        self.drift((t1 - t).max(0.0));
                        break;
                    }
                }
            }
        }
        self.fix_overlaps();
        self.enforce_bounds(t1);
    }

    /// The first event within `rem` seconds, if any.
    fn earliest(&self, rem: f64) -> Option<(f64, Event)> {
        let mut best: Option<(f64, Event)> = None;
        let mut consider = |tau: f64, ev: Event| {
            if tau.is_finite() && (0.0..=rem).contains(&tau) && best.is_none_or(|(b, _)| tau < b) {
                best = Some((tau, ev));
            }
        };
        for (i, b) in self.bodies.iter().enumerate() {
            if !b.resting {
                // y + vy τ + g τ²/2 = floor_y - r, first root τ ≥ 0 while falling.
                let c = (b.p[1] + b.r - self.floor_y).min(0.0);
                let (a, bb) = (0.5 * self.g, b.v[1]);
                let d = (bb * bb - 4.0 * a * c).max(0.0).sqrt();
                let tau = if bb > 0.0 {
                    (-2.0 * c) / (bb + d)
                } else {
                    (-bb + d) / (2.0 * a)
                };
                consider(tau, Event::Floor(i));
            }
            if b.v[0] < 0.0 {
                consider(((b.r - b.p[0]) / b.v[0]).max(0.0), Event::WallLeft(i));
            } else if b.v[0] > 0.0 {
                consider(
                    ((self.width - b.r - b.p[0]) / b.v[0]).max(0.0),
                    Event::WallRight(i),
                );
            }
        }
        for i in 0..self.bodies.len() {
            for j in i + 1..self.bodies.len() {
                let (bi, bj) = (&self.bodies[i], &self.bodies[j]);
                let d = [bj.p[0] - bi.p[0], bj.p[1] - bi.p[1]];
                let u = [bj.v[0] - bi.v[0], bj.v[1] - bi.v[1]];
                let rr = bi.r + bj.r;
                let dist = (d[0] * d[0] + d[1] * d[1]).sqrt();
                let du = d[0] * u[0] + d[1] * u[1];
                if du >= -1e-9 * dist.max(1e-9) {
                    continue; // separating (or sliding tangentially)
                }
                let aa = u[0] * u[0] + u[1] * u[1];
                let cc = dist * dist - rr * rr;
                if cc <= 0.0 {
                    consider(0.0, Event::Pair(i, j));
                    continue;
                }
                let disc = du * du - aa * cc;
                if disc < 0.0 {
                    continue;
                }
                // First root of |d + u τ|² = rr², in the cancellation-free form.
                consider(cc / (-du + disc.sqrt()), Event::Pair(i, j));
            }
        }
        best
    }

    /// Moves every body ballistically by `tau` seconds.
    fn drift(&mut self, tau: f64) {
        if tau <= 0.0 {
            return;
        }
        for (i, b) in self.bodies.iter_mut().enumerate() {
            b.p[0] += b.v[0] * tau;
            if b.resting {
                self.floor_travel[i] += b.v[0].abs() * tau;
                b.omega = if b.ball { b.v[0] / b.r } else { 0.0 };
            } else {
                b.p[1] += b.v[1] * tau + 0.5 * self.g * tau * tau;
                b.v[1] += self.g * tau;
            }
            b.angle += b.omega * tau;
        }
    }

    /// Rolling / sliding friction of resting bodies over `dt` seconds.
    fn friction(&mut self, dt: f64) {
        for b in &mut self.bodies {
            if b.resting {
                let decel = if b.ball { 0.05 } else { 0.35 } * self.g;
                let s = (b.v[0].abs() - decel * dt).max(0.0);
                b.v[0] = s * b.v[0].signum();
                if b.ball {
                    b.omega = b.v[0] / b.r;
                }
            }
        }
    }

    fn record(&mut self, t: f64, object: usize, other: String, speed: f64) {
        if speed < self.rest_speed || t >= self.t_lim {
            return;
        }
        let frame =
            ((t * self.fps).floor().max(0.0) as usize).min(self.num_frames.saturating_sub(1));
        self.contacts.push(Contact {
            time_s: t,
            frame: frame as u32,
            object: object as u32,
            other,
            speed,
        });
    }

    /// A body meets the floor moving down at `b.v[1]`: bounce, or come to rest when slow.
    fn floor_hit(&mut self, i: usize, t: f64) {
        let speed = self.bodies[i].v[1].max(0.0);
        let e = (self.bodies[i].e * self.e_floor).sqrt();
        let rest_speed = self.rest_speed;
        let floor_y = self.floor_y;
        let b = &mut self.bodies[i];
        b.p[1] = floor_y - b.r;
        if speed < rest_speed {
            b.v[1] = 0.0;
            b.resting = true;
        } else {
            b.v[1] = -e * speed;
            b.resting = false;
            b.v[0] *= if b.ball { 0.97 } else { 0.85 };
        }
        if b.ball {
            b.omega = b.v[0] / b.r;
        }
        self.record(t, i, "floor".into(), speed);
    }

    /// A body meets a side wall: reflect its horizontal velocity with the wall's restitution.
    fn wall_hit(&mut self, i: usize, left: bool, t: f64) {
        let e = (self.bodies[i].e * self.e_wall).sqrt();
        let width = self.width;
        let b = &mut self.bodies[i];
        let speed = b.v[0].abs();
        b.v[0] = if left { e * speed } else { -e * speed };
        b.p[0] = if left { b.r } else { width - b.r };
        if b.ball {
            b.omega = if b.resting {
                b.v[0] / b.r
            } else {
                -b.omega * e
            };
        }
        let other = if left { "wall_left" } else { "wall_right" };
        self.record(t, i, other.into(), speed);
    }

    /// Puts any body that ended up past the floor or a wall (after a crowded window hit
    /// the event cap) back on the boundary, bouncing it if it still moves outwards.
    fn enforce_bounds(&mut self, t: f64) {
        for i in 0..self.bodies.len() {
            let b = &mut self.bodies[i];
            if !b.resting && b.p[1] + b.r > self.floor_y {
                b.p[1] = self.floor_y - b.r;
                if b.v[1] > 0.0 {
                    self.floor_hit(i, t);
                }
            }
            let b = &mut self.bodies[i];
            if b.p[0] < b.r {
                b.p[0] = b.r;
                if b.v[0] < 0.0 {
                    self.wall_hit(i, true, t);
                }
            } else if b.p[0] > self.width - b.r {
                b.p[0] = self.width - b.r;
                if b.v[0] > 0.0 {
                    self.wall_hit(i, false, t);
                }
            }
        }
    }

    fn handle(&mut self, ev: Event, t: f64) {
        match ev {
            Event::Floor(i) => self.floor_hit(i, t),
            Event::WallLeft(i) => self.wall_hit(i, true, t),
            Event::WallRight(i) => self.wall_hit(i, false, t),
            Event::Pair(i, j) => {
                let (bi, bj) = (&self.bodies[i], &self.bodies[j]);
                let d = [bj.p[0] - bi.p[0], bj.p[1] - bi.p[1]];
                let dist = (d[0] * d[0] + d[1] * d[1]).sqrt().max(1e-9);
                let nrm = [d[0] / dist, d[1] / dist];
                let vn = (bj.v[0] - bi.v[0]) * nrm[0] + (bj.v[1] - bi.v[1]) * nrm[1];
                if vn >= 0.0 {
                    return;
                }
                let speed = -vn;
                // Slow contacts are perfectly inelastic: bodies settle against each other.
                let e = if speed < self.rest_speed {
                    0.0
                } else {
                    (bi.e * bj.e).sqrt()
                };
                let jimp = (1.0 + e) * speed / (bi.inv_m + bj.inv_m);
                let (wi, wj) = (bi.inv_m, bj.inv_m);
                for (k, s) in [(i, -wi), (j, wj)] {
                    let b = &mut self.bodies[k];
                    b.v[0] += s * jimp * nrm[0];
                    b.v[1] += s * jimp * nrm[1];
                }
                self.record(t, i, format!("object:{j}"), speed);
                for k in [i, j] {
                    let b = &mut self.bodies[k];
                    if b.resting {
                        if b.v[1] < 0.0 {
                            b.resting = false; // knocked up off the floor
                        } else if b.v[1] > 0.0 {
                            b.resting = false;
                            self.floor_hit(k, t); // pushed into the floor: it pushes back
                        }
                    }
                }
            }
        }
    }

    /// Pushes overlapping bodies apart (position only); resting bodies only move sideways.
    fn fix_overlaps(&mut self) {
        let n = self.bodies.len();
        for i in 0..n {
            for j in i + 1..n {
                let (bi, bj) = (&self.bodies[i], &self.bodies[j]);
                let d = [bj.p[0] - bi.p[0], bj.p[1] - bi.p[1]];
                let dist = (d[0] * d[0] + d[1] * d[1]).sqrt();
                let overlap = bi.r + bj.r - dist;
                if overlap <= 1e-9 {
                    continue;
                }
                let nrm = if dist > 1e-9 {
                    [d[0] / dist, d[1] / dist]
                } else {
                    [1.0, 0.0]
                };
                let (mut wi, mut wj) = (bi.inv_m, bj.inv_m);
                if bi.resting && !bj.resting {
                    wi = 0.0;
                } else if bj.resting && !bi.resting {
                    wj = 0.0;
                }
                let sum = (wi + wj).max(1e-12);
                let (si, sj) = (overlap * wi / sum, overlap * wj / sum);
                let (width, floor_y) = (self.width, self.floor_y);
                for (k, s) in [(i, -si), (j, sj)] {
                    let b = &mut self.bodies[k];
                    b.p[0] = (b.p[0] + s * nrm[0]).clamp(b.r, width - b.r);
                    if !b.resting {
                        b.p[1] = (b.p[1] + s * nrm[1]).min(floor_y - b.r);
                    }
                }
            }
        }
    }
}
