//! Audio onset detection: where impacts start in a sound track.

use sonora_framework::Audio;

/// Hop between energy frames, seconds.
const HOP_S: f64 = 0.001;
/// Energy window, seconds.
const WIN_S: f64 = 0.002;
/// Minimum gap between two onsets, seconds.
const REFRACTORY_S: f64 = 0.04;

/// Onset times in seconds: moments where short-time energy jumps well above both the
/// preceding 2–10 ms (so a new impact shows over the ring of the last one) and the
/// track's background level.
pub fn detect_onsets(audio: &Audio) -> Vec<f64> {
    let x = audio.to_mono();
    let sr = audio.sample_rate as f64;
    if x.is_empty() || sr <= 0.0 {
        return Vec::new();
    }
    let hop = ((HOP_S * sr).round() as usize).max(1);
    let win = ((WIN_S * sr).round() as usize).max(1);
    // e[j]: mean energy of x[j·hop .. j·hop+win]
    let e: Vec<f64> = (0..x.len() / hop)
        .map(|j| {
            let s = &x[j * hop..(j * hop + win).min(x.len())];
            s.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / s.len().max(1) as f64
        })
        .collect();
    let mut sorted = e.clone();
    sorted.sort_by(f64::total_cmp);
    let background = sorted[sorted.len() / 2].max(1e-9);
    let (look, gap) = ((0.010 / HOP_S) as usize, (0.002 / HOP_S) as usize);
    let refractory = (REFRACTORY_S / HOP_S) as usize;
    let mut out = Vec::new();
    let mut last: Option<usize> = None;
    for j in look..e.len() {
        let prev = &e[j - look..j - gap];
        let base = prev.iter().sum::<f64>() / prev.len() as f64;
        let rising = e[j] > 5.0 * base.max(background) && e[j] > 30.0 * background;
        if rising && last.is_none_or(|l| j - l > refractory) {
            out.push(j as f64 * hop as f64 / sr);
            last = Some(j);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_clicks_over_noise_within_two_ms() {
        let sr = 16_000;
        let mut s: Vec<f32> = (0..sr * 2)
            .map(|i| 0.003 * ((i * 7919 % 97) as f32 / 48.0 - 1.0))
            .collect();
        for &t in &[0.3, 0.9, 1.5] {
            let at = (t * sr as f64) as usize;
            for k in 0..800 {
                s[at + k] += 0.5 * (-(k as f32) / 150.0).exp() * ((k as f32) * 0.6).sin();
            }
        }
        let on = detect_onsets(&Audio {
            samples: s,
            channels: 1,
            sample_rate: sr as u32,
        });
        assert_eq!(on.len(), 3, "{on:?}");
        for (o, t) in on.iter().zip([0.3, 0.9, 1.5]) {
            assert!((o - t).abs() < 0.002, "{o} vs {t}");
        }
    }
}
