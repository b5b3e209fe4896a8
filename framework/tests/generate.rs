//! The generation library: every mode's request constructor, the one prompt rule, shape
//! checks that blame the request, batching keys, cancellation, and clips of the model's
//! shape that equal what the sampler makes from the same requests.

mod common;

use burn::prelude::*;
use sonora_framework::diffusion::{Mode, SamplerConfig, sample};
use sonora_framework::generate::{GenerateError, Generator, batches};
use sonora_framework::model::{Autoencoder, CaptionTokenizer, PatchCodec, SonoraDit};
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

use common::cfg;

fn generator() -> Generator {
    let c = cfg();
    let device = Device::flex();
    device.seed(4);
    let tok = CaptionTokenizer::train(
        ["a red ball falls", "a blue box bounces on the floor", ""].into_iter(),
        c.vocab_size,
        c.text_max_len,
    )
    .unwrap();
    Generator::new(SonoraDit::new(&c, &device), tok, &device).unwrap()
}

/// A clip of the model's shape with something in it.
fn clip(t: usize) -> Clip {
    let c = cfg();
    let mut frames = Frames::zeros(t, c.height, c.width);
    for k in 0..t {
        for (i, v) in frames.frame_mut(k).iter_mut().enumerate() {
            *v = ((i * 7 + k * 13) % 251) as u8;
        }
    }
    Clip {
        frames,
        audio: Audio::silence(c.audio_samples(), 1, c.sample_rate),
        fps: c.fps,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    }
}

fn bad(r: Result<impl std::fmt::Debug, GenerateError>, want: &str) {
    match r {
        Err(GenerateError::BadRequest(m)) => assert!(m.contains(want), "{m}"),
        other => panic!("expected a bad request naming {want:?}, got {other:?}"),
    }
}

#[test]
fn every_mode_builds_and_generates_clips_of_the_model_shape() {
    let g = generator();
    let c = cfg().clone();
    let refs = vec![(vec![200u8; 20 * 24 * 3], 24, 20)];
    let reqs = vec![
        g.text("a red ball falls").unwrap(),
        g.image("a red ball falls", &vec![90u8; 40 * 30 * 3], 40, 30)
            .unwrap(),
        g.extension("a red ball falls", &clip(c.frames), 4).unwrap(),
        g.video_to_audio("a red ball falls", &clip(c.frames))
            .unwrap(),
        g.character("a red ball falls", &refs).unwrap(),
        g.remix("a red ball falls", &clip(c.frames), 0.5).unwrap(),
    ];
    let sc = SamplerConfig {
        steps: 2,
        ..SamplerConfig::default()
    };
    // text, image, extension and sound share a call; the character and the remix do not
    let groups = batches(&reqs, 8);
    assert_eq!(groups, vec![0..4, 4..5, 5..6]);
    assert_eq!(batches(&reqs, 3), vec![0..3, 3..4, 4..5, 5..6]);
    for r in groups {
        let clips = g.generate(&sc, &reqs[r.clone()], &mut |_, _| true).unwrap();
        assert_eq!(clips.len(), r.len());
        for (k, clip) in clips.iter().enumerate() {
            assert_eq!(
                (clip.frames.t, clip.frames.h, clip.frames.w),
                (c.frames, c.height, c.width)
            );
            assert_eq!(clip.audio.samples.len(), c.audio_samples());
            assert_eq!(clip.caption, reqs[r.start + k].prompt);
        }
    }
    // the same clips as the sampler makes from the same requests
    let device = Device::flex();
    device.seed(4);
    let model = SonoraDit::new(&c, &device);
    let sample_reqs: Vec<_> = reqs[..4].iter().map(|r| r.sample.clone()).collect();
    let null = g.tokenizer().encode("").unwrap();
    let tokens = sample(&model, &sc, &sample_reqs, &null, &device, &mut |_, _| {}).unwrap();
    let codec = PatchCodec::new(&c);
    let clips = g.generate(&sc, &reqs[..4], &mut |_, _| true).unwrap();
    for (t, clip) in tokens.iter().zip(&clips) {
        let (frames, audio) = codec.decode(t);
        assert_eq!(frames, clip.frames);
        assert_eq!(audio, clip.audio);
    }
    // the given prefix of an extension comes back as given
    assert!(matches!(
        reqs[2].sample.mode,
        Mode::Extension { prefix_frames: 4 }
    ));
}

#[test]
fn bad_requests_are_the_callers_fault_and_named() {
    let g = generator();
    let c = cfg();
    bad(g.text("   "), "prompt is empty");
    bad(g.image("a ball", &[1, 2, 3], 4, 4), "not 4×4 RGB");
    bad(
        g.extension("a ball", &clip(c.frames + 4), 4),
        "this model takes 8 frames",
    );
    bad(
        g.extension("a ball", &clip(c.frames), 3),
        "multiple of 4 frames",
    );
    bad(g.remix("a ball", &clip(c.frames), 0.0), "remix strength");
    bad(g.character("a ball", &[]), "at least one reference");
    let sc = SamplerConfig {
        steps: 0,
        ..SamplerConfig::default()
    };
    bad(
        g.generate(&sc, &[g.text("a ball").unwrap()], &mut |_, _| true),
        "steps",
    );
    let mixed = [
        g.text("a ball").unwrap(),
        g.remix("a ball", &clip(c.frames), 0.5).unwrap(),
    ];
    bad(
        g.generate(&SamplerConfig::default(), &mixed, &mut |_, _| true),
        "remix strength",
    );
    // a prompt longer than the model reads is kept, with what it drops
    let r = g
        .text("a red ball falls a blue box bounces on the floor")
        .unwrap();
    assert_eq!(r.dropped.as_deref(), Some("on the floor"));
}

#[test]
fn progress_can_cancel_between_steps() {
    let g = generator();
    let sc = SamplerConfig {
        steps: 6,
        ..SamplerConfig::default()
    };
    let mut seen = Vec::new();
    let r = g.generate(&sc, &[g.text("a ball").unwrap()], &mut |k, n| {
        seen.push((k, n));
        k < 2
    });
    assert!(matches!(r, Err(GenerateError::Cancelled)), "{r:?}");
    assert_eq!(
        seen,
        vec![(1, 6), (2, 6)],
        "stopped after the step that said no"
    );
}
