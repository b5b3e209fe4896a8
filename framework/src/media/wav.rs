//! WAV in and out (16-bit PCM out; 8/16/24/32-bit integer and 32-bit float in).

use std::io::Cursor;

use super::{MediaError, Result};
use crate::clip::Audio;

/// Encodes `audio` as a 16-bit PCM WAV file (samples clamped to `[-1, 1]`).
pub fn encode_wav(audio: &Audio) -> Result<Vec<u8>> {
    if audio.channels == 0 || audio.sample_rate == 0 {
        return Err(MediaError::Encode(format!(
            "WAV needs at least one channel and a positive sample rate, got {} channels at {} Hz",
            audio.channels, audio.sample_rate
        )));
    }
    let spec = hound::WavSpec {
        channels: audio.channels,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = Vec::with_capacity(44 + audio.samples.len() * 2);
    let err = |e: hound::Error| MediaError::Encode(format!("WAV: {e}"));
    {
        let mut w = hound::WavWriter::new(Cursor::new(&mut buf), spec).map_err(err)?;
        let mut w16 = w.get_i16_writer(audio.samples.len() as u32);
        for &s in &audio.samples {
            w16.write_sample(to_i16(s));
        }
        w16.flush().map_err(err)?;
        w.finalize().map_err(err)?;
    }
    Ok(buf)
}

/// Converts a float sample to 16-bit PCM with clamping and rounding.
fn to_i16(s: f32) -> i16 {
    let s = if s.is_finite() {
        s.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    (s * 32767.0).round() as i16
}

/// Decodes a WAV file into interleaved `f32` audio.
pub fn decode_wav(bytes: &[u8]) -> Result<Audio> {
    let err = |e: hound::Error| MediaError::Decode(format!("WAV: {e}"));
    let r = hound::WavReader::new(Cursor::new(bytes)).map_err(err)?;
    let spec = r.spec();
    let samples: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => r
            .into_samples::<f32>()
            .collect::<std::result::Result<_, _>>()
            .map_err(err)?,
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            r.into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<std::result::Result<_, _>>()
                .map_err(err)?
        }
        (f, b) => {
            return Err(MediaError::Unsupported(format!(
                "WAV sample format {f:?} with {b} bits"
            )));
        }
    };
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(MediaError::Decode(
            "WAV header declares no channels or 0 Hz".into(),
        ));
    }
    Ok(Audio {
        samples,
        channels: spec.channels,
        sample_rate: spec.sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_is_within_one_lsb() {
        let samples: Vec<f32> = (0..800).map(|i| ((i as f32) * 0.05).sin() * 0.8).collect();
        let a = Audio {
            samples,
            channels: 2,
            sample_rate: 22_050,
        };
        let b = decode_wav(&encode_wav(&a).unwrap()).unwrap();
        assert_eq!(
            (b.channels, b.sample_rate, b.samples.len()),
            (2, 22_050, 800)
        );
        for (x, y) in a.samples.iter().zip(&b.samples) {
            assert!((x - y).abs() < 1.0 / 16000.0, "{x} vs {y}");
        }
    }

    #[test]
    fn truncated_wav_is_an_error() {
        let a = Audio::silence(100, 1, 8000);
        let bytes = encode_wav(&a).unwrap();
        assert!(decode_wav(&bytes[..20]).is_err());
        assert!(decode_wav(b"not a wav file at all").is_err());
    }
}
