//! Any container and codec FFmpeg reads → frames and audio, through Debian's `libav*`
//! libraries and the `ffmpeg-next` binding (cargo feature `ffmpeg`).
//!
//! This is how sonora reads the media people bring (MP4/MOV/MKV/WebM/AVI with H.264 of
//! any profile and chroma format, HEVC, VP9, AV1; AAC, Opus, Vorbis, FLAC, MP3, PCM).
//! sonora's own shards are still written by its MP4 writer and read back by the
//! openh264 decoder in [`super::decode_mp4`].
//!
//! Frames are converted to RGB24 by swscale (area filter), optionally shrunk on the way so
//! that they still cover a target size (ingest never needs more pixels than that, and a
//! 720p60 source then costs a few MiB a second instead of 160). Audio is converted to
//! interleaved f32 at the source rate (any of FFmpeg's sample formats, packed or planar),
//! mono kept mono and the first two channels (front left, front right) of anything wider.

use std::io::Cursor;
use std::sync::Once;

use ff::Rational;
use ff::format::{Pixel, Sample, sample::Type as SampleType};
use ff::media::Type as MediaType;
use ff::software::scaling;
use ff::util::frame::{audio::Audio as AudioFrame, video::Video as VideoFrame};
use ffmpeg_next as ff;

use super::input::{DecodeOptions, MediaInput};
use super::{DecodedMp4, MediaError, Result};
use crate::clip::{Audio, Frames};

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ff::init();
        // FFmpeg prints to stderr by itself; sonora reports its own errors instead.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn open(input: MediaInput) -> Result<ff::format::context::Input> {
    init();
    match input {
        MediaInput::Path(p) => ff::format::input(&p)
            .map_err(|e| MediaError::Decode(format!("FFmpeg cannot open {}: {e}", p.display()))),
        MediaInput::Bytes { bytes, name } => {
            let io = ff::format::context::StreamIo::from_read_seek(Cursor::new(bytes))
                .map_err(|e| MediaError::Decode(format!("FFmpeg cannot read the bytes: {e}")))?;
            ff::format::input_from_stream(io, name.as_deref(), None).map_err(|e| {
                MediaError::Decode(format!(
                    "not a media file FFmpeg recognises ({}): {e}",
                    name.as_deref().unwrap_or("unnamed bytes")
                ))
            })
        }
    }
}

fn rate_of(r: Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| r.numerator() as f64 / r.denominator() as f64)
}

/// A stream's codec and profile in words, e.g. `h264 (High 4:4:4 Predictive, yuv444p)`.
fn describe(params: &ff::codec::Parameters, decoder: Option<&ff::decoder::Opened>) -> String {
    let name = params.id().name().to_string();
    let profile = decoder
        .map(|d| format!("{:?}", d.profile()))
        .filter(|p| p != "Unknown")
        .map(|p| profile_words(&p));
    match profile {
        Some(p) => format!("{name} ({p})"),
        None => name,
    }
}

/// `H264(High444Predictive)` → `High444Predictive`.
fn profile_words(debug: &str) -> String {
    match (debug.find('('), debug.rfind(')')) {
        (Some(a), Some(b)) if b > a => debug[a + 1..b].to_string(),
        _ => debug.to_string(),
    }
}

/// The output size that covers `(th, tw)` with the source's aspect ratio, never larger
/// than the source (even numbers are not needed: frames are RGB here).
fn cover_size(h: usize, w: usize, cover: Option<(usize, usize)>) -> (usize, usize) {
    let Some((th, tw)) = cover else {
        return (h, w);
    };
    let s = (th as f64 / h as f64).max(tw as f64 / w as f64);
    if s >= 1.0 {
        return (h, w);
    }
    let oh = ((h as f64 * s).ceil() as usize).clamp(th.min(h), h);
    let ow = ((w as f64 * s).ceil() as usize).clamp(tw.min(w), w);
    (oh, ow)
}

/// Video decoding state: decoder, converter and the frames so far.
struct VideoPart {
    index: usize,
    decoder: ff::decoder::Video,
    what: String,
    scaler: Option<scaling::Context>,
    out: (usize, usize),
    data: Vec<u8>,
    frames: usize,
    max_bytes: Option<u64>,
    estimate: u64,
}

impl VideoPart {
    fn drain(&mut self) -> Result<()> {
        let mut decoded = VideoFrame::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let (sh, sw) = (decoded.height() as usize, decoded.width() as usize);
            if self.scaler.is_none() {
                self.out = cover_size(sh, sw, self.out_cover());
                let ctx = scaling::Context::get(
                    decoded.format(),
                    sw as u32,
                    sh as u32,
                    Pixel::RGB24,
                    self.out.1 as u32,
                    self.out.0 as u32,
                    scaling::Flags::AREA,
                )
                .map_err(|e| {
                    MediaError::Unsupported(format!(
                        "{}: cannot convert {:?} frames to RGB: {e}",
                        self.what,
                        decoded.format()
                    ))
                })?;
                self.scaler = Some(ctx);
            }
            let mut rgb = VideoFrame::empty();
            self.scaler
                .as_mut()
                .expect("set above")
                .run(&decoded, &mut rgb)
                .map_err(|e| MediaError::Decode(format!("{}: frame conversion: {e}", self.what)))?;
            let (h, w) = self.out;
            let frame_bytes = (h * w * 3) as u64;
            if let Some(max) = self.max_bytes {
                let total = frame_bytes * (self.frames as u64 + 1);
                if total > max {
                    return Err(MediaError::Invalid(format!(
                        "the frames decode to over {} MiB at {w}x{h} (about {} MiB for the whole file), over the limit of {} MiB",
                        total >> 20,
                        (frame_bytes * self.estimate.max(self.frames as u64 + 1)) >> 20,
                        max >> 20
                    )));
                }
            }
            let stride = rgb.stride(0);
            let plane = rgb.data(0);
            for row in 0..h {
                self.data
                    .extend_from_slice(&plane[row * stride..row * stride + w * 3]);
            }
            self.frames += 1;
        }
        Ok(())
    }

    /// The cover target, kept in `out` until the first frame sets the real size.
    fn out_cover(&self) -> Option<(usize, usize)> {
        (self.out != (0, 0)).then_some(self.out)
    }
}

/// Audio decoding state: decoder and the interleaved f32 samples so far.
struct AudioPart {
    index: usize,
    decoder: ff::decoder::Audio,
    what: String,
    channels: u16,
    rate: u32,
    samples: Vec<f32>,
}

/// One sample of `bytes` (at sample index `i`) in FFmpeg's sample type `t`, as f32 in [−1, 1].
fn sample_at(t: Sample, bytes: &[u8], i: usize) -> f32 {
    let b = |n: usize| &bytes[i * n..i * n + n];
    match t {
        Sample::U8(_) => (b(1)[0] as f32 - 128.0) / 128.0,
        Sample::I16(_) => i16::from_ne_bytes(b(2).try_into().expect("2 bytes")) as f32 / 32768.0,
        Sample::I32(_) => {
            i32::from_ne_bytes(b(4).try_into().expect("4 bytes")) as f32 / 2_147_483_648.0
        }
        Sample::I64(_) => {
            (i64::from_ne_bytes(b(8).try_into().expect("8 bytes")) >> 32) as f32 / 2_147_483_648.0
        }
        Sample::F32(_) => f32::from_ne_bytes(b(4).try_into().expect("4 bytes")),
        Sample::F64(_) => f64::from_ne_bytes(b(8).try_into().expect("8 bytes")) as f32,
        Sample::None => 0.0,
    }
}

impl AudioPart {
    /// Appends a decoded frame's samples, interleaved, keeping mono as mono and the first
    /// two channels (front left and right in FFmpeg's layouts) of anything wider.
    fn push(&mut self, f: &AudioFrame) -> Result<()> {
        let fmt = f.format();
        if matches!(fmt, Sample::None) {
            return Err(MediaError::Unsupported(format!(
                "{}: no sample format",
                self.what
            )));
        }
        let src_ch = f.channels().max(1) as usize;
        if self.rate == 0 {
            self.rate = f.rate();
            self.channels = src_ch.min(2) as u16;
        }
        if f.rate() != self.rate {
            return Err(MediaError::Unsupported(format!(
                "{}: the sample rate changes mid-stream ({} → {} Hz)",
                self.what,
                self.rate,
                f.rate()
            )));
        }
        let out_ch = self.channels as usize;
        let n = f.samples();
        let planar = matches!(
            fmt,
            Sample::U8(SampleType::Planar)
                | Sample::I16(SampleType::Planar)
                | Sample::I32(SampleType::Planar)
                | Sample::I64(SampleType::Planar)
                | Sample::F32(SampleType::Planar)
                | Sample::F64(SampleType::Planar)
        );
        let width = fmt.bytes();
        // SAFETY: a decoded frame holds `channels` planes (planar) or one plane (packed)
        // of `samples` samples each; FFmpeg's linesize may pad them, never shorten them.
        let plane = |k: usize, len: usize| -> &[u8] {
            unsafe { std::slice::from_raw_parts(*(*f.as_ptr()).extended_data.add(k), len) }
        };
        self.samples.reserve(n * out_ch);
        for i in 0..n {
            for c in 0..out_ch {
                let c = c.min(src_ch - 1);
                let v = if planar {
                    sample_at(fmt, plane(c, n * width), i)
                } else {
                    sample_at(fmt, plane(0, n * src_ch * width), i * src_ch + c)
                };
                self.samples.push(v);
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<()> {
        let mut decoded = AudioFrame::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            self.push(&decoded)?;
        }
        Ok(())
    }
}

fn open_decoder(
    stream: &ff::format::stream::Stream,
) -> std::result::Result<ff::decoder::Opened, String> {
    let params = stream.parameters();
    let mut ctx = ff::codec::context::Context::from_parameters(params.clone())
        .map_err(|e| format!("{}: {e}", describe(&params, None)))?;
    ctx.set_threading(ff::threading::Config::count(2));
    let dec = ctx.decoder();
    if ff::decoder::find(params.id()).is_none() {
        return Err(format!(
            "no decoder for {} in this FFmpeg build",
            describe(&params, None)
        ));
    }
    dec.open_as(params.id())
        .map_err(|e| format!("{}: the decoder refused it: {e}", describe(&params, None)))
}

/// Decodes every video frame (display order) and the first audio stream of a media file.
///
/// The frame rate is the stream's average rate (frames are taken as they come, so a
/// variable-rate file is treated as constant-rate at its average). A file that cannot be
/// read says why in words a user can act on: the container, the codec and its profile.
pub fn decode_media(input: MediaInput, opts: &DecodeOptions) -> Result<DecodedMp4> {
    let mut ictx = open(input)?;
    let container = ictx.format().name().to_string();
    let vstream = ictx.streams().best(MediaType::Video).ok_or_else(|| {
        let audio = ictx.streams().best(MediaType::Audio).is_some();
        MediaError::Unsupported(if audio {
            format!("{container}: audio only, no video stream")
        } else {
            format!("{container}: no video stream")
        })
    })?;
    let vopened =
        open_decoder(&vstream).map_err(|e| MediaError::Unsupported(format!("video {e}")))?;
    let what = format!("video {}", describe(&vstream.parameters(), Some(&vopened)));
    let fps = rate_of(vstream.avg_frame_rate())
        .or_else(|| rate_of(vstream.rate()))
        .ok_or_else(|| MediaError::Decode(format!("{what}: the stream has no frame rate")))?;
    let mut decoder = vopened
        .video()
        .map_err(|e| MediaError::Decode(format!("{what}: {e}")))?;
    let tb = vstream.time_base();
    let secs = if vstream.duration() > 0 {
        vstream.duration() as f64 * tb.numerator() as f64 / tb.denominator().max(1) as f64
    } else if ictx.duration() > 0 {
        ictx.duration() as f64 / ff::ffi::AV_TIME_BASE as f64
    } else {
        0.0
    };
    let estimate = if vstream.frames() > 0 {
        vstream.frames() as u64
    } else {
        (secs * fps).ceil() as u64
    };
    let (h0, w0) = (decoder.height() as usize, decoder.width() as usize);
    if let (Some(max), true) = (opts.max_frame_bytes, h0 > 0 && w0 > 0) {
        let (h, w) = cover_size(h0, w0, opts.cover);
        let need = (h * w * 3) as u64 * estimate;
        if need > max {
            return Err(MediaError::Invalid(format!(
                "{estimate} frames of {w0}x{h0} decode to about {} MiB at {w}x{h}, over the limit of {} MiB",
                need >> 20,
                max >> 20
            )));
        }
    }
    decoder.set_packet_time_base(tb);
    let mut video = VideoPart {
        index: vstream.index(),
        decoder,
        what: what.clone(),
        scaler: None,
        out: opts.cover.unwrap_or((0, 0)),
        data: Vec::new(),
        frames: 0,
        max_bytes: opts.max_frame_bytes,
        estimate,
    };
    let mut audio = match ictx.streams().best(MediaType::Audio) {
        Some(s) => {
            let opened =
                open_decoder(&s).map_err(|e| MediaError::Unsupported(format!("audio {e}")))?;
            let what = format!("audio {}", describe(&s.parameters(), Some(&opened)));
            let mut decoder = opened
                .audio()
                .map_err(|e| MediaError::Decode(format!("{what}: {e}")))?;
            decoder.set_packet_time_base(s.time_base());
            Some(AudioPart {
                index: s.index(),
                decoder,
                what,
                channels: 0,
                rate: 0,
                samples: Vec::new(),
            })
        }
        None => None,
    };
    // packets read one by one (not `ictx.packets()`, which ends quietly on a read error):
    // a corrupt packet is skipped, the end of the file ends the loop, any other error is
    // the file's
    let mut packet = ff::Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(ff::Error::InvalidData) => continue,
            Err(e) => {
                return Err(MediaError::Decode(format!(
                    "{container}: reading stopped after {} frames: {e}",
                    video.frames
                )));
            }
        }
        let stream = packet.stream();
        if stream == video.index {
            video
                .decoder
                .send_packet(&packet)
                .map_err(|e| MediaError::Decode(format!("{}: {e}", video.what)))?;
            video.drain()?;
        } else if let Some(a) = audio.as_mut().filter(|a| a.index == stream) {
            // a damaged audio packet loses that packet, not the clip
            if a.decoder.send_packet(&packet).is_ok() {
                a.drain()?;
            }
        }
    }
    let _ = video.decoder.send_eof();
    video.drain()?;
    if let Some(a) = audio.as_mut() {
        let _ = a.decoder.send_eof();
        a.drain()?;
    }
    if video.frames == 0 {
        return Err(MediaError::Decode(format!(
            "{what}: no frame could be decoded"
        )));
    }
    let (h, w) = video.out;
    let frames = Frames {
        data: video.data,
        t: video.frames,
        h,
        w,
    };
    let audio = audio
        .filter(|a| a.rate > 0 && !a.samples.is_empty())
        .map(|a| {
            let mut audio = Audio {
                samples: a.samples,
                channels: a.channels,
                sample_rate: a.rate,
            };
            // trimmed to the video's length, as the MP4 decoder does
            let keep =
                ((frames.t as f64 / fps) * a.rate as f64).ceil() as usize * a.channels as usize;
            audio.samples.truncate(keep.max(a.channels as usize));
            audio
        });
    Ok(DecodedMp4 { frames, fps, audio })
}
