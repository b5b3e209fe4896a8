//! Audio files through symphonia (WAV, FLAC, MP3, Ogg Vorbis, AAC in MP4/M4A) and
//! sample-rate conversion through rubato.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::{MediaError, Result};
use crate::clip::Audio;

/// Decodes the first audio track of an audio or MP4 file into interleaved `f32`.
///
/// `ext_hint` (e.g. `"mp3"`) helps the format probe; the bytes decide.
pub fn decode_audio(bytes: &[u8], ext_hint: Option<&str>) -> Result<Audio> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = ext_hint {
        hint.with_extension(e);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| MediaError::Decode(format!("audio container: {e}")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| MediaError::Decode("no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| MediaError::Unsupported(format!("audio codec: {e}")))?;
    let mut samples = Vec::new();
    let (mut channels, mut rate) = (0u16, 0u32);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(MediaError::Decode(format!("audio packet: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                channels = spec.channels.count() as u16;
                rate = spec.rate;
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                samples.extend_from_slice(sb.samples());
            }
            Err(SymError::DecodeError(e)) => {
                return Err(MediaError::Decode(format!("audio frame: {e}")));
            }
            Err(e) => return Err(MediaError::Decode(format!("audio: {e}"))),
        }
    }
    if channels == 0 || rate == 0 {
        return Err(MediaError::Decode("audio track decoded to nothing".into()));
    }
    Ok(Audio {
        samples,
        channels,
        sample_rate: rate,
    })
}

/// Converts `audio` to `rate` Hz (FFT resampler; output delay removed, so sample `i`
/// of the output plays at the same time as sample `i·rate_in/rate` of the input).
pub fn resample_audio(audio: &Audio, rate: u32) -> Result<Audio> {
    if rate == 0 || audio.sample_rate == 0 || audio.channels == 0 {
        return Err(MediaError::Invalid(format!(
            "resample {} Hz x{} -> {rate} Hz: rates and channels must be positive",
            audio.sample_rate, audio.channels
        )));
    }
    if rate == audio.sample_rate {
        return Ok(audio.clone());
    }
    let ch = audio.channels as usize;
    let n_in = audio.num_frames();
    let n_out = ((n_in as u64 * rate as u64 + audio.sample_rate as u64 / 2)
        / audio.sample_rate as u64) as usize;
    // [N·C] interleaved -> C × [N] planar
    let planar: Vec<Vec<f32>> = (0..ch)
        .map(|c| audio.samples.iter().skip(c).step_by(ch).copied().collect())
        .collect();
    let chunk = 1024;
    let err = |e: String| MediaError::Invalid(format!("resample: {e}"));
    let mut rs = FftFixedIn::<f32>::new(audio.sample_rate as usize, rate as usize, chunk, 2, ch)
        .map_err(|e| err(e.to_string()))?;
    let delay = rs.output_delay();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(n_out + delay + chunk); ch];
    let mut pos = 0;
    while out[0].len() < n_out + delay {
        let need = rs.input_frames_next();
        let block: Vec<Vec<f32>> = planar
            .iter()
            .map(|p| {
                let mut b: Vec<f32> = p[pos.min(n_in)..(pos + need).min(n_in)].to_vec();
                b.resize(need, 0.0); // zero-pad past the end to flush the filter
                b
            })
            .collect();
        pos += need;
        let y = rs.process(&block, None).map_err(|e| err(e.to_string()))?;
        for (o, yc) in out.iter_mut().zip(y) {
            o.extend_from_slice(&yc);
        }
    }
    // C × [N'] planar -> [N'·C] interleaved, dropping the filter delay
    let mut samples = Vec::with_capacity(n_out * ch);
    for i in 0..n_out {
        for o in &out {
            samples.push(o[i + delay]);
        }
    }
    Ok(Audio {
        samples,
        channels: audio.channels,
        sample_rate: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click_at(n: usize, at: usize, rate: u32) -> Audio {
        let mut s = vec![0.0; n];
        for (k, v) in s.iter_mut().enumerate().skip(at).take(rate as usize / 200) {
            *v = 0.8 * (1.0 - (k - at) as f32 / (rate as f32 / 200.0));
        }
        Audio {
            samples: s,
            channels: 1,
            sample_rate: rate,
        }
    }

    #[test]
    fn resampling_keeps_length_and_timing() {
        let a = click_at(16_000, 8_000, 16_000); // a click at 0.5 s
        let b = resample_audio(&a, 48_000).unwrap();
        assert_eq!(b.num_frames(), 48_000);
        let peak = b
            .samples
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .unwrap()
            .0;
        assert!(
            (peak as i64 - 24_000).abs() < 48,
            "click moved to sample {peak}"
        );
        let c = resample_audio(&b, 22_050).unwrap();
        assert_eq!(c.num_frames(), 22_050);
    }

    #[test]
    fn wav_decodes_through_symphonia_too() {
        let a = click_at(4000, 100, 8000);
        let b = decode_audio(&super::super::encode_wav(&a).unwrap(), Some("wav")).unwrap();
        assert_eq!((b.sample_rate, b.channels, b.num_frames()), (8000, 1, 4000));
        assert!(decode_audio(b"garbage bytes here", Some("mp3")).is_err());
    }
}
