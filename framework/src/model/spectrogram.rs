//! Log-magnitude spectrogram audio tokens and their inversion by fast Griffin–Lim.
//!
//! Why a spectrogram: a waveform patch's fine structure (the phase of a 2 kHz partial) is
//! not predictable from the video to the sample, so a regression on waveform patches learns
//! its conditional mean — the impacts cancel out and only the noise bed is left. Magnitudes
//! do not cancel: an impact is a bright column whatever its phase, and its partials are
//! lines whose height says the material. The phase is recovered on decode.
//!
//! Framing: a periodic Hann window of `n = 2·hop` samples, frame `k` centred on sample
//! `k·hop` (zero padding at both ends), `hop + 1` bins. A clip of `N` samples has `N / hop`
//! frames, so an audio token of `audio_patch` samples holds the `audio_patch / hop` frames
//! centred inside its span and its RoPE time stays the time of its sound.
//!
//! Values: `x = 1 + dB / 50`, with `dB = 20·log10(2·|X| / Σw)` clamped to [−100, 0] (a
//! full-scale sine reads 0 dB in its bin), so `x ∈ [−1, 1]` like pixels.
//!
//! Bands: optionally the `hop + 1` bins of a frame are pooled into fewer mel-spaced bands
//! ([`MelBands`]; a band's level is the mean power of its bins, in the same dB scale). The
//! noise bed's bin-to-bin fluctuation then averages out inside a band and a broadband impact
//! brightens most of a frame's few values, so what is left for a small model to predict is
//! mostly when and how loud; on decode each bin takes its band's level and Griffin–Lim finds
//! a phase, so the sound inside a band becomes noise of the band's colour.

use std::f32::consts::PI;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Lowest level kept, dB (maps to −1).
pub const FLOOR_DB: f32 = -100.0;
/// Griffin–Lim iterations on decode.
pub const GRIFFIN_LIM_ITERS: usize = 48;
/// Momentum of fast Griffin–Lim (Perraudin et al. 2013).
const MOMENTUM: f32 = 0.99;

/// Rectangular mel-spaced bands over a frame's STFT bins: band `b` covers bins
/// `edges[b] .. edges[b + 1]`, every bin in exactly one band, every band at least one bin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MelBands {
    edges: Vec<usize>,
}

impl MelBands {
    /// `bands` bands over `bins` STFT bins spanning 0 .. `sample_rate / 2`, equally spaced on
    /// the mel scale (`2595·log10(1 + f / 700)`) where that leaves each band a bin of its own,
    /// one bin wide below that. `None` when `bands` is 0 or more than `bins`.
    pub fn new(bins: usize, bands: usize, sample_rate: u32) -> Option<Self> {
        if bands == 0 || bands > bins {
            return None;
        }
        let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
        let hz = |m: f64| 700.0 * (10f64.powf(m / 2595.0) - 1.0);
        let nyquist = sample_rate as f64 / 2.0;
        let top = mel(nyquist);
        let mut edges = vec![0usize];
        for b in 1..bands {
            let f = hz(top * b as f64 / bands as f64);
            let bin = (f / nyquist * (bins - 1) as f64).round() as usize;
            // at least one bin per band, and room left for the bands above
            let lo = edges[b - 1] + 1;
            let hi = bins - (bands - b);
            edges.push(bin.clamp(lo, hi));
        }
        edges.push(bins);
        Some(Self { edges })
    }

    /// Number of bands.
    pub fn len(&self) -> usize {
        self.edges.len() - 1
    }

    /// Always false (a band set has at least one band).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bins of band `b`.
    pub fn bins_of(&self, b: usize) -> std::ops::Range<usize> {
        self.edges[b]..self.edges[b + 1]
    }
}

/// A short-time Fourier transform with a fixed hop, its inverse and Griffin–Lim.
pub struct Stft {
    hop: usize,
    /// Pooling of bins into bands for tokens (`None` = one value per bin).
    bands: Option<MelBands>,
    window: Vec<f32>,
    /// Σ window (the magnitude scale of a sine).
    window_sum: f32,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl Stft {
    /// An STFT with `hop` samples between frames and a `2·hop` Hann window.
    pub fn new(hop: usize) -> Self {
        let n = 2 * hop;
        let window: Vec<f32> = (0..n)
            .map(|i| (PI * i as f32 / n as f32).sin().powi(2))
            .collect();
        let window_sum = window.iter().sum();
        let mut planner = RealFftPlanner::<f32>::new();
        Self {
            hop,
            bands: None,
            window,
            window_sum,
            forward: planner.plan_fft_forward(n),
            inverse: planner.plan_fft_inverse(n),
        }
    }

    /// The same STFT with tokens pooled into `bands` (see [`MelBands`]).
    pub fn with_bands(mut self, bands: MelBands) -> Self {
        self.bands = Some(bands);
        self
    }

    /// Frequency bins per frame (`hop + 1`).
    pub fn bins(&self) -> usize {
        self.hop + 1
    }

    /// Token values per frame: the band count, or [`Self::bins`] without bands.
    pub fn values_per_frame(&self) -> usize {
        self.bands.as_ref().map_or(self.bins(), MelBands::len)
    }

    /// Complex spectra of `signal` (`len / hop` frames, each [`Self::bins`] values),
    /// frame-major.
    fn analyse(&self, signal: &[f32]) -> Vec<Complex32> {
        let (hop, n) = (self.hop, 2 * self.hop);
        let frames = signal.len() / hop;
        let mut buf = vec![0.0f32; n];
        let mut spec = self.forward.make_output_vec();
        let mut out = Vec::with_capacity(frames * self.bins());
        for k in 0..frames {
            // frame k covers samples k·hop − hop .. k·hop + hop
            for (i, b) in buf.iter_mut().enumerate() {
                let s = (k * hop + i).checked_sub(hop);
                *b = s.and_then(|s| signal.get(s)).copied().unwrap_or(0.0) * self.window[i];
            }
            // the buffers are sized by the plan, so the transform cannot fail
            let _ = self.forward.process(&mut buf, &mut spec);
            out.extend_from_slice(&spec);
        }
        out
    }

    /// Weighted overlap-add of frame spectra back to `len` samples.
    fn synthesise(&self, spec: &[Complex32], len: usize) -> Vec<f32> {
        let (hop, n, bins) = (self.hop, 2 * self.hop, self.bins());
        let mut out = vec![0.0f32; len];
        let mut norm = vec![0.0f32; len];
        let mut buf = self.inverse.make_output_vec();
        let mut frame = self.inverse.make_input_vec();
        for (k, s) in spec.chunks(bins).enumerate() {
            frame.copy_from_slice(s);
            // a real signal's DC and Nyquist bins are real
            frame[0].im = 0.0;
            frame[bins - 1].im = 0.0;
            let _ = self.inverse.process(&mut frame, &mut buf);
            for (i, (&b, &w)) in buf.iter().zip(&self.window).enumerate() {
                if let Some(t) = (k * hop + i).checked_sub(hop).filter(|t| *t < len) {
                    out[t] += b / n as f32 * w;
                    norm[t] += w * w;
                }
            }
        }
        for (o, w) in out.iter_mut().zip(&norm) {
            *o /= w.max(0.1);
        }
        out
    }

    /// Log-magnitude spectrogram of `signal` in [−1, 1], frame-major `[len / hop, v]` with
    /// `v` = [`Self::values_per_frame`] (bins, or bands).
    pub fn encode(&self, signal: &[f32]) -> Vec<f32> {
        let scale = 2.0 / self.window_sum;
        let to_x = |db: f32| 1.0 + db.clamp(FLOOR_DB, 0.0) / -FLOOR_DB * 2.0;
        let spec = self.analyse(signal);
        match &self.bands {
            None => spec
                .iter()
                .map(|c| to_x(20.0 * (c.norm() * scale).max(1e-12).log10()))
                .collect(),
            // [frames, bins] → [frames, bands]: mean power of each band's bins
            Some(bands) => spec
                .chunks(self.bins())
                .flat_map(|frame| {
                    (0..bands.len()).map(move |b| {
                        let r = bands.bins_of(b);
                        let n = r.len() as f32;
                        let power = frame[r].iter().map(|c| c.norm_sqr()).sum::<f32>() / n;
                        to_x(10.0 * (power * scale * scale).max(1e-24).log10())
                    })
                })
                .collect(),
        }
    }

    /// Band tokens `[frames, bands]` → bin tokens `[frames, bins]`: each bin at its band's
    /// level (identity without bands).
    fn expand_bands(&self, tokens: &[f32]) -> Vec<f32> {
        let Some(bands) = &self.bands else {
            return tokens.to_vec();
        };
        tokens
            .chunks(bands.len())
            .flat_map(|frame| {
                (0..bands.len())
                    .flat_map(move |b| std::iter::repeat_n(frame[b], bands.bins_of(b).len()))
            })
            .collect()
    }

    /// A waveform of `len` samples whose spectrogram approximates `tokens` (frame-major
    /// `[len / hop, v]` as [`Self::encode`] makes them, values in [−1, 1]): fast Griffin–Lim
    /// from a seeded random phase.
    pub fn decode(&self, tokens: &[f32], len: usize) -> Vec<f32> {
        let amp = 1.0 / (2.0 / self.window_sum);
        let mag: Vec<f32> = self
            .expand_bands(tokens)
            .iter()
            .map(|&x| {
                let db = (x.clamp(-1.0, 1.0) - 1.0) / 2.0 * -FLOOR_DB;
                if db <= FLOOR_DB + 1e-3 {
                    0.0
                } else {
                    10f32.powf(db / 20.0) * amp
                }
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        let mut spec: Vec<Complex32> = mag
            .iter()
            .map(|&m| Complex32::from_polar(m, rng.random::<f32>() * 2.0 * PI))
            .collect();
        let mut prev = vec![Complex32::new(0.0, 0.0); spec.len()];
        let mut signal = self.synthesise(&spec, len);
        for _ in 0..GRIFFIN_LIM_ITERS {
            // project onto consistent spectra, accelerate, then impose the magnitudes
            let proj = self.analyse(&signal);
            for ((s, p), (&m, q)) in spec
                .iter_mut()
                .zip(prev.iter_mut())
                .zip(mag.iter().zip(&proj))
            {
                let accel = *q + (*q - *p) * MOMENTUM;
                *p = *q;
                let norm = accel.norm();
                *s = if norm > 1e-12 {
                    accel * (m / norm)
                } else {
                    Complex32::new(m, 0.0)
                };
            }
            signal = self.synthesise(&spec, len);
        }
        signal.iter().map(|v| v.clamp(-1.0, 1.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    #[test]
    fn a_full_scale_sine_reads_zero_db_in_its_bin() {
        let hop = 125;
        let st = Stft::new(hop);
        // 1 kHz at 16 kHz: bin 1000 / (16000 / 250) = 15.625 → peak near bin 16
        let sig: Vec<f32> = (0..4000)
            .map(|i| (2.0 * PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let spec = st.encode(&sig);
        assert_eq!(spec.len(), 4000 / hop * st.bins());
        let mid = &spec[16 * st.bins()..17 * st.bins()];
        let (peak, &v) = mid
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        assert!((15..=16).contains(&peak), "peak bin {peak}");
        assert!(v > 0.95, "peak value {v}");
        // far from the tone the spectrum is near the floor
        assert!(mid[100] < -0.5, "{}", mid[100]);
    }

    #[test]
    fn silence_is_the_floor_and_decodes_to_silence() {
        let st = Stft::new(100);
        let spec = st.encode(&vec![0.0; 2000]);
        assert!(spec.iter().all(|&v| v == -1.0));
        assert!(st.decode(&spec, 2000).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn griffin_lim_restores_the_magnitudes_and_the_onset() {
        let hop = 125;
        let st = Stft::new(hop);
        // quiet bed, then a decaying 800 Hz ping starting at sample 6000
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let sig: Vec<f32> = (0..16000)
            .map(|i| {
                let bed = (rng.random::<f32>() - 0.5) * 0.004;
                let ping = if i >= 6000 {
                    let t = (i - 6000) as f32 / 16000.0;
                    0.5 * (2.0 * PI * 800.0 * t).sin() * (-t / 0.08).exp()
                } else {
                    0.0
                };
                bed + ping
            })
            .collect();
        let spec = st.encode(&sig);
        let back = st.decode(&spec, sig.len());
        // spectral convergence: relative error of the re-analysed magnitudes
        let again = st.encode(&back);
        let err = spec
            .iter()
            .zip(&again)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / spec.len() as f32;
        assert!(err < 0.05, "mean |Δx| = {err}");
        // the energy before the onset stays at the bed; after it, at the ping's level
        let before = rms(&back[2000..5800]);
        let after = rms(&back[6000..7000]);
        assert!(before < 0.01, "bed {before}");
        assert!(after > 0.1 && after < 0.6, "ping {after}");
        assert!(after / before > 30.0);
    }

    #[test]
    fn mel_bands_cover_every_bin_once_narrow_below_and_wide_above() {
        let bands = MelBands::new(126, 32, 16000).unwrap();
        assert_eq!(bands.len(), 32);
        let widths: Vec<usize> = (0..32).map(|b| bands.bins_of(b).len()).collect();
        assert_eq!(bands.bins_of(0).start, 0);
        assert_eq!(bands.bins_of(31).end, 126);
        assert!((1..32).all(|b| bands.bins_of(b).start == bands.bins_of(b - 1).end));
        assert!(widths.iter().all(|&w| w >= 1), "{widths:?}");
        // mel spacing: the top band spans many bins, the bottom one a single bin
        assert_eq!(widths[0], 1);
        assert!(widths[31] >= 8, "{widths:?}");
        assert!(widths.windows(2).all(|w| w[1] + 1 >= w[0]), "{widths:?}");
        // as many bands as bins is one bin each; more, or none, is refused
        let one = MelBands::new(10, 10, 16000).unwrap();
        assert!((0..10).all(|b| one.bins_of(b) == (b..b + 1)));
        assert!(MelBands::new(10, 11, 16000).is_none());
        assert!(MelBands::new(10, 0, 16000).is_none());
    }

    #[test]
    fn band_tokens_keep_the_onset_and_the_band_levels_through_decoding() {
        let hop = 125;
        let st = Stft::new(hop).with_bands(MelBands::new(hop + 1, 32, 16000).unwrap());
        assert_eq!(st.values_per_frame(), 32);
        // silence, then a decaying 1.5 kHz ping with a click at sample 6000
        let sig: Vec<f32> = (0..16000)
            .map(|i: usize| match i.checked_sub(6000) {
                Some(k) => {
                    let t = k as f32 / 16000.0;
                    let click = if k < 8 { 0.5 } else { 0.0 };
                    click + 0.5 * (2.0 * PI * 1500.0 * t).sin() * (-t / 0.08).exp()
                }
                None => 0.0,
            })
            .collect();
        let spec = st.encode(&sig);
        assert_eq!(spec.len(), 16000 / hop * 32);
        // frames wholly before the onset (window of frame k reaches sample k·hop + hop) are
        // at the floor; the frame after it is loud in the band of 1.5 kHz
        let frame = |k: usize| &spec[k * 32..(k + 1) * 32];
        assert!(frame(6000 / hop - 2).iter().all(|&v| v == -1.0));
        let loud = frame(6000 / hop + 1);
        let top = (0..32)
            .max_by(|&a, &b| loud[a].total_cmp(&loud[b]))
            .unwrap();
        let f = |bin: usize| bin as f32 * 8000.0 / hop as f32;
        let r = st.bands.as_ref().unwrap().bins_of(top);
        assert!(
            f(r.start) - 100.0 <= 1500.0 && 1500.0 <= f(r.end) + 100.0,
            "loudest band {top} spans {}–{} Hz",
            f(r.start),
            f(r.end)
        );
        // decode, encode again: the band levels louder than −50 dB come back (quieter ones
        // rise a little: each bin of a band gets the band's level, and the phase found for
        // that flat spectrum leaks) and nothing sounds before the onset
        let back = st.decode(&spec, sig.len());
        let again = st.encode(&back);
        let near: Vec<f32> = spec
            .iter()
            .zip(&again)
            .filter(|(a, _)| **a > 0.0)
            .map(|(a, b)| (a - b).abs())
            .collect();
        let err = near.iter().sum::<f32>() / near.len() as f32;
        assert!(err < 0.05, "mean |Δx| over the sounding values = {err}");
        assert!(rms(&back[..5700]) < 1e-3, "{}", rms(&back[..5700]));
        assert!(rms(&back[6000..7000]) > 0.1, "{}", rms(&back[6000..7000]));
    }
}
