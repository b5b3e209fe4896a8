//! Crash safety: a server killed with SIGKILL mid-queue and restarted on the same state
//! loses nothing. Queued jobs run, the job whose worker died is run again once its lease
//! expires (or failed with the reason when it is out of tries), each exactly once, and
//! no output is ever half-written.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use sonora_framework::media::decode_mp4;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/server.rs"]
mod server;
#[path = "support/tiny_model.rs"]
mod tiny_model;

use server::{Http, Server, create_key};

const WAIT: Duration = Duration::from_secs(180);

fn start(ckpt: &Path, state: &Path, extra: &[&str]) -> Server {
    let defaults = ["sampler.steps=60", "batch=2", "lease_s=2"];
    server::start_on(ckpt, state, &[&defaults[..], extra].concat())
}

/// Waits until some job is running with progress, returns its id.
fn wait_running(u: &Http) -> String {
    let t = Instant::now();
    loop {
        let list = u.get("/v1/videos?limit=100").json();
        if let Some(v) = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["status"] == "in_progress" && v["progress"].as_u64().unwrap() > 0)
        {
            return v["id"].as_str().unwrap().to_string();
        }
        assert!(t.elapsed() < WAIT, "no job started: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Outputs under `dir` that do not decode (a torn write), and with `litter` any other
/// file (a temp file of a write cut short, left behind).
fn torn_outputs(dir: &Path, litter: bool) -> Vec<PathBuf> {
    let mut bad = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return bad;
    };
    for v in rd.flatten() {
        for f in std::fs::read_dir(v.path()).unwrap().flatten() {
            let p = f.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let torn = name.ends_with(".mp4") && decode_mp4(&std::fs::read(&p).unwrap()).is_err();
            let stray = ![
                "video.mp4",
                "thumbnail.png",
                "spritesheet.png",
                "video.wm.mp4",
                "thumbnail.wm.png",
                "spritesheet.wm.png",
            ]
            .contains(&name.as_str());
            if torn || (litter && stray) {
                bad.push(p);
            }
        }
    }
    bad
}

#[test]
fn a_server_killed_mid_queue_loses_no_job_and_writes_no_torn_file() {
    let t = tempfile::tempdir().unwrap();
    let ckpt = server::tiny_checkpoint(t.path());
    let state = t.path().join("state");

    // six jobs, killed while the first batch runs (slowly: many steps)
    let mut srv = start(&ckpt, &state, &["sampler.steps=3000"]);
    let key = create_key(&state, "kim");
    let u = srv.http(Some(&key));
    let ids: Vec<String> = (0..6)
        .map(|k| {
            let r = u.post_json(
                "/v1/videos",
                &json!({"prompt": format!("ball {k}"), "seed": k}),
            );
            assert_eq!(r.status, 200);
            r.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let victim = wait_running(&u);
    srv.kill();
    assert!(torn_outputs(&state.join("videos"), false).is_empty());

    // restarted on the same state: everything completes, the interrupted job too
    let srv = start(&ckpt, &state, &[]);
    let u = srv.http(Some(&key));
    for id in &ids {
        let v = u.wait(id, WAIT);
        assert_eq!(v["status"], "completed", "{v}");
        let mp4 = u.get(&format!("/v1/videos/{id}/content")).body;
        assert_eq!(decode_mp4(&mp4).unwrap().frames.t, 8, "{id}");
    }
    // nothing lost, nothing duplicated
    let list = u.get("/v1/videos?limit=100").json();
    let mut listed: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    assert!(ids.contains(&victim));
    // the interrupted job ran twice (its first claim died with the server), the rest once
    let store = sonora_serve::open_store(&state).unwrap();
    use sonora_serve::store::JobStore;
    assert_eq!(store.get_any(&victim).unwrap().unwrap().tries, 2);
    let once = ids
        .iter()
        .filter(|id| store.get_any(id).unwrap().unwrap().tries == 1)
        .count();
    assert!(
        once >= 4,
        "jobs not running at the kill were claimed once ({once} of 6)"
    );
    // a write the kill cut short left no temp file behind once its job ran again
    assert!(torn_outputs(&state.join("videos"), true).is_empty());
    drop(srv);

    // with one try allowed, a job whose worker dies fails with the reason
    let state2 = t.path().join("state2");
    let mut srv = start(&ckpt, &state2, &["max_tries=1", "sampler.steps=3000"]);
    let key = create_key(&state2, "lee");
    let u = srv.http(Some(&key));
    let r = u.post_json("/v1/videos", &json!({"prompt": "a ball"}));
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(wait_running(&u), id);
    srv.kill();
    let srv = start(&ckpt, &state2, &["max_tries=1"]);
    let v = srv.http(Some(&key)).wait(&id, WAIT);
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "worker_lost", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped 1 times"),
        "{v}"
    );
}
