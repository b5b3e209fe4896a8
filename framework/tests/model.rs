//! The joint DiT: shapes for every conditioning mode, gradients, overfitting one batch,
//! deterministic sampling, exact clean conditioning, and checkpoints.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sonora_framework::checkpoint::{self, CheckpointError};
use sonora_framework::diffusion::{
    Example, FlowConfig, Mode, SOUND_PASS_SEED, SampleRequest, SamplerConfig, SamplerKind,
    flow_loss, make_batch, make_batch_at, sample,
};
use sonora_framework::model::dit::T_MIN;
use sonora_framework::model::levels::TimeLevels;
use sonora_framework::model::{CaptionTokenizer, ClipTokens, ImageCond, ModelConfig, SonoraDit};

use common::cfg;

const CAPTIONS: &[&str] = &[
    "a red ball falls on a wooden floor",
    "two blue boxes bounce off a metal floor",
    "a green triangle drops behind a panel",
    "",
];

fn tokenizer(c: &ModelConfig) -> CaptionTokenizer {
    CaptionTokenizer::train(CAPTIONS.iter().copied(), c.vocab_size, c.text_max_len).unwrap()
}

/// Smooth, structured clean tokens (so there is something to learn).
fn tokens(c: &ModelConfig, k: usize) -> ClipTokens {
    let video = (0..c.video_tokens() * c.video_patch_dim())
        .map(|i| ((i * (k + 3)) as f32 * 0.013).sin() * 0.8)
        .collect();
    let audio = (0..c.audio_tokens() * c.audio_token_dim())
        .map(|i| ((i * (k + 1)) as f32 * 0.05).sin() * 0.3)
        .collect();
    ClipTokens { video, audio }
}

fn refs(c: &ModelConfig, n: usize) -> Vec<f32> {
    (0..n * c.ref_tokens() * c.ref_patch_dim())
        .map(|i| (i as f32 * 0.07).cos() * 0.5)
        .collect()
}

fn example(c: &ModelConfig, tok: &CaptionTokenizer, k: usize, mode: Mode) -> Example {
    let r = if mode == Mode::Character {
        refs(c, 2)
    } else {
        Vec::new()
    };
    Example {
        tokens: tokens(c, k),
        refs: r,
        text: tok.encode(CAPTIONS[k % 3]).unwrap(),
        mode,
    }
}

fn all_modes() -> Vec<Mode> {
    vec![
        Mode::TextToAv,
        Mode::ImageToVideo,
        Mode::Extension { prefix_frames: 4 },
        Mode::Character,
        Mode::Remix { strength: 0.6 },
        Mode::AudioToVideo,
        Mode::VideoToAudio,
    ]
}

fn model(c: &ModelConfig, device: &Device, seed: u64) -> SonoraDit {
    device.seed(seed);
    SonoraDit::new(c, device)
}

#[test]
fn every_mode_has_the_right_shapes_and_a_finite_loss() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let m = model(&c, &device, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for mode in all_modes() {
        let batch = make_batch(
            &c,
            &FlowConfig::default(),
            &[
                example(&c, &tok, 0, mode.clone()),
                example(&c, &tok, 1, mode.clone()),
            ],
            &mut rng,
            &device,
        )
        .unwrap();
        let n_expected = c.video_tokens()
            + c.audio_tokens()
            + if mode == Mode::Character {
                2 * c.ref_tokens()
            } else {
                0
            };
        assert_eq!(batch.input.t.dims(), [2, n_expected], "{mode:?}");
        let out = m.forward(batch.input.clone(), &batch.rope);
        assert_eq!(
            out.video.dims(),
            [2, c.video_tokens(), c.video_patch_dim()],
            "{mode:?}"
        );
        assert_eq!(
            out.audio.dims(),
            [2, c.audio_tokens(), c.audio_token_dim()],
            "{mode:?}"
        );
        // the host-side denominators and time levels equal what the device tensors say
        let sum = |m: &Tensor<3>| m.clone().sum().into_scalar::<f64>();
        let den = [
            sum(&batch.mask_video) * c.video_patch_dim() as f64,
            sum(&batch.mask_audio) * c.audio_token_dim() as f64,
        ];
        for (host, dev) in batch.den.iter().zip(den) {
            assert!(
                (host - dev).abs() <= 1e-6 * dev.max(1.0),
                "{mode:?}: den {host} vs {dev}"
            );
        }
        let from_device = TimeLevels::factor(&batch.input.t).expect("levels");
        let built = batch.input.levels.as_ref().expect("make_batch factors t");
        assert_eq!(
            built.assign.to_data().try_to_vec::<f32>().unwrap(),
            from_device.assign.to_data().try_to_vec::<f32>().unwrap(),
            "{mode:?}"
        );
        let loss = flow_loss(out, &batch, &FlowConfig::default())
            .total
            .into_scalar::<f32>();
        assert!(loss.is_finite() && loss > 0.0, "{mode:?}: {loss}");
        // given tokens carry t = 0
        let mask_v: Vec<f32> = batch.mask_video.into_data().try_to_vec().unwrap();
        let given = mask_v.iter().filter(|m| **m == 0.0).count();
        let expected = match mode {
            Mode::ImageToVideo | Mode::Extension { .. } => 2 * c.video_tokens() / 2,
            Mode::VideoToAudio => 2 * c.video_tokens(),
            _ => 0,
        };
        assert_eq!(given, expected, "{mode:?}");
    }
}

/// Parameter ids and paths of a module.
struct Ids(Vec<(burn::module::ParamId, String, usize)>, Vec<String>);
impl ModuleVisitor for Ids {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.1.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.1.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.0.push((p.id, self.1.join("."), D));
    }
}

fn train_step(
    m: SonoraDit,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: &sonora_framework::diffusion::TrainBatch,
    lr: f64,
) -> (SonoraDit, f32) {
    let out = m.forward(batch.input.clone(), &batch.rope);
    let loss = flow_loss(out, batch, &FlowConfig::default()).total;
    let value = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    (optim.step(lr, m, grads), value)
}

#[test]
fn a_gradient_reaches_every_parameter() {
    let (c, device) = (cfg(), common::device().autodiff());
    let tok = tokenizer(&c);
    let mut m = model(&c, &device, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let ex = [
        example(&c, &tok, 0, Mode::Character),
        example(&c, &tok, 1, Mode::Character),
    ];
    let batch = make_batch(&c, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
    // AdaLN-zero: at init only the zero-initialised output heads get gradient; each step
    // opens the next layer (heads → final modulation and gates → everything behind them)
    let mut optim = AdamWConfig::new().init();
    for _ in 0..3 {
        m = train_step(m, &mut optim, &batch, 1e-2).0;
    }
    let out = m.forward(batch.input.clone(), &batch.rope);
    let grads = flow_loss(out, &batch, &FlowConfig::default())
        .total
        .backward();
    let grads = GradientsParams::from_grads(grads, &m);
    let mut ids = Ids(Vec::new(), Vec::new());
    m.visit(&mut ids);
    assert!(ids.0.len() > 40, "{} parameters", ids.0.len());
    let mut dead = Vec::new();
    for (id, path, rank) in &ids.0 {
        let norm = match rank {
            1 => grads
                .get::<1>(*id)
                .map(|g| g.abs().sum().into_scalar::<f32>()),
            2 => grads
                .get::<2>(*id)
                .map(|g| g.abs().sum().into_scalar::<f32>()),
            r => panic!("{path}: unexpected rank {r}"),
        };
        if !norm.is_some_and(|n| n > 0.0) {
            dead.push(format!("{path}: {norm:?}"));
        }
    }
    assert!(
        dead.is_empty(),
        "parameters without gradient:\n{}",
        dead.join("\n")
    );
}

#[test]
fn one_batch_overfits() {
    let (c, device) = (cfg(), common::device().autodiff());
    let tok = tokenizer(&c);
    let mut m = model(&c, &device, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let ex: Vec<Example> = (0..4)
        .map(|k| example(&c, &tok, k, Mode::TextToAv))
        .collect();
    let batch = make_batch(&c, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::new();
    for _ in 0..150 {
        let (next, loss) = train_step(m, &mut optim, &batch, 3e-3);
        m = next;
        losses.push(loss);
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last * 10.0 < first, "loss {first} → {last}");
}

fn requests(c: &ModelConfig, tok: &CaptionTokenizer) -> Vec<SampleRequest> {
    vec![
        SampleRequest {
            text: tok.encode(CAPTIONS[0]).unwrap(),
            mode: Mode::TextToAv,
            given: None,
            refs: Vec::new(),
            seed: None,
        },
        SampleRequest {
            text: tok.encode(CAPTIONS[1]).unwrap(),
            mode: Mode::Extension { prefix_frames: 4 },
            given: Some(tokens(c, 5)),
            refs: Vec::new(),
            seed: None,
        },
        SampleRequest {
            text: tok.encode(CAPTIONS[2]).unwrap(),
            mode: Mode::VideoToAudio,
            given: Some(tokens(c, 6)),
            refs: Vec::new(),
            seed: None,
        },
        SampleRequest {
            text: tok.encode(CAPTIONS[2]).unwrap(),
            mode: Mode::AudioToVideo,
            given: Some(tokens(c, 7)),
            refs: Vec::new(),
            seed: None,
        },
    ]
}

#[test]
fn sampling_is_seeded_and_keeps_given_tokens_exactly() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let m = model(&c, &device, 4);
    // move the zero-initialised heads so the model predicts something
    let m = perturbed(m, &device);
    let null = tok.encode("").unwrap();
    let reqs = requests(&c, &tok);
    for kind in [SamplerKind::Euler, SamplerKind::Heun] {
        let sc = SamplerConfig {
            kind,
            steps: 4,
            seed: 11,
            ..SamplerConfig::default()
        };
        let mut calls = Vec::new();
        let a = sample(&m, &sc, &reqs, &null, &device, &mut |k, n| {
            calls.push((k, n))
        })
        .unwrap();
        assert_eq!(calls, (1..=4).map(|k| (k, 4)).collect::<Vec<_>>());
        let b = sample(&m, &sc, &reqs, &null, &device, &mut |_, _| {}).unwrap();
        assert_eq!(a, b, "{kind:?}: same seed, different sample");
        let other = sample(
            &m,
            &SamplerConfig {
                seed: 12,
                ..sc.clone()
            },
            &reqs,
            &null,
            &device,
            &mut |_, _| {},
        )
        .unwrap();
        assert_ne!(a[0], other[0], "{kind:?}: the seed does not matter");
        // extension: the first video token row (4 frames) and its audio are the given ones
        let row = (c.height / c.patch_h) * (c.width / c.patch_w) * c.video_patch_dim();
        let g1 = tokens(&c, 5);
        assert_eq!(a[1].video[..row], g1.video[..row]);
        assert_ne!(a[1].video[row..], g1.video[row..]);
        assert_eq!(
            a[1].audio[..c.audio_tokens() / 2 * c.audio_token_dim()],
            g1.audio[..c.audio_tokens() / 2 * c.audio_token_dim()]
        );
        assert_eq!(
            a[2].video,
            tokens(&c, 6).video,
            "video to audio keeps the video"
        );
        assert_eq!(
            a[3].audio,
            tokens(&c, 7).audio,
            "audio to video keeps the audio"
        );
    }
}

#[test]
fn in_context_image_tokens_give_the_first_frame_and_every_video_token_is_generated() {
    let device = common::device();
    let hold = cfg();
    let c = ModelConfig {
        image_cond: ImageCond::Context,
        ..cfg()
    };
    let tok = tokenizer(&c);
    let (nv, na, pd) = (c.video_tokens(), c.audio_tokens(), c.video_patch_dim());
    let (row, frame) = (c.image_tokens(), pd / c.patch_t);
    assert_eq!(row, nv / (c.frames / c.patch_t));
    let host = |x: Tensor<3>| x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();

    // training: no video token is given; the image example brings a row of clean tokens
    // holding its first frame, the text example a row nothing attends to
    let ex = [
        example(&c, &tok, 0, Mode::ImageToVideo),
        example(&c, &tok, 1, Mode::TextToAv),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let b = make_batch(&c, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
    let n = nv + na + row;
    assert_eq!(b.input.t.dims(), [2, n]);
    let t: Vec<f32> = b.input.t.clone().into_data().try_to_vec().unwrap();
    assert!(
        t[..nv].iter().all(|t| *t > 0.0),
        "a video token was given clean"
    );
    assert!(
        t[nv + na..n].iter().all(|t| *t == 0.0),
        "image tokens are not clean"
    );
    let mask: Vec<f32> = b.mask_video.clone().into_data().try_to_vec().unwrap();
    assert!(
        mask.iter().all(|m| *m == 1.0),
        "a video token is out of the loss"
    );
    let image = host(b.input.image.clone().expect("no image tokens"));
    assert_eq!(image.len(), 2 * row * pd);
    for i in 0..row {
        let first = &ex[0].tokens.video[i * pd..i * pd + frame];
        for k in 0..c.patch_t {
            assert_eq!(image[i * pd + k * frame..i * pd + (k + 1) * frame], *first);
        }
    }
    let ignore: Vec<bool> = b
        .input
        .token_mask
        .clone()
        .unwrap()
        .into_data()
        .try_to_vec::<bool>()
        .unwrap();
    for (j, ig) in ignore.iter().enumerate() {
        assert_eq!(
            *ig,
            j >= n + nv + na,
            "token {} of example {}",
            j % n,
            j / n
        );
    }
    let m = perturbed(model(&c, &device, 3), &device);
    let loss = flow_loss(
        m.forward(b.input.clone(), &b.rope),
        &b,
        &FlowConfig::default(),
    );
    assert!(loss.video.into_scalar::<f32>().is_finite());
    // a text-only batch and a `hold` model's batch have none; `hold` gives the row clean
    let b = make_batch(&c, &FlowConfig::default(), &ex[1..], &mut rng, &device).unwrap();
    assert!(b.input.image.is_none() && b.input.token_mask.is_none());
    assert_eq!(b.input.t.dims(), [1, nv + na]);
    let b = make_batch(&hold, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
    assert!(b.input.image.is_none());
    let mask: Vec<f32> = b.mask_video.into_data().try_to_vec().unwrap();
    assert_eq!(mask.iter().filter(|m| **m == 0.0).count(), row);

    // sampling: only frame 0 of the given clip matters, and it moves the whole clip
    let m = perturbed(model(&c, &device, 8), &device);
    let null = tok.encode("").unwrap();
    let sc = SamplerConfig {
        steps: 3,
        seed: 5,
        ..SamplerConfig::default()
    };
    let text = SampleRequest {
        text: tok.encode(CAPTIONS[0]).unwrap(),
        mode: Mode::TextToAv,
        given: None,
        refs: Vec::new(),
        seed: None,
    };
    let image = |given: ClipTokens| SampleRequest {
        text: tok.encode(CAPTIONS[1]).unwrap(),
        mode: Mode::ImageToVideo,
        given: Some(given),
        refs: Vec::new(),
        seed: None,
    };
    let run = |reqs: &[SampleRequest]| sample(&m, &sc, reqs, &null, &device, &mut |_, _| {});
    let given = tokens(&c, 3);
    let a = run(&[text.clone(), image(given.clone())]).unwrap();
    assert_ne!(
        a[1].video[..row * pd],
        given.video[..row * pd],
        "the first row is given"
    );
    // frames 1.. of the given clip changed: the same clip
    let mut later = given.clone();
    for i in 0..nv {
        let start = if i < row { i * pd + frame } else { i * pd };
        for v in &mut later.video[start..(i + 1) * pd] {
            *v = -*v;
        }
    }
    later.audio.iter_mut().for_each(|v| *v = 0.5);
    assert_eq!(run(&[text.clone(), image(later)]).unwrap(), a);
    // frame 0 changed: the whole video differs, in every token row
    let mut first = given.clone();
    for i in 0..row {
        for v in &mut first.video[i * pd..i * pd + frame] {
            *v = -*v;
        }
    }
    let d = run(&[text.clone(), image(first)]).unwrap();
    for r in 0..nv / row {
        let span = r * row * pd..(r + 1) * row * pd;
        assert_ne!(d[1].video[span.clone()], a[1].video[span], "token row {r}");
    }
    // the text request is the same with or without an image in its batch
    let alone = run(std::slice::from_ref(&text)).unwrap();
    let gap = alone[0]
        .video
        .iter()
        .zip(&a[0].video)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(gap < 1e-5, "the image leaked into the text request: {gap}");

    // a checkpoint of the other kind is refused naming the key
    let diff = checkpoint::config_diff(&hold, &c);
    assert_eq!(diff, ["image_cond: (default) vs \"context\""]);
}

/// The model with every parameter nudged by a seeded pattern (untrained models have
/// zero output heads).
#[test]
fn the_audio_guidance_scale_steers_only_the_audio_tokens() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let m = perturbed(model(&c, &device, 4), &device);
    let null = tok.encode("").unwrap();
    let reqs: Vec<SampleRequest> = (0..2)
        .map(|k| SampleRequest {
            text: tok.encode(CAPTIONS[k]).unwrap(),
            mode: Mode::TextToAv,
            given: None,
            refs: Vec::new(),
            seed: None,
        })
        .collect();
    // one Euler step: the output is the noise plus dt × the guided velocity of that noise,
    // so each modality's output is affine in its own guidance scale
    let run = |text_scale: f64, audio_scale: f64| {
        let sc = SamplerConfig {
            steps: 1,
            seed: 5,
            text_scale,
            audio_scale,
            ..SamplerConfig::default()
        };
        sample(&m, &sc, &reqs, &null, &device, &mut |_, _| {}).unwrap()
    };
    let max_gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let (s1, s2, s3) = (run(3.0, 1.0), run(3.0, 2.0), run(3.0, 3.0));
    let unguided = run(1.0, 1.0);
    // the default guides the video only
    let default = sample(
        &m,
        &SamplerConfig {
            steps: 1,
            seed: 5,
            text_scale: 3.0,
            ..SamplerConfig::default()
        },
        &reqs,
        &null,
        &device,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(default, s1);
    for i in 0..reqs.len() {
        // the video keeps the text scale whatever the audio scale
        assert_eq!(s1[i].video, s3[i].video, "request {i}");
        assert!(
            max_gap(&s1[i].video, &unguided[i].video) > 1e-3,
            "request {i}"
        );
        // the audio moves with its scale, linearly: scale 2 is halfway between 1 and 3
        let gap = max_gap(&s1[i].audio, &s3[i].audio);
        assert!(
            gap > 1e-3,
            "request {i}: the audio scale changes nothing ({gap})"
        );
        let mid: Vec<f32> = s1[i]
            .audio
            .iter()
            .zip(&s3[i].audio)
            .map(|(a, b)| 0.5 * (a + b))
            .collect();
        let off = max_gap(&s2[i].audio, &mid);
        assert!(
            off < 1e-4 * gap.max(1.0),
            "request {i}: {off} off the midpoint"
        );
        // audio scale 1 is the conditional velocity: the audio of an unguided sample
        let d = max_gap(&s1[i].audio, &unguided[i].audio);
        assert!(d < 1e-4, "request {i}: {d}");
    }
}

#[test]
fn the_sound_pass_regenerates_the_audio_from_the_generated_video() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let m = perturbed(model(&c, &device, 4), &device);
    let null = tok.encode("").unwrap();
    // text → clip, extension, video → audio, audio → video
    let reqs = requests(&c, &tok);
    let sc = SamplerConfig {
        steps: 3,
        seed: 9,
        text_scale: 2.0,
        ..SamplerConfig::default()
    };
    let joint = sample(&m, &sc, &reqs, &null, &device, &mut |_, _| {}).unwrap();
    let mut calls = Vec::new();
    let two = SamplerConfig {
        audio_from_video: true,
        ..sc.clone()
    };
    let out = sample(&m, &two, &reqs, &null, &device, &mut |k, n| {
        calls.push((k, n))
    })
    .unwrap();
    assert_eq!(calls, (1..=6).map(|k| (k, 6)).collect::<Vec<_>>());
    // the video is the joint pass's; only the text → clip request's sound is generated again
    for i in 0..reqs.len() {
        assert_eq!(out[i].video, joint[i].video, "request {i}");
    }
    assert_ne!(out[0].audio, joint[0].audio);
    for i in 1..reqs.len() {
        assert_eq!(
            out[i].audio, joint[i].audio,
            "request {i} (not a joint mode)"
        );
    }
    // and that sound is exactly video → audio with the generated video given
    let sound_of = |video: Vec<f32>| {
        let v2a = SampleRequest {
            text: reqs[0].text.clone(),
            mode: Mode::VideoToAudio,
            given: Some(ClipTokens {
                video,
                audio: joint[0].audio.clone(),
            }),
            refs: Vec::new(),
            seed: None,
        };
        let pass = SamplerConfig {
            seed: 9 + SOUND_PASS_SEED,
            text_scale: 1.0,
            ..sc.clone()
        };
        let mut one = sample(&m, &pass, &[v2a], &null, &device, &mut |_, _| {}).unwrap();
        one.remove(0).audio
    };
    let direct = sound_of(joint[0].video.clone());
    assert_eq!(out[0].audio, direct);
    // a different generated video gives a different sound
    let moved = sound_of(joint[0].video.iter().map(|v| -v).collect());
    assert_ne!(moved, direct);
}

fn perturbed(m: SonoraDit, device: &Device) -> SonoraDit {
    let bytes = checkpoint::weights_bytes(&m).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<f32>, Vec<usize>)> = Vec::new();
    for (name, view) in st.tensors() {
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .enumerate()
            .map(|(i, b)| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    + ((i * 31 + name.len()) % 17) as f32 * 0.002
                    - 0.016
            })
            .collect();
        tensors.push((name.to_string(), v, view.shape().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, v, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    s.clone(),
                    bytemuck(v),
                )
                .unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    let mut m = SonoraDit::new(m.config(), device);
    checkpoint::apply_weights(&mut m, out, std::path::Path::new("perturbed")).unwrap();
    m
}

/// Every tensor's name → raw little-endian bytes.
fn tensor_map(m: &SonoraDit) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = checkpoint::weights_bytes(m).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect()
}

fn bytemuck(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern of the slice is valid to read.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

#[test]
fn checkpoints_round_trip_bit_exactly_and_refuse_bad_files() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let m = perturbed(model(&c, &device, 5), &device);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("step-000010");
    checkpoint::save(&ck, &m, &tok, 10, &[], serde_json::json!({"note": "test"})).unwrap();
    let (m2, tok2, manifest) = checkpoint::load(&ck, Some(&c), &device).unwrap();
    assert_eq!(manifest.step, 10);
    let (a, b) = (tensor_map(&m), tensor_map(&m2));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(v == &b[k], "{k} differs after save → load");
    }
    assert_eq!(
        tok.encode(CAPTIONS[1]).unwrap(),
        tok2.encode(CAPTIONS[1]).unwrap()
    );
    let null = tok.encode("").unwrap();
    let reqs = requests(&c, &tok);
    let sc = SamplerConfig {
        steps: 2,
        ..SamplerConfig::default()
    };
    assert_eq!(
        sample(&m, &sc, &reqs, &null, &device, &mut |_, _| {}).unwrap(),
        sample(&m2, &sc, &reqs, &null, &device, &mut |_, _| {}).unwrap()
    );

    // another model config: refused by name before any tensor is read
    let other = ModelConfig {
        d_model: 64,
        heads: 4,
        ..c.clone()
    };
    let e = checkpoint::load(&ck, Some(&other), &device).unwrap_err();
    assert!(
        matches!(e, CheckpointError::ConfigMismatch { .. })
            && e.to_string().contains("d_model: 32 vs 64"),
        "{e}"
    );

    // weights of another shape under a consistent manifest: every mismatched tensor named
    let big = perturbed(model(&other, &device, 6), &device);
    let ck2 = dir.path().join("other");
    checkpoint::save(&ck2, &big, &tok, 1, &[], serde_json::Value::Null).unwrap();
    let mut m3 = SonoraDit::new(&c, &device);
    let e = checkpoint::apply_weights(
        &mut m3,
        std::fs::read(ck2.join("model.safetensors")).unwrap(),
        &ck2,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("video_in.weight") && e.contains("blocks.0.attn.q.weight"),
        "{e}"
    );

    // a flipped byte: the checksum catches it
    let wp = ck.join("model.safetensors");
    let mut bytes = std::fs::read(&wp).unwrap();
    let k = bytes.len() - 5;
    bytes[k] ^= 0x40;
    std::fs::write(&wp, bytes).unwrap();
    let e = checkpoint::load(&ck, None, &device).unwrap_err();
    assert!(
        matches!(e, CheckpointError::Checksum { .. })
            && e.to_string().contains("model.safetensors"),
        "{e}"
    );

    // no manifest
    let e = checkpoint::load(dir.path(), None, &device).unwrap_err();
    assert!(e.to_string().contains("manifest.json"), "{e}");
}

#[test]
fn python_safetensors_reads_the_same_tensor_names() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import safetensors.numpy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 with `safetensors` and numpy is required (scripts/setup.sh installs it)"
    );
    let (c, device) = (cfg(), common::device());
    let m = model(&c, &device, 7);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    std::fs::write(&p, checkpoint::weights_bytes(&m).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys, safetensors.numpy as s; t = s.load_file(sys.argv[1]); print('\\n'.join(f'{k} {list(v.shape)} {v.dtype}' for k, v in sorted(t.items())))", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py = String::from_utf8(out.stdout).unwrap();
    let mut ids = Ids(Vec::new(), Vec::new());
    m.visit(&mut ids);
    let st = safetensors::SafeTensors::deserialize(&std::fs::read(&p).unwrap())
        .unwrap()
        .names()
        .len();
    assert_eq!(py.lines().count(), st);
    assert!(
        py.contains("blocks.1.mlp.fc2.weight [64, 32] float32")
            || py.contains("blocks.1.mlp.fc2.weight [32, 64] float32"),
        "{py}"
    );
    assert!(py.contains("text.embed.weight [64, 32] float32"), "{py}");
}

#[test]
fn caption_dropout_swaps_in_the_null_caption() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let ex: Vec<Example> = (0..3)
        .map(|k| example(&c, &tok, k, Mode::TextToAv))
        .collect();
    let ids = |p: f64| -> Vec<i64> {
        let fc = FlowConfig {
            caption_dropout: p,
            ..FlowConfig::default()
        };
        let b = make_batch(&c, &fc, &ex, &mut ChaCha8Rng::seed_from_u64(3), &device).unwrap();
        b.input
            .text_ids
            .into_data()
            .convert::<i64>()
            .try_to_vec()
            .unwrap()
    };
    assert!(ids(1.0).iter().all(|&i| i == 0), "all captions dropped");
    let kept = ids(0.0);
    let expected: Vec<i64> = ex
        .iter()
        .flat_map(|e| e.text.iter().map(|&i| i as i64))
        .collect();
    assert_eq!(kept, expected);
}

#[test]
fn reference_dropout_masks_exactly_the_references_of_the_dropped_examples() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let ex: Vec<Example> = (0..16)
        .map(|k| example(&c, &tok, k, Mode::Character))
        .collect();
    let (nv, na, nr) = (c.video_tokens(), c.audio_tokens(), 2 * c.ref_tokens());
    let n = nv + na + nr;
    // the ignore flags `[B, N]`, or None when no token is masked
    let masks = |p: f64, examples: &[Example], keys: &[u64]| -> Option<Vec<bool>> {
        let fc = FlowConfig {
            ref_dropout: p,
            ..FlowConfig::default()
        };
        let b = make_batch_at(&c, &fc, examples, 11, keys, &device).unwrap();
        b.input
            .token_mask
            .map(|m| m.into_data().convert::<bool>().try_to_vec().unwrap())
    };
    let keys: Vec<u64> = (0..16).collect();
    assert!(masks(0.0, &ex, &keys).is_none(), "no dropout, no mask");
    let m = masks(0.5, &ex, &keys).expect("some references dropped at p = 0.5");
    let mut dropped = Vec::new();
    for (i, row) in m.chunks(n).enumerate() {
        // video and audio tokens are never masked; the references all or none
        assert!(row[..nv + na].iter().all(|&x| !x), "example {i}");
        let refs = &row[nv + na..];
        assert!(refs.iter().all(|&x| x == refs[0]), "example {i}: {refs:?}");
        dropped.push(refs[0]);
    }
    let k = dropped.iter().filter(|&&d| d).count();
    assert!((3..=13).contains(&k), "{k} of 16 dropped at p = 0.5");
    // an example's draw is keyed by its index, not by the batch it shares
    let one = masks(0.5, &ex[5..6], &[5]);
    assert_eq!(one.is_some(), dropped[5], "example 5 alone");
    // and the noise of the other draws is untouched by the dropout draw
    let fc = |p: f64| FlowConfig {
        ref_dropout: p,
        ..FlowConfig::default()
    };
    let video = |p: f64| {
        make_batch_at(&c, &fc(p), &ex, 11, &keys, &device)
            .unwrap()
            .input
            .video
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(video(0.0), video(0.5));
}

#[test]
fn inference_loads_the_ema_weights_when_a_checkpoint_has_them() {
    let (c, device) = (cfg(), common::device());
    let tok = tokenizer(&c);
    let trained = perturbed(model(&c, &device, 5), &device);
    let ema = perturbed(model(&c, &device, 6), &device);
    let dir = tempfile::tempdir().unwrap();

    let plain = dir.path().join("step-000001");
    checkpoint::save(&plain, &trained, &tok, 1, &[], serde_json::Value::Null).unwrap();
    let (m, _, _, used) = checkpoint::load_for_inference(&plain, &device).unwrap();
    assert_eq!(used, checkpoint::WeightsUsed::Trained);
    assert_eq!(tensor_map(&m), tensor_map(&trained));

    let with_ema = dir.path().join("step-000002");
    let ema_bytes = checkpoint::weights_bytes(&ema).unwrap();
    checkpoint::save(
        &with_ema,
        &trained,
        &tok,
        2,
        &[(checkpoint::EMA_FILE, ema_bytes)],
        serde_json::Value::Null,
    )
    .unwrap();
    let (m, _, _, used) = checkpoint::load_for_inference(&with_ema, &device).unwrap();
    assert_eq!(used, checkpoint::WeightsUsed::Ema);
    assert_eq!(tensor_map(&m), tensor_map(&ema));
    assert_ne!(tensor_map(&m), tensor_map(&trained));
}

#[test]
fn factored_adaln_conditioning_matches_the_per_token_path() {
    // after a few steps the AdaLN layers are no longer zero; a batch whose examples have
    // given tokens (image → clip) has two timesteps per example
    let (c, device) = (cfg(), common::device().autodiff());
    let tok = tokenizer(&c);
    let mut m = model(&c, &device, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ex = [
        example(&c, &tok, 0, Mode::ImageToVideo),
        example(&c, &tok, 1, Mode::TextToAv),
    ];
    let mut optim = AdamWConfig::new().init();
    for _ in 0..6 {
        let b = make_batch(&c, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
        m = train_step(m, &mut optim, &b, 1e-2).0;
    }
    let b = make_batch(&c, &FlowConfig::default(), &ex, &mut rng, &device).unwrap();
    let host = |x: Tensor<3>| x.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let fast = m.forward(b.input.clone(), &b.rope);
    let reference = m
        .clone()
        .with_per_token_conditioning()
        .forward(b.input.clone(), &b.rope);
    let (fv, rv) = (host(fast.video), host(reference.video));
    let (fa, ra) = (host(fast.audio), host(reference.audio));
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(diff(&fv, &rv) < 1e-4, "video differs by {}", diff(&fv, &rv));
    assert!(diff(&fa, &ra) < 1e-4, "audio differs by {}", diff(&fa, &ra));
    // and the conditioning is live: the clean-patch prediction x̂0 = x_t − t·v̂ changes
    // with the timestep (a model whose AdaLN were still zero would predict the same x̂0)
    let x0 = |t: Tensor<2>| {
        let mut input = b.input.clone();
        input.t = t.clone();
        input.levels = None; // factored from the new `t`
        let v = host(m.forward(input, &b.rope).video);
        let (xt, ts) = (host(b.input.video.clone()), host(t.unsqueeze_dim::<3>(2)));
        let (nv, pv) = (c.video_tokens(), c.video_patch_dim());
        let n = ts.len() / 2;
        (0..v.len())
            .map(|i| {
                let (ex, tok) = (i / (nv * pv), (i / pv) % nv);
                xt[i] - ts[ex * n + tok].max(T_MIN as f32) * v[i]
            })
            .collect::<Vec<f32>>()
    };
    let moved = diff(&x0(b.input.t.clone()), &x0(b.input.t.clone() * 0.5));
    assert!(moved > 1e-3, "timesteps had no effect on x̂0 ({moved})");
}

#[test]
fn inference_checks_only_what_it_reads_and_manifests_stay_inside() {
    let c = cfg();
    let device = common::device();
    let tok = tokenizer(&c);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let opt = vec![7u8; 4096];
    checkpoint::save(
        &ck,
        &model(&c, &device, 3),
        &tok,
        5,
        &[("optimizer.bin", opt)],
        serde_json::Value::Null,
    )
    .unwrap();
    // a damaged optimizer state: resuming refuses it, sampling does not read it
    let p = ck.join("optimizer.bin");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let e = checkpoint::load(&ck, None, &device).unwrap_err();
    assert!(
        matches!(e, CheckpointError::Checksum { .. }) && e.to_string().contains("optimizer.bin"),
        "{e}"
    );
    let (_, _, m, _) = checkpoint::load_for_inference(&ck, &device).unwrap();
    assert_eq!(m.step, 5);
    // a damaged tokenizer is still caught at inference
    let tp = ck.join("tokenizer.json");
    let mut t = std::fs::read(&tp).unwrap();
    t.push(b' ');
    std::fs::write(&tp, t).unwrap();
    let e = checkpoint::load_for_inference(&ck, &device).unwrap_err();
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    // a manifest naming a file outside the checkpoint is refused before anything is read
    let mp = ck.join("manifest.json");
    let text = std::fs::read_to_string(&mp)
        .unwrap()
        .replace("\"optimizer.bin\"", "\"../../etc/passwd\"");
    std::fs::write(&mp, text).unwrap();
    let e = checkpoint::read_manifest_unverified(&ck).unwrap_err();
    assert!(e.to_string().contains("leaves its directory"), "{e}");
}
