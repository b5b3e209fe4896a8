//! The sound track: quiet room tone plus one modal-synthesis impact per contact, each
//! starting exactly at sample `round(time_s * sample_rate)` with a sub-millisecond attack.

use rand::Rng;

use super::catalog::{Material, Timbre};
use super::config::SynthConfig;
use super::scene::Scene;
use super::world::Simulation;
use crate::labels::Contact;

/// Linear attack of every impact, s (well under 1 ms, so onsets are sharp).
const ATTACK_S: f64 = 0.0005;
/// Impacts are cut once their envelope falls below this (relative to their peak).
const TAIL_FLOOR: f64 = 1e-3;
/// Decay of the strike part of ringing partials, s.
const STRIKE_S: f64 = 0.012;

fn db_to_amp(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// Room tone: low-passed noise with a slow drift, at `db` dBFS RMS. `n` samples.
fn ambience(n: usize, sr: f64, db: f64, rng: &mut impl Rng) -> Vec<f64> {
    if n == 0 || db <= -120.0 {
        return vec![0.0; n];
    }
    // Two one-pole low-passes (≈ 400 Hz and ≈ 60 Hz) mixed: a soft rumble with some hiss.
    let a1 = 1.0 - (-2.0 * std::f64::consts::PI * 400.0 / sr).exp();
    let a2 = 1.0 - (-2.0 * std::f64::consts::PI * 60.0 / sr).exp();
    let (mut y1, mut y2) = (0.0, 0.0);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let x: f64 = rng.random::<f64>() * 2.0 - 1.0;
        y1 += a1 * (x - y1);
        y2 += a2 * (x - y2);
        out.push(y1 + 3.0 * y2);
    }
    let rms = (out.iter().map(|v| v * v).sum::<f64>() / n as f64)
        .sqrt()
        .max(1e-12);
    let k = db_to_amp(db) / rms;
    out.iter_mut().for_each(|v| *v *= k);
    out
}

/// One struck body: its partials (`(freq Hz, amp, decay s)`), scaled by `pitch`.
fn partials(t: &Timbre, pitch: f64, gain: f64, sr: f64, out: &mut Vec<(f64, f64, f64)>) {
    for (k, (&ratio, &amp)) in t.ratios.iter().zip(t.amps).enumerate() {
        let f = t.base_hz * pitch * ratio;
        if f < 20.0 || f > 0.45 * sr {
            continue;
        }
        // Higher partials die away faster.
        let decay = t.decay_s / (1.0 + 0.6 * k as f64);
        if t.ring < 1.0 {
            out.push((f, amp * gain * (1.0 - t.ring), decay.min(STRIKE_S)));
        }
        out.push((f, amp * gain * t.ring, decay));
    }
}

/// Pitch factor of an object of radius `size` in a frame of height `h`: smaller is higher.
fn size_pitch(size: f64, h: f64) -> f64 {
    (size / (0.1 * h)).max(0.05).powf(-0.8)
}

/// Adds one impact into `out` starting at sample `start`: the modes as damped complex
/// phasors (one multiply per mode and sample) plus a short broadband click.
fn add_impact(
    out: &mut [f64],
    start: usize,
    sr: f64,
    amp: f64,
    modes: &[(f64, f64, f64)],
    click: f64,
    rng: &mut impl Rng,
) {
    let norm: f64 = modes.iter().map(|m| m.1).sum::<f64>().max(1e-9);
    let longest = modes.iter().map(|m| m.2).fold(0.004, f64::max);
    let len = ((longest * (1.0 / TAIL_FLOOR).ln()) * sr).ceil() as usize;
    let attack = (ATTACK_S * sr).max(1.0);
    let tau = 2.0 * std::f64::consts::PI;
    // (re, im) state and per-sample multiplier of each mode.
    let mut osc: Vec<([f64; 2], [f64; 2])> = modes
        .iter()
        .map(|&(f, a, d)| {
            let ph = tau * rng.random::<f64>() * 0.5;
            let decay = (-1.0 / (d * sr)).exp();
            let w = tau * f / sr;
            (
                [a / norm * ph.cos(), a / norm * ph.sin()],
                [decay * w.cos(), decay * w.sin()],
            )
        })
        .collect();
    let click_decay = (-1.0 / (0.0015 * sr)).exp();
    let click_len = (0.012 * sr) as usize;
    let mut click_env = click;
    for n in 0..len {
        let idx = start + n;
        if idx >= out.len() {
            break;
        }
        let env_a = ((n as f64 + 1.0) / attack).min(1.0);
        let mut s = 0.0;
        for (z, m) in osc.iter_mut() {
            s += z[1];
            *z = [z[0] * m[0] - z[1] * m[1], z[0] * m[1] + z[1] * m[0]];
        }
        if n < click_len {
            s += click_env * (rng.random::<f64>() * 2.0 - 1.0);
            click_env *= click_decay;
        }
        out[idx] += amp * env_a * s;
    }
}

/// The surface material a contact's `other` names, if it is the floor or a wall.
fn surface<'a>(scene: &'a Scene, other: &str) -> Option<&'a Material> {
    match other {
        "floor" => Some(&scene.floor),
        "wall_left" | "wall_right" => Some(&scene.wall),
        _ => None,
    }
}

/// Mixes the clip's mono track: `round(duration_s * sample_rate)` samples in [-1, 1].
pub(crate) fn render_audio(
    cfg: &SynthConfig,
    scene: &Scene,
    sim: &Simulation,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let n = cfg.num_samples();
    let sr = cfg.sample_rate as f64;
    let h = cfg.height as f64;
    let mut out = ambience(n, sr, cfg.ambience_db, rng);
    // Reference speed: a drop from most of the frame height.
    let v_ref = (2.0 * scene.gravity * 0.7 * h).sqrt();
    let peak = db_to_amp(cfg.impact_db);
    let mut modes = Vec::new();
    for c in &sim.contacts {
        let Contact {
            time_s,
            object,
            other,
            speed,
            ..
        } = c;
        let o = &scene.objects[*object as usize];
        modes.clear();
        let pitch = size_pitch(o.size, h);
        partials(&o.material.timbre, pitch, 0.6, sr, &mut modes);
        let mut click = o.material.timbre.click;
        if let Some(m) = surface(scene, other) {
            partials(&m.timbre, 1.0, 0.4, sr, &mut modes);
            click = 0.5 * (click + m.timbre.click);
        } else if let Some(j) = other
            .strip_prefix("object:")
            .and_then(|j| j.parse::<usize>().ok())
            && let Some(oj) = scene.objects.get(j)
        {
            partials(
                &oj.material.timbre,
                size_pitch(oj.size, h),
                0.5,
                sr,
                &mut modes,
            );
            click = 0.5 * (click + oj.material.timbre.click);
        }
        if modes.is_empty() {
            // Everything above Nyquist: fall back to a low thump so the contact is heard.
            modes.push((120.0, 1.0, 0.03));
        }
        let amp = peak * (speed / v_ref).powf(0.75).min(1.3);
        let start = (time_s * sr).round() as usize;
        add_impact(&mut out, start, sr, amp, &modes, click, rng);
    }
    out.into_iter().map(|v| v.clamp(-1.0, 1.0) as f32).collect()
}
