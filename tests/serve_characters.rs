//! Characters in the server: registered from a video, cast by id or `@name` under the
//! owner's rule, drafts and publishing, downloads with sonora's mark, the owner's view of
//! every video that casts their character (and its audit log), revocation that fails
//! queued jobs, and deletion that takes every video containing the character with it.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sonora_framework::media::{Mp4Options, decode_mp4, decode_png, encode_mp4};
use sonora_framework::{Audio, Clip, ClipMetadata, Frames};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/server.rs"]
mod server;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use server::{Http, Server, create_key};

const WAIT: Duration = Duration::from_secs(120);

/// A server on the shared tiny checkpoint (8 frames of 16×16 at 8 fps: 1 s) with 2
/// sampler steps and `extra` `--set`s.
fn start(state: &Path, extra: &[&str]) -> Server {
    server::start_on(
        server::shared_checkpoint(),
        state,
        &[&["sampler.steps=2"], extra].concat(),
    )
}

/// A 1 s MP4 of a magenta square moving over grey: the character's video.
fn character_mp4() -> Vec<u8> {
    let (t, h, w) = (8, 32, 32);
    let mut frames = Frames::zeros(t, h, w);
    for k in 0..t {
        let fr = frames.frame_mut(k);
        for y in 0..h {
            for x in 0..w {
                let inside = (8..20).contains(&y) && (4 + k..16 + k).contains(&x);
                let px = if inside { [230, 20, 200] } else { [90, 90, 90] };
                fr[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
            }
        }
    }
    let clip = Clip {
        frames,
        audio: Audio::silence(16000, 1, 16000),
        fps: 8.0,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    };
    encode_mp4(&clip, &Mp4Options::default()).unwrap()
}

fn ok_json(r: server::Reply) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn make_character(u: &Http, name: &str, extra: &[(&str, &str)]) -> String {
    let mp4 = character_mp4();
    let mut parts: Vec<server::Part> = vec![
        ("name", None, name.as_bytes()),
        ("video", Some("pip.mp4"), &mp4),
    ];
    for (k, v) in extra {
        parts.push((k, None, v.as_bytes()));
    }
    let c = ok_json(u.post_multipart("/v1/videos/characters", &parts));
    assert_eq!(c["object"], "character");
    assert_eq!(c["name"], name);
    c["id"].as_str().unwrap().to_string()
}

fn create(u: &Http, body: Value) -> String {
    ok_json(u.post_json("/v1/videos", &body))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn frames_of(mp4: &[u8]) -> Frames {
    decode_mp4(mp4).unwrap().frames
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn characters_are_cast_under_their_owners_rules() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(&t.path().join("state"), &[]);
    let ann = srv.http(Some(&create_key(&srv.state, "ann")));
    let bob = srv.http(Some(&create_key(&srv.state, "bob")));
    let cal = srv.http(Some(&create_key(&srv.state, "cal")));

    // registered from a video: two reference frames at the model's reference size
    let pip = make_character(&ann, "pip", &[("restrictions", "no sad scenes")]);
    let c = ok_json(ann.get(&format!("/v1/videos/characters/{pip}")));
    assert_eq!(
        (c["rule"].as_str(), c["references"].as_u64()),
        (Some("only_me"), Some(2))
    );
    let refs = srv.state.join("characters").join(&pip);
    let (_, h, w) = decode_png(&std::fs::read(refs.join("ref-0.png")).unwrap()).unwrap();
    assert_eq!((h, w), (16, 16));

    // bad registrations
    let mp4 = character_mp4();
    ann.post_multipart(
        "/v1/videos/characters",
        &[("name", None, b"pip"), ("video", Some("v.mp4"), &mp4)],
    )
    .assert_error(409, "already have a character named");
    ann.post_multipart(
        "/v1/videos/characters",
        &[("name", None, b"x"), ("video", Some("v.mp4"), b"")],
    )
    .assert_error(400, "empty");
    ann.post_multipart(
        "/v1/videos/characters",
        &[
            ("name", None, b"x"),
            ("video", Some("v.mp4"), b"not a video"),
        ],
    )
    .assert_error(400, "not a playable MP4");
    ann.post_multipart("/v1/videos/characters", &[("name", None, b"x")])
        .assert_error(400, "`video`");
    ann.post_multipart(
        "/v1/videos/characters",
        &[("name", None, b"bad name!"), ("video", Some("v.mp4"), &mp4)],
    )
    .assert_error(400, "letters, digits");
    ann.post_multipart(
        "/v1/videos/characters",
        &[
            ("name", None, b"y"),
            ("rule", None, b"friends"),
            ("video", Some("v.mp4"), &mp4),
        ],
    )
    .assert_error(400, "only_me, approved or everyone");
    ann.post_multipart(
        "/v1/videos/characters",
        &[
            ("name", None, b"y"),
            ("rule", None, b"approved"),
            ("approved", None, b"zed"),
            ("video", Some("v.mp4"), &mp4),
        ],
    )
    .assert_error(400, "\"zed\", who is not a user");

    // only_me: the owner casts by id and by @name; others cannot see or cast it
    let by_id = create(
        &ann,
        json!({"prompt": "pip falls", "characters": [pip], "seed": 3}),
    );
    let by_name = create(&ann, json!({"prompt": "@pip falls", "seed": 3}));
    let plain = create(&ann, json!({"prompt": "pip falls", "seed": 3}));
    for id in [&by_id, &by_name, &plain] {
        assert_eq!(ann.wait(id, WAIT)["status"], "completed");
    }
    assert_eq!(
        ann.get(&format!("/v1/videos/{by_name}")).json()["characters"],
        json!([pip])
    );
    // both casts gave the sampler the character's two reference images (the tiny test
    // model's blocks are still near their zero init, so the pixels cannot show it)
    let metrics = String::from_utf8(Http::new(&srv.base, None).get("/metrics").body).unwrap();
    assert!(
        metrics.contains("sonora_reference_images_sampled_total 4"),
        "{metrics}"
    );
    bob.get(&format!("/v1/videos/characters/{pip}"))
        .assert_error(404, &pip);
    bob.post_json(
        "/v1/videos",
        &json!({"prompt": "a ball", "characters": [pip]}),
    )
    .assert_error(403, "pip");
    bob.post_json("/v1/videos", &json!({"prompt": "@pip jumps"}))
        .assert_error(403, "may not cast character pip");
    assert_eq!(bob.get("/v1/videos/characters").json()["data"], json!([]));
    // others may not change it
    bob.post_multipart(
        &format!("/v1/videos/characters/{pip}"),
        &[("rule", None, b"everyone")],
    )
    .assert_error(404, &pip);

    // approved: bob may cast it, cal may not
    let c = ok_json(ann.post_multipart(
        &format!("/v1/videos/characters/{pip}"),
        &[("rule", None, b"approved"), ("approved", None, b"bob")],
    ));
    assert_eq!(c["approved"], json!(["bob"]));
    assert_eq!(
        ok_json(bob.get(&format!("/v1/videos/characters/{pip}")))["restrictions"],
        "no sad scenes"
    );
    cal.post_json("/v1/videos", &json!({"prompt": "@pip"}))
        .assert_error(403, "pip");
    let bobs = create(&bob, json!({"prompt": "@pip bounces"}));
    assert_eq!(bob.wait(&bobs, WAIT)["status"], "completed");

    // a draft with ann's character: ann sees it and may download it; bob may not download
    // it until he publishes; cal does not see it
    assert_eq!(
        ok_json(ann.get(&format!("/v1/videos/{bobs}")))["published"],
        false
    );
    bob.get(&format!("/v1/videos/{bobs}/content"))
        .assert_error(403, "draft");
    assert_eq!(ann.get(&format!("/v1/videos/{bobs}/content")).status, 200);
    cal.get(&format!("/v1/videos/{bobs}"))
        .assert_error(404, &bobs);
    // the owner lists every video with the character, and reads who cast it
    let listed: Vec<String> =
        ok_json(ann.get(&format!("/v1/videos/characters/{pip}/videos")))["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(listed, vec![bobs.clone(), by_name.clone(), by_id.clone()]);
    let audit = ok_json(ann.get(&format!("/v1/videos/characters/{pip}/audit")))["data"].clone();
    let users: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, vec!["ann", "ann", "bob"]);
    bob.get(&format!("/v1/videos/characters/{pip}/audit"))
        .assert_error(403, "owner");
    // the owner may delete any video that casts the character, whoever made it
    let bobs2 = create(&bob, json!({"prompt": "@pip rolls"}));
    bob.wait(&bobs2, WAIT);
    cal.delete(&format!("/v1/videos/{bobs2}"))
        .assert_error(404, &bobs2);
    assert_eq!(
        ok_json(ann.delete(&format!("/v1/videos/{bobs2}")))["deleted"],
        true
    );
    bob.get(&format!("/v1/videos/{bobs2}"))
        .assert_error(404, &bobs2);
    assert!(!srv.state.join("videos").join(&bobs2).exists());

    // published: in the feed, visible to all, downloadable with sonora's mark; cal may not
    // remix it (he may not cast pip), the mark is on the video, thumbnail and spritesheet
    cal.post_json(&format!("/v1/videos/{bobs}/publish"), &json!({}))
        .assert_error(404, &bobs);
    assert_eq!(
        ok_json(bob.post_json(&format!("/v1/videos/{bobs}/publish"), &json!({})))["published"],
        true
    );
    let feed = ok_json(cal.get("/v1/videos/feed"));
    assert_eq!(feed["data"][0]["id"], bobs.as_str());
    assert_eq!(
        ok_json(cal.get(&format!("/v1/videos/{bobs}")))["characters"],
        json!([pip])
    );
    cal.post_json(&format!("/v1/videos/{bobs}/remix"), &json!({"prompt": "x"}))
        .assert_error(403, "pip");
    let marked = cal.get(&format!("/v1/videos/{bobs}/content"));
    assert_eq!(marked.status, 200);
    let dir = srv.state.join("videos").join(&bobs);
    let (m, c) = (
        frames_of(&marked.body),
        frames_of(&std::fs::read(dir.join("video.mp4")).unwrap()),
    );
    for k in 0..m.t {
        assert!(
            mean_abs_diff(m.frame(k), c.frame(k)) > 4.0,
            "frame {k} carries the mark after H.264"
        );
    }
    for v in ["thumbnail", "spritesheet"] {
        let got = cal
            .get(&format!("/v1/videos/{bobs}/content?variant={v}"))
            .body;
        let clean = std::fs::read(dir.join(format!("{v}.png"))).unwrap();
        let (g, _, _) = decode_png(&got).unwrap();
        let (c, _, _) = decode_png(&clean).unwrap();
        assert!(mean_abs_diff(&g, &c) > 4.0, "the {v} carries the mark");
    }
    // the mark moves
    let pos = |f: &Frames, k: usize| -> (usize, usize) {
        let (fr, cl) = (f.frame(k), c.frame(k));
        let i = (0..fr.len() / 3)
            .max_by_key(|&i| (fr[i * 3] as i32 - cl[i * 3] as i32).abs())
            .unwrap();
        (i % f.w, i / f.w)
    };
    assert_ne!(pos(&m, 0), pos(&m, 4), "the mark moves between frames");

    // deleting the character deletes every video that casts it, files and all
    let d = ok_json(ann.delete(&format!("/v1/videos/characters/{pip}")));
    assert_eq!(d["videos_deleted"].as_array().unwrap().len(), 3);
    for id in [&by_id, &by_name, &bobs] {
        ann.get(&format!("/v1/videos/{id}")).assert_error(404, id);
        bob.get(&format!("/v1/videos/{id}")).assert_error(404, id);
        assert!(
            !srv.state.join("videos").join(id).exists(),
            "{id}'s files are gone"
        );
    }
    assert!(!refs.exists());
    ann.get(&format!("/v1/videos/characters/{pip}"))
        .assert_error(404, &pip);
    // the video without the character stays
    assert_eq!(
        ok_json(ann.get(&format!("/v1/videos/{plain}")))["status"],
        "completed"
    );
}

#[test]
fn changing_the_rule_fails_queued_jobs_of_users_it_no_longer_allows() {
    let t = tempfile::tempdir().unwrap();
    // slow jobs, one at a time: the second stays queued
    let srv = start(&t.path().join("state"), &["sampler.steps=10000", "batch=1"]);
    let ann = srv.http(Some(&create_key(&srv.state, "ann")));
    let bob = srv.http(Some(&create_key(&srv.state, "bob")));
    let pip = make_character(&ann, "pip", &[("rule", "everyone")]);
    let running = create(&bob, json!({"prompt": "a ball"}));
    let queued = create(&bob, json!({"prompt": "@pip falls"}));
    let own = create(&ann, json!({"prompt": "@pip falls"}));
    ok_json(ann.post_multipart(
        &format!("/v1/videos/characters/{pip}"),
        &[("rule", None, b"only_me")],
    ));
    let v = ok_json(bob.get(&format!("/v1/videos/{queued}")));
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "character_revoked");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bob may no longer cast character pip")
    );
    // the owner's own queued job is untouched; new uses by bob are refused at once
    assert_eq!(
        ok_json(ann.get(&format!("/v1/videos/{own}")))["status"],
        "queued"
    );
    bob.post_json("/v1/videos", &json!({"prompt": "@pip"}))
        .assert_error(403, "pip");
    bob.delete(&format!("/v1/videos/{running}"));
    ann.delete(&format!("/v1/videos/{own}"));
}

#[test]
fn a_video_without_characters_is_marked_as_configured_and_own_characters_may_be_clean() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(
        &t.path().join("state"),
        &["watermark=false", "clean_own_character_downloads=true"],
    );
    let ann = srv.http(Some(&create_key(&srv.state, "ann")));
    let pip = make_character(&ann, "pip", &[]);
    let plain = create(&ann, json!({"prompt": "a ball"}));
    let cast = create(&ann, json!({"prompt": "a ball", "characters": [pip]}));
    for id in [&plain, &cast] {
        ann.wait(id, WAIT);
        let got = ann.get(&format!("/v1/videos/{id}/content")).body;
        let clean = std::fs::read(srv.state.join("videos").join(id).join("video.mp4")).unwrap();
        assert_eq!(got, clean, "{id} downloads clean");
    }
    // the default marks a video without characters
    let t2 = tempfile::tempdir().unwrap();
    let srv2 = start(&t2.path().join("state"), &[]);
    let u = srv2.http(Some(&create_key(&srv2.state, "u")));
    let id = create(&u, json!({"prompt": "a ball"}));
    u.wait(&id, WAIT);
    let got = u.get(&format!("/v1/videos/{id}/content")).body;
    let marked = std::fs::read(srv2.state.join("videos").join(&id).join("video.wm.mp4")).unwrap();
    assert_eq!(got, marked);
}

#[test]
fn every_mp4_carries_signed_provenance_that_catches_alteration() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("state");
    let srv = start(&state, &[]);
    let reg = Server::registry_of(&state);
    let ann = srv.http(Some(&create_key(&srv.state, "ann")));
    let pip = make_character(&ann, "pip", &[]);
    let first = create(&ann, json!({"prompt": "a ball"}));
    ann.wait(&first, WAIT);
    let rmx = ok_json(ann.post_json(
        &format!("/v1/videos/{first}/remix"),
        &json!({"prompt": "@pip falls"}),
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    ann.wait(&rmx, WAIT);
    let file = t.path().join("rmx.mp4");
    std::fs::write(&file, ann.get(&format!("/v1/videos/{rmx}/content")).body).unwrap();
    let f = file.to_str().unwrap();
    let r = reg.to_str().unwrap();

    // ffprobe still reads it; verification names this server, the model, the request,
    // the character and the source
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            f,
        ])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "h264\nopus");
    let out = cli::ok(&["provenance", "verify", f, "--registry", r]);
    for needle in [
        "verified",
        "this server",
        "tiny-test@checkpoint",
        rmx.as_str(),
        pip.as_str(),
        &format!("remix of {first}"),
        "watermarked: yes",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    // another server's registry: verified, but not this server's
    let other = t.path().join("other-registry");
    cli::ok(&[
        "serve",
        "keys",
        "init",
        "--registry",
        other.to_str().unwrap(),
    ]);
    let out = cli::ok(&[
        "provenance",
        "verify",
        f,
        "--registry",
        other.to_str().unwrap(),
    ]);
    assert!(out.contains("another sonora server"), "{out}");
    // init refuses to replace a key
    let o = cli::run(&["serve", "keys", "init", "--registry", r]);
    assert!(!o.status.success() && cli::text(&o).contains("--force"));

    // one byte of the video changed: altered
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = t.path().join("bad.mp4");
    std::fs::write(&bad, &bytes).unwrap();
    let o = cli::run(&[
        "provenance",
        "verify",
        bad.to_str().unwrap(),
        "--registry",
        r,
    ]);
    assert!(!o.status.success());
    assert!(cli::text(&o).contains("altered"), "{}", cli::text(&o));
    // truncated, and re-encoded by ffmpeg: no provenance
    let cut = t.path().join("cut.mp4");
    let good = std::fs::read(&file).unwrap();
    std::fs::write(&cut, &good[..good.len() - 40]).unwrap();
    let reenc = t.path().join("reenc.mp4");
    let ff = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-i",
            f,
            "-c:v",
            "libx264",
            "-c:a",
            "copy",
            reenc.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(ff.success());
    for p in [&cut, &reenc] {
        let o = cli::run(&["provenance", "verify", p.to_str().unwrap(), "--registry", r]);
        assert!(!o.status.success());
        assert!(
            cli::text(&o).contains("no sonora provenance"),
            "{}",
            cli::text(&o)
        );
    }
}

/// `sonora eval clip`: a clip's consistency scores, identity against given references —
/// the check a served character clip gets by hand.
#[test]
fn eval_clip_scores_a_clips_identity_against_references() {
    let t = tempfile::tempdir().unwrap();
    let mp4 = t.path().join("c.mp4");
    std::fs::write(&mp4, character_mp4()).unwrap();
    // the subject in the middle of a plain background, as a reference shows it
    let png = |rgb: [u8; 3], name: &str| {
        let px: Vec<u8> = (0..16 * 16)
            .flat_map(|i| {
                let (y, x) = (i / 16, i % 16);
                if (4..12).contains(&y) && (4..12).contains(&x) {
                    rgb
                } else {
                    [90, 90, 90]
                }
            })
            .collect();
        let p = t.path().join(name);
        std::fs::write(
            &p,
            sonora_framework::media::encode_png(&px, 16, 16).unwrap(),
        )
        .unwrap();
        p
    };
    let score = |r: &Path| -> f64 {
        let out = cli::ok(&[
            "eval",
            "clip",
            mp4.to_str().unwrap(),
            "--references",
            r.to_str().unwrap(),
        ]);
        let v: Value = serde_json::from_str(&out[out.find('{').unwrap()..]).unwrap();
        v["consistency.character_identity"].as_f64().unwrap()
    };
    let magenta = score(&png([230, 20, 200], "m.png"));
    let green = score(&png([20, 200, 40], "g.png"));
    assert!(
        magenta > 0.5 && green < 0.1,
        "magenta {magenta}, green {green}"
    );
}

/// Casting end to end through the official SDK, on a model trained to cast (the committed
/// `tests/fixtures/cast` checkpoint, made by `scripts/make_cast_fixture.sh`): pip's owner
/// registers pip from a clip of pip turning, then makes one prompt that names no character
/// at several seeds, with pip cast and without. By the eval's character-identity metric
/// against pip's reference images, the cast clips show pip more than the uncast clips of
/// the same seeds.
#[test]
fn a_cast_character_shows_in_its_clips_more_than_in_the_same_seeds_uncast() {
    use sonora_datasets::synth::{render_reference, roster};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cast");
    let t = tempfile::tempdir().unwrap();
    let pip = roster().into_iter().find(|c| c.id == "pip").unwrap();
    // pip's four views as the synthetic world draws its reference images
    let views: Vec<Vec<u8>> = (0..4).map(|v| render_reference(&pip, 64, v)).collect();
    // the owner's clip: each view held for half a second
    let mut frames = Frames::zeros(16, 64, 64);
    for k in 0..16 {
        frames.frame_mut(k).copy_from_slice(&views[k / 4]);
    }
    let clip = Clip {
        frames,
        audio: Audio::silence(32000, 1, 16000),
        fps: 8.0,
        caption: String::new(),
        metadata: ClipMetadata::default(),
    };
    let mp4 = t.path().join("pip.mp4");
    std::fs::write(&mp4, encode_mp4(&clip, &Mp4Options::default()).unwrap()).unwrap();
    // the metric's references: the first two views
    let mut refs = Vec::new();
    for (k, v) in views[..2].iter().enumerate() {
        let p = t.path().join(format!("ref-{k}.png"));
        std::fs::write(&p, sonora_framework::media::encode_png(v, 64, 64).unwrap()).unwrap();
        refs.push(p.to_str().unwrap().to_string());
    }

    // clean downloads on both sides: no mark on clips without characters, none on clips
    // of the downloader's own character
    let srv = server::start_on(
        &fixture,
        &t.path().join("state"),
        &["watermark=false", "clean_own_character_downloads=true"],
    );
    let key = create_key(&srv.state, "owner");
    let out = t.path().join("out");
    let seeds = ["0", "1", "2", "3"];
    let o = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_cast.py"))
        .args([
            &srv.base,
            &key,
            mp4.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .args(seeds)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with("ok"),
        "serve_cast.py:\n{}",
        cli::text(&o)
    );
    let identity = |name: &str| -> f64 {
        let clip = out.join(name);
        let mut args = vec!["eval", "clip", clip.to_str().unwrap(), "--references"];
        args.extend(refs.iter().map(String::as_str));
        let text = cli::ok(&args);
        let v: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
        v["consistency.character_identity"].as_f64().unwrap()
    };
    let cast: Vec<f64> = seeds
        .iter()
        .map(|s| identity(&format!("cast-{s}.mp4")))
        .collect();
    let plain: Vec<f64> = seeds
        .iter()
        .map(|s| identity(&format!("plain-{s}.mp4")))
        .collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let wins = cast.iter().zip(&plain).filter(|(c, p)| c > p).count();
    assert!(
        mean(&cast) > mean(&plain) + 0.1 && wins >= 3,
        "identity cast {cast:?} vs uncast {plain:?}"
    );
}
