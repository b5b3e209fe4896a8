//! Tests of the synthetic world (small clips: 32×32, 8 fps, 2 s).

use std::collections::BTreeSet;

use super::catalog::mat_of;
use super::world::simulate;
use super::*;

fn small() -> SynthConfig {
    SynthConfig {
        seed: 7,
        train: 8,
        val: 2,
        test: 2,
        width: 32,
        height: 32,
        fps: 8.0,
        duration_s: 2.0,
        sample_rate: 16_000,
        gravity: 160.0,
        ..SynthConfig::default()
    }
}

/// Asserts that `cfg` fails validation with an error naming `synth.<key>`.
fn refused(cfg: SynthConfig, key: &str) {
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains(&format!("synth.{key}")), "{e}");
}

/// A room with nothing special: wood floor at y = 28, stone walls, no occluder.
fn room(objects: Vec<SceneObject>) -> Scene {
    Scene {
        gravity: 160.0,
        floor: mat_of("wood"),
        wall: mat_of("stone"),
        floor_y: 28.0,
        occluder: None,
        objects,
    }
}

#[test]
fn synth_is_deterministic_per_seed_split_and_index() {
    let cfg = small();
    let a = generate_clip(&cfg, Split::Train, 3).unwrap();
    let b = generate_clip(&cfg, Split::Train, 3).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.clip.metadata.clip_id, "synth-train-000003");
    let v = generate_clip(&cfg, Split::Val, 3).unwrap();
    assert_ne!(a.labels, v.labels, "splits must use different seed streams");
    assert_ne!(a.clip.frames, v.clip.frames);
    let other = generate_clip(
        &SynthConfig {
            seed: 8,
            ..cfg.clone()
        },
        Split::Train,
        3,
    )
    .unwrap();
    assert_ne!(a.labels, other.labels);
}

#[test]
fn synth_parallel_matches_sequential() {
    let cfg = small();
    let par = generate_split_parallel(&cfg, Split::Test, 2..9);
    assert_eq!(par.len(), 7);
    for (k, r) in par.into_iter().enumerate() {
        let seq = generate_clip(&cfg, Split::Test, 2 + k as u64).unwrap();
        assert_eq!(r.unwrap(), seq);
    }
}

#[test]
fn synth_shapes_ids_and_contact_frames() {
    let cfg = small();
    for i in 0..20 {
        let c = generate_clip(&cfg, Split::Train, i).unwrap();
        let f = &c.clip.frames;
        assert_eq!((f.t, f.h, f.w), (16, 32, 32));
        assert_eq!(f.data.len(), 16 * 32 * 32 * 3);
        assert_eq!(c.clip.audio.channels, 1);
        assert_eq!(c.clip.audio.samples.len(), 32_000);
        assert!(
            c.clip
                .audio
                .samples
                .iter()
                .all(|s| (-1.0..=1.0).contains(s))
        );
        assert!(c.clip.metadata.tags.contains(&"synthetic".to_string()));
        let n = c.labels.objects.len();
        assert!((1..=3).contains(&n));
        for o in &c.labels.objects {
            assert_eq!(o.center_x.len(), 16);
            assert_eq!(o.center_y.len(), 16);
            assert_eq!(o.visible.len(), 16);
        }
        let mut last = 0.0;
        for ct in &c.labels.contacts {
            assert!(ct.time_s >= last && ct.time_s < 2.0);
            last = ct.time_s;
            assert_eq!(ct.frame, (ct.time_s * 8.0).floor() as u32);
            assert!((ct.object as usize) < n);
            assert!(ct.speed > 0.0);
        }
    }
}

#[test]
fn synth_every_contact_has_an_audio_onset() {
    let cfg = small();
    let sr = cfg.sample_rate as f64;
    let (mut checked, mut worst) = (0, f64::INFINITY);
    for i in 0..40 {
        let c = generate_clip(&cfg, Split::Train, i).unwrap();
        let s = &c.clip.audio.samples;
        let cs = &c.labels.contacts;
        for (k, ct) in cs.iter().enumerate() {
            // Skip contacts right after another one (the earlier ring masks the onset).
            if k > 0 && ct.time_s - cs[k - 1].time_s < 0.25 {
                continue;
            }
            let at = (ct.time_s * sr).round() as usize;
            let win = (0.005 * sr) as usize;
            if at < win || at + win > s.len() {
                continue;
            }
            let energy =
                |r: std::ops::Range<usize>| s[r].iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            let (before, after) = (energy(at - win..at), energy(at..at + win));
            let ratio = after / before.max(1e-20);
            worst = worst.min(ratio);
            assert!(
                ratio > 4.0,
                "clip {i} contact {k} at {} s: energy after/before = {ratio}",
                ct.time_s
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} contacts checked");
    eprintln!("onset check: {checked} contacts, worst ratio {worst:.1}");
}

#[test]
fn synth_audio_is_quiet_without_contacts() {
    // A ball placed just above the floor never makes a recorded contact.
    let cfg = small();
    let scene = room(vec![SceneObject::plain(
        Shape::Ball,
        "red",
        Texture::Plain,
        "rubber",
        3.0,
        [16.0, 25.0 - 1e-3],
        [0.0, 0.0],
    )]);
    let c = clip_from_scene(&cfg, Split::Train, 0, &scene).unwrap();
    assert!(c.labels.contacts.is_empty());
    let rms = (c
        .clip
        .audio
        .samples
        .iter()
        .map(|v| (*v as f64).powi(2))
        .sum::<f64>()
        / 32_000.0)
        .sqrt();
    let db = 20.0 * rms.log10();
    assert!((db - cfg.ambience_db).abs() < 1.0, "ambience at {db} dBFS");
}

#[test]
fn synth_objects_never_sink_below_the_floor() {
    let cfg = SynthConfig {
        min_objects: 2,
        max_objects: 3,
        ..small()
    };
    for i in 0..40 {
        let c = generate_clip(&cfg, Split::Val, i).unwrap();
        let l = &c.labels;
        for o in &l.objects {
            for (k, y) in o.center_y.iter().enumerate() {
                assert!(
                    *y as f64 + o.size <= l.floor_y + 1e-3,
                    "clip {i} object {} frame {k}: y={y}",
                    o.id
                );
                let x = o.center_x[k] as f64;
                assert!(
                    x - o.size >= -1e-3 && x + o.size <= 32.0 + 1e-3,
                    "clip {i} object {} leaves the walls",
                    o.id
                );
            }
        }
    }
}

#[test]
fn synth_energy_never_increases_for_a_single_object() {
    let base = SynthConfig {
        min_objects: 1,
        max_objects: 1,
        occluder_prob: 0.0,
        ..small()
    };
    let mut rng = clip_rng(1, Split::Train, 0, Stream::Scene);
    for _ in 0..30 {
        let scene = sample_scene(&base, &mut rng);
        let sim = simulate(&base, &scene);
        let g = scene.gravity;
        let energy = |s: &world::FrameState| {
            0.5 * (s.vel[0].powi(2) + s.vel[1].powi(2)) + g * (scene.floor_y - s.pos[1])
        };
        let st = &sim.states[0];
        let e0 = energy(&st[0]);
        for k in 1..st.len() {
            let (a, b) = (energy(&st[k - 1]), energy(&st[k]));
            assert!(
                b <= a + 1e-6 * e0,
                "energy rose from {a} to {b} at frame {k}"
            );
        }
    }
}

#[test]
fn synth_bounce_times_are_exact() {
    // Ball dropped from rest: first contact at t = sqrt(2 h / g) exactly.
    let cfg = small();
    let (r, y0) = (3.0, 5.0);
    let scene = room(vec![SceneObject::plain(
        Shape::Ball,
        "red",
        Texture::Plain,
        "metal",
        r,
        [16.0, y0],
        [0.0, 0.0],
    )]);
    let sim = simulate(&cfg, &scene);
    let expect = (2.0 * (28.0 - r - y0) / 160.0f64).sqrt();
    let first = &sim.contacts[0];
    assert_eq!(first.other, "floor");
    assert!(
        (first.time_s - expect).abs() < 1e-9,
        "{} vs {expect}",
        first.time_s
    );
    let v = 160.0 * expect;
    assert!((first.speed - v).abs() < 1e-6);
    // Then bounces at decreasing speeds with the combined restitution.
    let e = (0.75f64 * 0.55).sqrt();
    let second = &sim.contacts[1];
    assert!((second.time_s - (expect + 2.0 * e * v / 160.0)).abs() < 1e-9);
    assert!((second.speed - e * v).abs() < 1e-6);
}

#[test]
fn synth_object_pixels_sit_at_the_labelled_centre() {
    let cfg = SynthConfig {
        character_prob: 0.0,
        occluder_prob: 0.0,
        ..small()
    };
    let mut checked = 0;
    for i in 0..30 {
        let c = generate_clip(&cfg, Split::Train, i).unwrap();
        let f = &c.clip.frames;
        let objs = &c.labels.objects;
        for o in objs {
            if !matches!(o.shape.as_str(), "ball" | "box" | "diamond") {
                continue;
            }
            for k in 0..f.t {
                let (x, y) = (o.center_x[k] as f64, o.center_y[k] as f64);
                let clear = objs.iter().filter(|p| p.id != o.id).all(|p| {
                    let d = ((p.center_x[k] as f64 - x).powi(2)
                        + (p.center_y[k] as f64 - y).powi(2))
                    .sqrt();
                    d > 1.5 * (p.size + o.size) + 2.0
                });
                if !o.visible[k] || !clear || y - o.size < 0.0 {
                    continue;
                }
                let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
                for (p, px) in f.frame(k).chunks_exact(3).enumerate() {
                    if px == o.rgb.as_slice() {
                        sx += (p % f.w) as f64 + 0.5;
                        sy += (p / f.w) as f64 + 0.5;
                        n += 1.0;
                    }
                }
                if n < 4.0 {
                    continue;
                }
                let (cx, cy) = (sx / n, sy / n);
                assert!(
                    (cx - x).abs() < 1.5 && (cy - y).abs() < 1.5,
                    "clip {i} object {} ({} {}) frame {k}: pixels at ({cx:.2}, {cy:.2}), label ({x:.2}, {y:.2})",
                    o.id,
                    o.texture,
                    o.shape
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} frames checked");
}

#[test]
fn synth_occluder_hides_an_object_passing_behind_it() {
    let cfg = small();
    let mut scene = room(vec![SceneObject::plain(
        Shape::Ball,
        "yellow",
        Texture::Plain,
        "rubber",
        3.0,
        [5.0, 24.0],
        [22.0, 0.0],
    )]);
    scene.occluder = Some(Panel {
        x0: 12.0,
        y0: 8.0,
        x1: 22.0,
        y1: 28.0,
        rgb: [104, 106, 114],
        color_name: "grey",
    });
    let c = clip_from_scene(&cfg, Split::Train, 0, &scene).unwrap();
    let o = &c.labels.objects[0];
    assert!(o.visible[0]);
    let hidden: Vec<usize> = (0..16).filter(|&k| !o.visible[k]).collect();
    assert!(
        !hidden.is_empty(),
        "the ball never went behind the panel: x = {:?}",
        o.center_x
    );
    let mut fully = 0;
    for &k in &hidden {
        let x = o.center_x[k] as f64;
        let frame = c.clip.frames.frame(k);
        let n = frame
            .chunks_exact(3)
            .filter(|p| *p == [242, 210, 36])
            .count();
        if x - 3.0 >= 12.0 && x + 3.0 <= 22.0 {
            assert_eq!(
                n, 0,
                "frame {k}: the ball is fully behind the panel but {n} pixels show"
            );
            fully += 1;
        }
    }
    assert!(fully > 0, "the ball never went fully behind the panel");
    assert!(c.clip.metadata.tags.contains(&"occluder".to_string()));
    assert!(c.clip.metadata.tags.contains(&"occlusion".to_string()));
    assert_eq!(c.labels.occluder.as_ref().map(|p| p.x0), Some(12.0));
}

#[test]
fn synth_objects_collide() {
    // Two balls rolling towards each other must meet and record an object contact.
    let cfg = small();
    let scene = room(vec![
        SceneObject::plain(
            Shape::Ball,
            "red",
            Texture::Plain,
            "rubber",
            3.0,
            [6.0, 20.0],
            [30.0, 0.0],
        ),
        SceneObject::plain(
            Shape::Ball,
            "blue",
            Texture::Plain,
            "rubber",
            3.0,
            [26.0, 20.0],
            [-30.0, 0.0],
        ),
    ]);
    let c = clip_from_scene(&cfg, Split::Train, 0, &scene).unwrap();
    let hit = c
        .labels
        .contacts
        .iter()
        .find(|c| c.other == "object:1")
        .expect("a collision");
    assert_eq!(hit.object, 0);
    // Symmetric approach: they meet when 20 - 2*30*t = 6.
    assert!((hit.time_s - 14.0 / 60.0).abs() < 1e-6, "{}", hit.time_s);
    assert!(c.clip.metadata.tags.contains(&"collision".to_string()));
    let cap = &c.clip.caption;
    assert!(cap.contains("red") && cap.contains("blue"), "{cap}");
}

#[test]
fn synth_characters_appear_with_ids() {
    let cfg = SynthConfig {
        character_prob: 1.0,
        min_objects: 2,
        max_objects: 3,
        ..small()
    };
    let c = generate_clip(&cfg, Split::Train, 0).unwrap();
    let ids = &c.clip.metadata.character_ids;
    assert!(!ids.is_empty());
    let uniq: BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        uniq.len(),
        ids.len(),
        "a character appears at most once per clip"
    );
    for o in &c.labels.objects {
        assert_eq!(o.shape, "character");
        assert!(o.character_id.is_some());
    }
    let names: Vec<String> = roster()
        .into_iter()
        .filter(|ch| ids.contains(&ch.id))
        .map(|ch| ch.name)
        .collect();
    assert!(
        names.iter().any(|n| c.clip.caption.contains(n.as_str())),
        "caption: {}",
        c.clip.caption
    );
}

#[test]
fn synth_roster_and_references() {
    let r = roster();
    assert_eq!(r.len(), 6);
    let ids: BTreeSet<_> = r.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 6);
    for ch in &r {
        assert!(["person", "pet", "object"].contains(&ch.kind.as_str()));
        assert!(ch.description.starts_with(&ch.name));
        let views: Vec<Vec<u8>> = (0..4).map(|v| render_reference(ch, 64, v)).collect();
        for v in &views {
            assert_eq!(v.len(), 64 * 64 * 3);
            // Centre pixel is the character, corner is background.
            assert_ne!(
                &v[(32 * 64 + 32) * 3..(32 * 64 + 32) * 3 + 3],
                &REFERENCE_BACKGROUND
            );
            assert_eq!(&v[0..3], &REFERENCE_BACKGROUND);
            assert!(v.chunks_exact(3).any(|p| p == ch.primary));
        }
        for a in 0..4 {
            for b in a + 1..4 {
                assert_ne!(
                    views[a], views[b],
                    "{} views {a} and {b} are identical",
                    ch.id
                );
            }
        }
    }
    // Characters look different from each other.
    let refs: BTreeSet<Vec<u8>> = r.iter().map(|c| render_reference(c, 32, 0)).collect();
    assert_eq!(refs.len(), 6);
}

#[test]
fn synth_captions_vary() {
    let cfg = small();
    let caps: Vec<String> = (0..50)
        .map(|i| generate_clip(&cfg, Split::Train, i).unwrap().clip.caption)
        .collect();
    let distinct: BTreeSet<&String> = caps.iter().collect();
    assert!(distinct.len() >= 20, "{} distinct captions", distinct.len());
    for c in &caps {
        assert!(c.len() > 15 && c.ends_with('.'), "odd caption: {c}");
        assert!(
            c.chars().next().unwrap().is_uppercase(),
            "caption not capitalised: {c}"
        );
        assert!(!c.contains("  "), "double space: {c}");
    }
    let words: BTreeSet<&str> = caps.iter().flat_map(|c| c.split_whitespace()).collect();
    assert!(words.len() > 80, "vocabulary of {} words", words.len());
}

#[test]
fn synth_config_validation() {
    assert!(SynthConfig::default().validate().is_ok());
    let e = SynthConfig {
        width: 15,
        ..SynthConfig::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("synth.width") && e.contains("15"), "{e}");
    refused(
        SynthConfig {
            height: 8,
            ..SynthConfig::default()
        },
        "height",
    );
    refused(
        SynthConfig {
            train: 0,
            ..SynthConfig::default()
        },
        "train",
    );
    assert!(
        SynthConfig {
            val: 0,
            test: 0,
            ..SynthConfig::default()
        }
        .validate()
        .is_ok()
    );
    refused(
        SynthConfig {
            max_objects: 0,
            ..SynthConfig::default()
        },
        "max_objects",
    );
    refused(
        SynthConfig {
            occluder_prob: 1.5,
            ..SynthConfig::default()
        },
        "occluder_prob",
    );
    refused(
        SynthConfig {
            fps: 0.0,
            ..SynthConfig::default()
        },
        "fps",
    );
    let cfg = SynthConfig::default();
    assert_eq!((cfg.num_frames(), cfg.num_samples()), (32, 64_000));
    assert_eq!(
        (
            cfg.count(Split::Train),
            cfg.count(Split::Val),
            cfg.count(Split::Test)
        ),
        (256, 32, 32)
    );
    assert!(
        generate_clip(
            &SynthConfig {
                width: 15,
                ..small()
            },
            Split::Train,
            0
        )
        .is_err()
    );
    assert_eq!("val".parse::<Split>().unwrap(), Split::Val);
}

#[test]
fn synth_data_configs_parse() {
    use crate::generate::SynthFile;
    for (name, text) in [
        (
            "quickstart",
            include_str!("../../../configs/data/quickstart.toml"),
        ),
        ("bench", include_str!("../../../configs/data/bench.toml")),
    ] {
        let f: SynthFile = toml::from_str(text).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        f.synth
            .validate()
            .unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        assert_eq!(
            (f.synth.width, f.synth.height, f.synth.num_frames()),
            (64, 64, 32),
            "{name}"
        );
    }
}

#[test]
fn plain_rooms_paint_each_row_of_a_surface_one_colour() {
    let scene = room(Vec::new());
    let row_colours = |bytes: &[u8], w: usize, y: usize| {
        let mut c: Vec<&[u8]> = bytes[y * w * 3..(y + 1) * w * 3].chunks(3).collect();
        c.sort();
        c.dedup();
        c.len()
    };
    let patterned = super::render::background(&small(), &scene);
    let plain = super::render::background(
        &SynthConfig {
            room_patterns: false,
            ..small()
        },
        &scene,
    );
    // stone walls and wood floors show their bricks and boards…
    assert!((0..32).any(|y| row_colours(&patterned, 32, y) > 1));
    // …plain ones only their colour, shaded by height, and the same room otherwise
    assert!((0..32).all(|y| row_colours(&plain, 32, y) == 1));
    // the wall and the floor still differ (stone over wood)
    assert_ne!(plain[..3], plain[31 * 32 * 3..31 * 32 * 3 + 3]);
}

#[test]
fn start_max_frac_bounds_where_objects_start() {
    // the highest start (largest y) over many scenes, as a fraction of the height
    let lowest_start = |cfg: &SynthConfig| {
        let mut rng = clip_rng(3, Split::Train, 0, Stream::Scene);
        (0..200)
            .flat_map(|_| sample_scene(cfg, &mut rng).objects)
            .map(|o| o.pos[1] / cfg.height as f64)
            .fold(0.0, f64::max)
    };
    let cfg = SynthConfig {
        height: 64,
        width: 64,
        ..small()
    };
    assert!(
        lowest_start(&cfg) > 0.4,
        "the default starts objects down to 0.55"
    );
    let high = SynthConfig {
        start_max_frac: 0.3,
        ..cfg.clone()
    };
    assert!(lowest_start(&high) <= 0.3);
    for bad in [0.0, 1.5, f64::NAN] {
        refused(
            SynthConfig {
                start_max_frac: bad,
                ..SynthConfig::default()
            },
            "start_max_frac",
        );
    }
}

#[test]
fn drop_world_starts_where_asked_falls_straight_in_plain_colours_and_names_its_side() {
    let drop = SynthConfig {
        min_objects: 1,
        max_objects: 1,
        occluder_prob: 0.0,
        character_prob: 0.0,
        drift_frac: 0.0,
        textures: false,
        caption_start: true,
        ..small()
    };
    // objects start anywhere between the walls, or in the centred band `start_spread`
    let starts = |cfg: &SynthConfig| -> Vec<f64> {
        let mut rng = clip_rng(3, Split::Train, 0, Stream::Scene);
        (0..200)
            .flat_map(|_| sample_scene(cfg, &mut rng).objects)
            .map(|o| o.pos[0] / cfg.width as f64)
            .collect()
    };
    let wide = starts(&drop);
    assert!(wide.iter().any(|&x| x < 0.25) && wide.iter().any(|&x| x > 0.75));
    let middle = starts(&SynthConfig {
        start_spread: 0.4,
        ..drop.clone()
    });
    assert!(
        middle.iter().all(|&x| (0.25..=0.75).contains(&x)),
        "{middle:?}"
    );
    let (mut sides, mut textures) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..40 {
        let c = generate_clip(&drop, Split::Train, i).unwrap();
        let o = &c.labels.objects[0];
        // no horizontal start speed and no walls to hit: x never moves
        let x0 = o.center_x[0];
        assert!(
            o.center_x.iter().all(|&x| (x - x0).abs() < 1e-3),
            "{:?}",
            o.center_x
        );
        textures.insert(o.texture.clone());
        let side = match x0 / 32.0 {
            x if x < 1.0 / 3.0 => "on the left",
            x if x > 2.0 / 3.0 => "on the right",
            _ => "in the middle",
        };
        assert!(c.clip.caption.contains(side), "x {x0}: {}", c.clip.caption);
        sides.insert(side);
    }
    assert_eq!(textures.into_iter().collect::<Vec<_>>(), ["plain"]);
    assert_eq!(sides.len(), 3, "all three sides occur in 40 clips");
    // the default world drifts sideways, has textures and does not name sides
    let default: Vec<SynthClip> = (0..40)
        .map(|i| generate_clip(&small(), Split::Train, i).unwrap())
        .collect();
    assert!(
        default
            .iter()
            .any(|c| c.labels.objects[0].texture != "plain")
    );
    assert!(default.iter().any(|c| {
        let x = &c.labels.objects[0].center_x;
        (x[x.len() - 1] - x[0]).abs() > 2.0
    }));
    assert!(
        default
            .iter()
            .all(|c| !c.clip.caption.contains(" in the middle"))
    );
    for bad in [0.0, 1.5, f64::NAN] {
        refused(
            SynthConfig {
                start_spread: bad,
                ..SynthConfig::default()
            },
            "start_spread",
        );
    }
    for bad in [-0.1, 2.5, f64::NAN] {
        refused(
            SynthConfig {
                drift_frac: bad,
                ..SynthConfig::default()
            },
            "drift_frac",
        );
    }
}
