//! `sonora serve`: the OpenAI Videos API over the job store, driven over HTTP against a
//! tiny trained checkpoint: jobs per user, content variants, chained extension for
//! longer clips, remix and extension, pagination, deletion, keys, OpenAI-shaped errors
//! for bad input (and no 5xx for random bodies), back-pressure and quotas, reload.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sonora_framework::media::{decode_png, probe_mp4};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/server.rs"]
mod server;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use server::{Http, Server, create_key};

/// A server on the shared tiny checkpoint (8 frames of 16×16 at 8 fps: 1 s) with 2
/// sampler steps and `extra` `--set`s.
fn start(state: &Path, extra: &[&str]) -> Server {
    server::start_on(
        server::shared_checkpoint(),
        state,
        &[&["sampler.steps=2"], extra].concat(),
    )
}

const WAIT: Duration = Duration::from_secs(120);

/// A 16×16 PNG of one colour.
fn png(rgb: [u8; 3]) -> Vec<u8> {
    let px: Vec<u8> = (0..16 * 16).flat_map(|_| rgb).collect();
    sonora_framework::media::encode_png(&px, 16, 16).unwrap()
}

fn created(r: server::Reply) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["object"], "video");
    assert_eq!(v["status"], "queued", "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn jobs_run_per_user_and_their_content_is_video_with_sound() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(&t.path().join("state"), &[]);
    let alice = srv.http(Some(&create_key(&srv.state, "alice")));
    let bob = srv.http(Some(&create_key(&srv.state, "bob")));

    // text → 1 s clip (the model's own length), as JSON
    let id = created(alice.post_json(
        "/v1/videos",
        &json!({"prompt": "a red ball falls", "seed": 7}),
    ));
    let v = alice.wait(&id, WAIT);
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["progress"], 100);
    assert_eq!(v["seconds"], "1");
    assert_eq!(v["size"], "16x16");
    assert!(
        v["model"].as_str().unwrap().starts_with("tiny-test@"),
        "{v}"
    );
    assert!(v["completed_at"].as_i64().unwrap() >= v["created_at"].as_i64().unwrap());

    // content: MP4 (H.264 + sound of the clip's length), thumbnail, spritesheet
    let mp4 = alice.get(&format!("/v1/videos/{id}/content"));
    assert_eq!(mp4.status, 200);
    assert_eq!(mp4.header("content-type"), Some("video/mp4"));
    let info = probe_mp4(&mp4.body).unwrap();
    assert_eq!((info.num_frames, info.width, info.height), (8, 16, 16));
    assert_eq!(info.video_codec, "avc1");
    assert!(info.audio_codec.is_some(), "{info:?}");
    let thumb = alice.get(&format!("/v1/videos/{id}/content?variant=thumbnail"));
    assert_eq!(thumb.header("content-type"), Some("image/png"));
    assert_eq!(decode_png(&thumb.body).unwrap().1, 16);
    let sheet = alice.get(&format!("/v1/videos/{id}/content?variant=spritesheet"));
    let (_, h, w) = decode_png(&sheet.body).unwrap();
    assert_eq!((h, w), (16, 8 * 16), "8 frames on one row");

    // another user's id answers as if it did not exist
    bob.get(&format!("/v1/videos/{id}")).assert_error(404, &id);
    bob.get(&format!("/v1/videos/{id}/content"))
        .assert_error(404, &id);
    bob.delete(&format!("/v1/videos/{id}"))
        .assert_error(404, &id);
    bob.post_json(&format!("/v1/videos/{id}/remix"), &json!({"prompt": "x"}))
        .assert_error(404, &id);
    assert_eq!(bob.get("/v1/videos").json()["data"], json!([]));

    // longer than the model's clip: chained extension to 2.5 s, with sound to the end
    let long = created(alice.post_json(
        "/v1/videos",
        &json!({"prompt": "a ball rolls", "seconds": "2.5"}),
    ));
    // a first frame (multipart, as the SDK sends it)
    let img = created(alice.post_multipart(
        "/v1/videos",
        &[
            ("prompt", None, b"a blue cube slides"),
            ("input_reference", Some("f.png"), &png([0, 0, 255])),
        ],
    ));
    // remix and extension of the completed video
    let rmx = created(alice.post_json(
        &format!("/v1/videos/{id}/remix"),
        &json!({"prompt": "a green ball falls", "strength": 0.5}),
    ));
    let ext = created(alice.post_json(
        "/v1/videos/extensions",
        &json!({"prompt": "it bounces", "seconds": "1", "video": {"id": id}}),
    ));
    // an edit of an uploaded MP4 (the bytes of the first video)
    let edit = created(alice.post_multipart(
        "/v1/videos/edits",
        &[
            ("prompt", None, b"now it is night"),
            ("video", Some("in.mp4"), &mp4.body),
        ],
    ));
    for (vid, seconds, frames, from) in [
        (&long, "2.5", 20, None),
        (&img, "1", 8, None),
        (&rmx, "1", 8, Some(&id)),
        (&ext, "2", 16, Some(&id)),
        (&edit, "1", 8, None),
    ] {
        let v = alice.wait(vid, WAIT);
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["seconds"], seconds, "{v}");
        assert_eq!(
            v["remixed_from_video_id"].as_str(),
            from.map(|s| s.as_str()),
            "{v}"
        );
        let b = alice.get(&format!("/v1/videos/{vid}/content")).body;
        let info = probe_mp4(&b).unwrap();
        assert_eq!(info.num_frames, frames, "{vid}: {info:?}");
        let d = sonora_framework::media::decode_mp4(&b).unwrap();
        let audio = d.audio.expect("sound");
        let secs = audio.num_frames() as f64 / audio.sample_rate as f64;
        assert!(
            (secs - frames as f64 / 8.0).abs() < 0.05,
            "{vid}: {secs} s of sound for {frames} frames"
        );
    }
    // the extension starts with the source: its first frames are the source's
    let src = sonora_framework::media::decode_mp4(&mp4.body)
        .unwrap()
        .frames;
    let ext_frames =
        sonora_framework::media::decode_mp4(&alice.get(&format!("/v1/videos/{ext}/content")).body)
            .unwrap()
            .frames;
    let diff: f64 = src
        .data
        .iter()
        .zip(&ext_frames.data)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .sum::<f64>()
        / src.data.len() as f64;
    assert!(
        diff < 3.0,
        "the stitched clip begins with its source (mean |Δ| {diff})"
    );

    // the first frame was honoured: the image job's first frame is mostly blue
    let first = decode_png(
        &alice
            .get(&format!("/v1/videos/{img}/content?variant=thumbnail"))
            .body,
    )
    .unwrap()
    .0;
    let (r, b): (u64, u64) = first
        .chunks(3)
        .fold((0, 0), |(r, b), p| (r + p[0] as u64, b + p[2] as u64));
    assert!(b > 2 * r, "first frame blue {b} vs red {r}");

    // pagination: 6 videos, pages of 4, newest first, then ascending
    let p1 = alice.get("/v1/videos?limit=4").json();
    assert_eq!(p1["object"], "list");
    assert_eq!(p1["data"].as_array().unwrap().len(), 4);
    assert_eq!(p1["has_more"], true);
    let last = p1["last_id"].as_str().unwrap();
    let p2 = alice
        .get(&format!("/v1/videos?limit=4&after={last}"))
        .json();
    assert_eq!(p2["data"].as_array().unwrap().len(), 2);
    assert_eq!(p2["has_more"], false);
    let mut all: Vec<String> = p1["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p2["data"].as_array().unwrap())
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.first(), Some(&edit), "newest first");
    assert_eq!(all.last(), Some(&id));
    let asc = alice.get("/v1/videos?order=asc&limit=100").json();
    let asc: Vec<String> = asc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    all.reverse();
    assert_eq!(asc, all);

    // delete: gone for reads and content, and its files removed
    let d = alice.delete(&format!("/v1/videos/{rmx}")).json();
    assert_eq!(
        d,
        json!({"id": rmx, "object": "video.deleted", "deleted": true})
    );
    alice
        .get(&format!("/v1/videos/{rmx}"))
        .assert_error(404, &rmx);
    alice
        .get(&format!("/v1/videos/{rmx}/content"))
        .assert_error(404, &rmx);
    assert!(!srv.state.join("videos").join(&rmx).exists());

    // the served model, health, metrics and the generated OpenAPI document
    let m = alice.get("/v1/models").json();
    assert_eq!(m["data"][0]["id"], "tiny-test");
    assert_eq!(m["data"][0]["size"], "16x16");
    let h = Http::new(&srv.base, None).get("/healthz").json();
    assert_eq!(h["status"], "ok");
    let metrics = String::from_utf8(Http::new(&srv.base, None).get("/metrics").body).unwrap();
    for needle in [
        "sonora_queue_depth",
        "sonora_jobs{status=\"completed\"} 5",
        "sonora_job_seconds_bucket",
        "sonora_sampler_step_seconds_count",
        "sonora_http_requests_total{route=\"/v1/videos/{video_id}\",method=\"GET\",code=\"404\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    let api = Http::new(&srv.base, None).get("/openapi.json").json();
    for p in [
        "/v1/videos",
        "/v1/videos/{video_id}/content",
        "/v1/videos/extensions",
        "/admin/reload",
    ] {
        assert!(api["paths"][p].is_object(), "openapi.json lacks {p}");
    }
    assert!(
        api["components"]["schemas"]["VideoObject"]["properties"]["remixed_from_video_id"]
            .is_object()
    );
    // the playground page
    let page = Http::new(&srv.base, None).get("/");
    assert!(String::from_utf8_lossy(&page.body).contains("/v1/videos"));
}

#[test]
fn keys_are_created_listed_and_revoked_and_each_bad_key_is_a_401() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(&t.path().join("state"), &[]);
    let key = create_key(&srv.state, "carol");
    let ok = srv.http(Some(&key));
    assert_eq!(ok.get("/v1/videos").status, 200);
    srv.http(None)
        .get("/v1/videos")
        .assert_error(401, "no API key");
    Http::new(&srv.base, Some("sk-sonora-0000"))
        .get("/v1/videos")
        .assert_error(401, "not valid");
    Http::with_authorization(&srv.base, &format!("Basic {key}"))
        .get("/v1/videos")
        .assert_error(401, "must be `Bearer KEY`");

    // the key is stored hashed: neither the store nor `list` holds it
    let db = std::fs::read(srv.state.join("jobs.sqlite")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(&key));
    let listed = cli::ok(&[
        "serve",
        "keys",
        "list",
        "--state",
        srv.state.to_str().unwrap(),
    ]);
    assert!(
        listed.contains("carol") && !listed.contains(&key),
        "{listed}"
    );
    let id = listed
        .lines()
        .find(|l| l.contains("carol"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    cli::ok(&[
        "serve",
        "keys",
        "revoke",
        &id,
        "--state",
        srv.state.to_str().unwrap(),
    ]);
    ok.get("/v1/videos").assert_error(401, "revoked");
    // revoking again names the key
    let o = cli::run(&[
        "serve",
        "keys",
        "revoke",
        &id,
        "--state",
        srv.state.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && cli::text(&o).contains(&id));
    // a non-admin may not reload
    let dave = srv.http(Some(&create_key(&srv.state, "dave")));
    dave.send("POST", "/admin/reload", None, b"")
        .assert_error(403, "may not reload");
}

#[test]
fn bad_input_gets_an_openai_error_naming_it_and_nothing_stored_is_lost() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(
        &t.path().join("state"),
        &["max_body_bytes=200000", "max_prompt_chars=500"],
    );
    let u = srv.http(Some(&create_key(&srv.state, "erin")));
    let good = created(u.post_json("/v1/videos", &json!({"prompt": "a ball"})));
    let done = u.wait(&good, WAIT);
    assert_eq!(done["status"], "completed");
    let running = created(u.post_json("/v1/videos", &json!({"prompt": "a ball", "seconds": "8"})));

    let cases: Vec<(server::Reply, u16, &str)> = vec![
        (
            u.send(
                "POST",
                "/v1/videos",
                Some("application/json"),
                b"{\"prompt\": ",
            ),
            400,
            "not valid JSON",
        ),
        (
            u.send("POST", "/v1/videos", Some("application/json"), b"[1, 2]"),
            400,
            "JSON object",
        ),
        (
            u.send(
                "POST",
                "/v1/videos",
                Some("multipart/form-data; boundary=x"),
                b"--x\r\nnonsense",
            ),
            400,
            "multipart",
        ),
        (
            u.send("POST", "/v1/videos", Some("text/plain"), b"prompt=a"),
            400,
            "application/json or multipart",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "colour": "red"})),
            400,
            "unknown parameter `colour`",
        ),
        (
            u.post_json("/v1/videos", &json!({})),
            400,
            "`prompt` is required",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "   "})),
            400,
            "prompt is empty",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a".repeat(10_000)})),
            400,
            "at most 500",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "seconds": "0"})),
            400,
            "seconds",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "seconds": "1.3"})),
            400,
            "whole number of frames",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "seconds": "99"})),
            400,
            "at most 16",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "size": "1280x720"})),
            400,
            "it makes 16x16",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "model": "sora-2"})),
            400,
            "serves \"tiny-test\"",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "a", "seed": "-3"})),
            400,
            "seed",
        ),
        (
            u.post_multipart(
                "/v1/videos",
                &[
                    ("prompt", None, b"a"),
                    ("input_reference", Some("x.png"), b"GIF89a not a png"),
                ],
            ),
            400,
            "must be a PNG",
        ),
        (
            u.post_multipart(
                "/v1/videos",
                &[
                    ("prompt", None, b"a"),
                    ("input_reference", Some("big.png"), &vec![0u8; 300_000]),
                ],
            ),
            413,
            "limit of 200000 bytes",
        ),
        (
            u.post_multipart(
                "/v1/videos",
                &[("prompt", None, b"a"), ("prompt", None, b"b")],
            ),
            400,
            "given twice",
        ),
        (
            u.post_json(
                "/v1/videos",
                &json!({"prompt": "a", "characters": [{"id": "char_1"}]}),
            ),
            400,
            "unknown character \"char_1\"",
        ),
        (
            u.post_json("/v1/videos", &json!({"prompt": "@nobody falls"})),
            400,
            "@nobody",
        ),
        (u.get("/v1/videos/video_nope"), 404, "video_nope"),
        (u.get("/v1/videos?limit=0"), 400, "limit must be 1 to 100"),
        (u.get("/v1/videos?order=sideways"), 400, "asc or desc"),
        (
            u.get("/v1/videos?after=video_nope"),
            400,
            "not one of your videos",
        ),
        (u.get("/v1/videos?colour=1"), 400, "query"),
        (
            u.get(&format!("/v1/videos/{good}/content?variant=gif")),
            400,
            "variant",
        ),
        (
            u.get(&format!("/v1/videos/{running}/content")),
            409,
            "completed",
        ),
        (
            u.post_json(
                &format!("/v1/videos/{running}/remix"),
                &json!({"prompt": "b"}),
            ),
            409,
            "only a completed video",
        ),
        (
            u.post_json(
                &format!("/v1/videos/{good}/remix"),
                &json!({"prompt": "b", "strength": 2}),
            ),
            400,
            "strength",
        ),
        (
            u.post_json("/v1/videos/video_nope/remix", &json!({"prompt": "b"})),
            404,
            "video_nope",
        ),
        (
            u.post_json("/v1/videos/edits", &json!({"prompt": "b"})),
            400,
            "`video` is required",
        ),
        (
            u.post_json("/v1/videos/edits", &json!({"prompt": "b", "video": "x"})),
            400,
            "uploaded MP4",
        ),
        (
            u.post_multipart(
                "/v1/videos/edits",
                &[
                    ("prompt", None, b"b"),
                    ("video", Some("v.mp4"), b"not an mp4"),
                ],
            ),
            400,
            "the uploaded video",
        ),
        (
            u.post_json(
                "/v1/videos/extensions",
                &json!({"prompt": "b", "video": {"id": good}}),
            ),
            400,
            "`seconds` is required",
        ),
        (
            u.post_json(
                "/v1/videos/extensions",
                &json!({"prompt": "b", "seconds": "1", "video": {"id": "video_nope"}}),
            ),
            404,
            "video_nope",
        ),
        (
            u.send("PUT", "/v1/videos", None, b""),
            405,
            "does not take PUT",
        ),
        (u.get("/v1/nothing"), 404, "unknown request URL"),
    ];
    for (k, (r, status, needle)) in cases.into_iter().enumerate() {
        assert!(r.status < 500, "case {k}: {}", r.status);
        let _ = k;
        r.assert_error(status, needle);
    }
    // what was stored is intact: the completed video still downloads, the running one runs
    let mp4 = u.get(&format!("/v1/videos/{good}/content"));
    assert_eq!(probe_mp4(&mp4.body).unwrap().num_frames, 8);
    assert_eq!(
        u.get("/v1/videos").json()["data"].as_array().unwrap().len(),
        2
    );
    u.delete(&format!("/v1/videos/{running}"));
}

/// A few hundred random bodies, content types and paths at every route: never a 5xx.
#[test]
fn random_bodies_at_every_route_never_get_a_5xx() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(
        &t.path().join("state"),
        &[
            "max_body_bytes=100000",
            "quota.concurrent=1000",
            "quota.per_hour=100000",
            "max_queue=100000",
        ],
    );
    let u = srv.http(Some(&create_key(&srv.state, "fuzz")));
    let good = created(u.post_json("/v1/videos", &json!({"prompt": "a ball"})));
    u.wait(&good, WAIT);
    let mut s: u64 = 0x2545F4914F6CDD1D;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/v1/videos".into()),
        ("GET", "/v1/videos".into()),
        ("GET", format!("/v1/videos/{good}")),
        ("DELETE", "/v1/videos/video_x".into()),
        ("GET", format!("/v1/videos/{good}/content")),
        ("POST", format!("/v1/videos/{good}/remix")),
        ("POST", "/v1/videos/edits".into()),
        ("POST", "/v1/videos/extensions".into()),
        ("GET", "/v1/models".into()),
        ("POST", "/admin/reload".into()),
    ];
    let fields = [
        "prompt",
        "seconds",
        "size",
        "model",
        "seed",
        "video",
        "strength",
        "input_reference",
        "characters",
        "limit",
    ];
    let values = [
        json!("a ball"),
        json!(""),
        json!(1),
        json!(-1),
        json!(1e308),
        json!("4"),
        json!("16x16"),
        json!(null),
        json!({"id": good}),
        json!([1, 2]),
        json!({"id": 3}),
        json!(true),
        json!("😀".repeat(50)),
    ];
    let mut seen_4xx = 0;
    for i in 0..300 {
        let (method, path) = &routes[(next() % routes.len() as u64) as usize];
        let mut path = path.clone();
        if next() % 4 == 0 {
            path.push_str(
                [
                    "?limit=x",
                    "?variant=%00",
                    "?after=&order=",
                    "?limit=5&order=asc",
                ][(next() % 4) as usize],
            );
        }
        let r = match next() % 4 {
            0 => {
                let mut m = serde_json::Map::new();
                for _ in 0..next() % 5 {
                    let f = fields[(next() % fields.len() as u64) as usize];
                    m.insert(
                        f.into(),
                        values[(next() % values.len() as u64) as usize].clone(),
                    );
                }
                u.send(
                    method,
                    &path,
                    Some("application/json"),
                    Value::Object(m).to_string().as_bytes(),
                )
            }
            1 => {
                let n = (next() % 300) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                let ct = [
                    "application/json",
                    "multipart/form-data; boundary=zz",
                    "text/plain",
                    "application/octet-stream",
                ][(next() % 4) as usize];
                u.send(method, &path, Some(ct), &bytes)
            }
            2 => {
                let f = fields[(next() % fields.len() as u64) as usize];
                let junk: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
                let file = if next() % 2 == 0 { Some("f.bin") } else { None };
                u.post_multipart(&path, &[("prompt", None, b"a ball"), (f, file, &junk)])
            }
            _ => u.send(method, &path, None, b""),
        };
        assert!(
            r.status < 500,
            "request {i}: {method} {path} → {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if (400..500).contains(&r.status) {
            seen_4xx += 1;
            let v = r.json();
            assert!(v["error"]["message"].is_string(), "request {i}: {v}");
        }
    }
    assert!(
        seen_4xx > 150,
        "most random bodies are refused ({seen_4xx})"
    );
}

#[test]
fn a_full_queue_and_the_quotas_answer_429_with_retry_after() {
    let t = tempfile::tempdir().unwrap();
    // a slow sampler so jobs stay queued; one job at a time
    let srv = start(
        &t.path().join("state"),
        &[
            "sampler.steps=5000",
            "batch=1",
            "max_queue=4",
            "quota.concurrent=2",
            "quota.per_hour=3",
        ],
    );
    let a = srv.http(Some(&create_key(&srv.state, "ann")));
    let body = json!({"prompt": "a ball"});
    let a1 = created(a.post_json("/v1/videos", &body));
    created(a.post_json("/v1/videos", &body));
    let r = a.post_json("/v1/videos", &body);
    r.assert_error(429, "limit is 2 at once");
    assert_eq!(r.json()["error"]["code"], "quota_concurrent");
    assert!(r.header("retry-after").is_some());
    // deleting one frees a slot, but the hour's quota counts what was asked
    a.delete(&format!("/v1/videos/{a1}"));
    created(a.post_json("/v1/videos", &body));
    let r = a.post_json("/v1/videos", &body);
    assert_eq!(r.status, 429);
    // the concurrent limit is hit first again (2 active); free one to reach the hourly one
    let active: Vec<String> = a.get("/v1/videos").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    a.delete(&format!("/v1/videos/{}", active[0]));
    let r = a.post_json("/v1/videos", &body);
    r.assert_error(429, "an hour");
    assert_eq!(r.json()["error"]["code"], "quota_hourly");
    // other users fill the queue: the server-wide limit answers 429 with Retry-After
    let mut full = None;
    for k in 0..6 {
        let u = srv.http(Some(&create_key(&srv.state, &format!("u{k}"))));
        let r = u.post_json("/v1/videos", &body);
        if r.status == 429 {
            full = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = full.expect("the queue fills");
    r.assert_error(429, "queue is full");
    assert_eq!(r.header("retry-after"), Some("5"));
}

#[test]
fn reload_serves_the_moved_alias_and_keeps_queued_jobs() {
    let t = tempfile::tempdir().unwrap();
    let reg = t.path().join("registry");
    let r = reg.to_str().unwrap();
    let ck = server::shared_checkpoint().to_str().unwrap();
    cli::ok(&["promote", ck, "--name", "tiny", "--registry", r]);
    let srv = Server::start(
        &t.path().join("state"),
        &[
            "--model",
            "tiny@production",
            "--registry",
            r,
            "--set",
            "sampler.steps=40",
            "--set",
            "batch=1",
        ],
    );
    let admin = srv.http(Some(&srv.admin_key()));
    assert_eq!(admin.get("/v1/models").json()["data"][0]["version"], "v1");
    assert_eq!(
        Http::new(&srv.base, None).get("/healthz").json()["model"],
        "tiny@v1"
    );
    let ids: Vec<String> = (0..3)
        .map(|_| {
            created(admin.post_json("/v1/videos", &json!({"prompt": "a ball", "model": "tiny"})))
        })
        .collect();
    // a new version takes the alias; the server moves to it on request
    cli::ok(&["promote", ck, "--name", "tiny", "--registry", r]);
    let m = admin.send("POST", "/admin/reload", None, b"");
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(m.json()["version"], "v2");
    assert_eq!(
        Http::new(&srv.base, None).get("/healthz").json()["model"],
        "tiny@v2"
    );
    for id in &ids {
        assert_eq!(admin.wait(id, WAIT)["status"], "completed");
    }
    // and on SIGHUP
    cli::ok(&["promote", ck, "--name", "tiny", "--registry", r]);
    srv.hangup();
    let t0 = std::time::Instant::now();
    while Http::new(&srv.base, None).get("/healthz").json()["model"] != "tiny@v3" {
        assert!(t0.elapsed() < WAIT, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = created(admin.post_json("/v1/videos", &json!({"prompt": "a ball"})));
    let v = admin.wait(&after, WAIT);
    assert_eq!(v["model"], "tiny@v3");
}

#[test]
fn the_official_openai_sdk_drives_the_whole_flow() {
    let t = tempfile::tempdir().unwrap();
    let srv = start(&t.path().join("state"), &[]);
    let key = create_key(&srv.state, "sdk");
    let other = create_key(&srv.state, "someone-else");
    let o = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/serve_sdk.py"))
        .args([
            &srv.base,
            &key,
            &other,
            t.path().join("out").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    let text = cli::text(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.trim_end().ends_with("ok"),
        "serve_sdk.py:\n{text}"
    );
}

#[test]
fn the_playground_page_creates_plays_and_extends_a_video_in_chromium() {
    let pw =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    assert!(
        pw.exists(),
        "playwright-core missing: run scripts/setup.sh --test"
    );
    let t = tempfile::tempdir().unwrap();
    let srv = start(&t.path().join("state"), &[]);
    let key = create_key(&srv.state, "web");
    let o = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/playground.mjs"
        ))
        .args([&srv.base, &key])
        .output()
        .expect("node runs");
    let text = cli::text(&o);
    assert!(o.status.success(), "playground.mjs:\n{text}");
    let v: Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(v["pageErrors"], json!([]), "{v}");
    assert_eq!(v["error"], "", "{v}");
    let played = &v["played"];
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(16), Some(16)),
        "{v}"
    );
    assert_eq!(played["ended"], true, "it played to the end: {v}");
    assert!(
        played["audioBytes"].as_u64().unwrap() > 0,
        "with sound: {v}"
    );
    assert!(
        (played["duration"].as_f64().unwrap() - 1.0).abs() < 0.1,
        "{v}"
    );
    // the extension made from the page: 2 s, from the first video
    let id = v["id"].as_str().unwrap();
    assert!(v["extendedText"].as_str().unwrap().contains(id), "{v}");
    assert!(v["extendedText"].as_str().unwrap().contains("2 s"), "{v}");
    assert!(v["model"].as_str().unwrap().starts_with("tiny-test"), "{v}");
    // and the API agrees: two videos of this user, both completed
    let list = srv.http(Some(&key)).get("/v1/videos").json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[test]
fn deleting_a_running_job_cancels_its_sampling() {
    let t = tempfile::tempdir().unwrap();
    // 10 000 steps: far longer than the test waits
    let srv = start(&t.path().join("state"), &["sampler.steps=10000", "batch=1"]);
    let u = srv.http(Some(&create_key(&srv.state, "gus")));
    let id = created(u.post_json("/v1/videos", &json!({"prompt": "a ball"})));
    let t0 = std::time::Instant::now();
    loop {
        let v = u.get(&format!("/v1/videos/{id}")).json();
        if v["status"] == "in_progress" && v["progress"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(t0.elapsed() < WAIT, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(u.delete(&format!("/v1/videos/{id}")).status, 200);
    let t1 = std::time::Instant::now();
    let metrics = Http::new(&srv.base, None);
    while !String::from_utf8(metrics.get("/metrics").body)
        .unwrap()
        .contains("sonora_jobs_cancelled_total 1")
    {
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "the worker kept sampling a deleted job"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    u.get(&format!("/v1/videos/{id}")).assert_error(404, &id);
    assert!(!srv.state.join("videos").join(&id).exists());
}
