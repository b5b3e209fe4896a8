//! A folder of media files as researchers have them, made with Debian's `ffmpeg` CLI:
//! the containers and codecs `data ingest` and `data import` must read. Included by tests
//! with `#[path]`.
#![allow(dead_code)] // each test uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

/// One file of the folder: its name, what ffmpeg makes it from and how it encodes it.
pub struct MediaCase {
    /// File name inside the folder.
    pub name: &'static str,
    /// lavfi video source.
    video: &'static str,
    /// lavfi audio source, when the file has a sound track.
    sound: Option<&'static str>,
    /// Length in seconds.
    seconds: f64,
    /// Encoder options, separated by spaces.
    encode: &'static str,
}

impl MediaCase {
    /// Whether it has a sound track.
    pub fn audio(&self) -> bool {
        self.sound.is_some()
    }

    /// Whether it lasts long enough to give a clip (≥ 1 s, ingest's default minimum).
    pub fn long_enough(&self) -> bool {
        self.seconds >= 1.0
    }
}

const SRC_VIDEO: &str = "testsrc2=size=160x120:rate=24";
const SRC_AUDIO: &str = "sine=frequency=440:sample_rate=44100";
const X264: &str = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";

/// The folder: H.264/AAC MP4, portrait H.264 without sound, 1280×720 60 fps stereo 48 kHz,
/// a 0.5 s clip, H.264 High 4:4:4, VP9/Opus WebM, H.264/FLAC MKV, HEVC/MP3 MOV,
/// AV1/Vorbis MKV and MPEG-4/PCM AVI.
pub const CASES: &[MediaCase] = &[
    MediaCase {
        name: "h264_aac.mp4",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 2.5,
        encode: "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac",
    },
    MediaCase {
        name: "portrait.mp4",
        video: "testsrc2=size=96x160:rate=30",
        sound: None,
        seconds: 1.5,
        encode: X264,
    },
    MediaCase {
        name: "hd60_stereo.mp4",
        video: "testsrc2=size=1280x720:rate=60",
        sound: Some("sine=frequency=330:sample_rate=48000"),
        seconds: 1.2,
        encode: "-ac 2 -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac",
    },
    MediaCase {
        name: "short.mp4",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 0.5,
        encode: "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac",
    },
    MediaCase {
        name: "high444.mp4",
        video: SRC_VIDEO,
        sound: None,
        seconds: 1.5,
        encode: "-c:v libx264 -preset ultrafast -pix_fmt yuv444p",
    },
    MediaCase {
        name: "vp9_opus.webm",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 1.5,
        encode: "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -b:v 400k -c:a libopus",
    },
    MediaCase {
        name: "h264_flac.mkv",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 1.5,
        encode: "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a flac",
    },
    MediaCase {
        name: "hevc_mp3.mov",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 1.5,
        encode: "-c:v libx265 -preset ultrafast -x265-params log-level=error -pix_fmt yuv420p -c:a libmp3lame",
    },
    MediaCase {
        name: "av1_vorbis.mkv",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 1.5,
        encode: "-c:v libsvtav1 -preset 12 -pix_fmt yuv420p -c:a libvorbis",
    },
    MediaCase {
        name: "mpeg4_pcm.avi",
        video: SRC_VIDEO,
        sound: Some(SRC_AUDIO),
        seconds: 1.5,
        encode: "-c:v mpeg4 -q:v 3 -c:a pcm_s16le",
    },
];

/// The case of that file name.
pub fn case(name: &str) -> &'static MediaCase {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no media case {name}"))
}

/// Makes one case's file in `dir` with ffmpeg and returns its path.
pub fn make(dir: &Path, case: &MediaCase) -> PathBuf {
    let out = dir.join(case.name);
    let mut c = Command::new("ffmpeg");
    c.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        case.video,
    ]);
    if let Some(sound) = case.sound {
        c.args(["-f", "lavfi", "-i", sound]);
    }
    let o = c
        .args(["-t", &case.seconds.to_string()])
        .args(case.encode.split(' '))
        .arg(&out)
        .output()
        .expect("ffmpeg runs (scripts/setup.sh --test installs it)");
    assert!(
        o.status.success(),
        "ffmpeg {}: {}",
        case.name,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Makes the named cases in `dir` (created if needed).
pub fn make_named(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for n in names {
        make(dir, case(n));
    }
}

/// Makes every case in `dir`, plus a captions CSV naming each, a damaged `broken.mp4`,
/// a WAV (audio only) and a `notes.txt` (not media).
pub fn make_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut csv = String::from("file,caption\n");
    for c in CASES {
        make(dir, c);
        csv.push_str(&format!("{},a test pattern in {}\n", c.name, c.name));
    }
    std::fs::write(dir.join("captions.csv"), csv).unwrap();
    let mut junk = b"\x00\x00\x00\x18ftypisom".to_vec();
    junk.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(dir.join("broken.mp4"), junk).unwrap();
    let o = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            SRC_AUDIO,
            "-t",
            "1",
        ])
        .arg(dir.join("tone.wav"))
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::write(dir.join("notes.txt"), "not media\n").unwrap();
}

/// ffmpeg's own decode of `path`: RGB24 frames at the file's size, and that size (w, h).
pub fn ffmpeg_rgb(path: &Path) -> (Vec<u8>, usize, usize) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&probe.stdout);
    let mut it = s.trim().split(',').map(|x| x.parse::<usize>().unwrap());
    let (w, h) = (it.next().unwrap(), it.next().unwrap());
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-fps_mode",
            "passthrough",
            "-",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (o.stdout, w, h)
}
