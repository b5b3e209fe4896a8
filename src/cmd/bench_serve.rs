//! `sonora bench serve`: the server under load. Generation requests from concurrent
//! clients, each polling its jobs' status, against a server with unbatched workers (the
//! anchor) and one with batched workers, in the same run: throughput, status-call and
//! end-to-end latency, jobs lost or duplicated. Then one request's time in the server
//! against the same request generated in-process as `sonora sample` does (the server's
//! overhead).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

/// Arguments of `sonora bench serve`.
#[derive(Args)]
pub struct BenchServe {
    /// Checkpoint to serve (a tiny model keeps the run short).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Generation requests per server.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Concurrent clients (each submits its share, then polls until its jobs finish).
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Sampler steps per job.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Batch of the batched server (the anchor's is 1).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Seconds between a client's status polls of one job.
    #[arg(long, default_value_t = 0.05)]
    pub poll_s: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One server's figures.
#[derive(Debug, serde::Serialize)]
struct LoadReport {
    batch: usize,
    requests: usize,
    completed: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
    wall_s: f64,
    videos_per_min: f64,
    status_calls: usize,
    status_p50_ms: f64,
    status_p99_ms: f64,
    job_p50_s: f64,
    job_p99_s: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Running {
    child: Child,
    base: String,
    key: String,
    _state: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ckpt: &Path, batch: usize, steps: usize) -> Result<Running> {
    let state = tempfile::tempdir()?;
    let store = sonora_serve::open_store(state.path())?;
    let (key, _) = sonora_serve::keys::create(&store, "bench", false)?;
    drop(store);
    let sets = [
        format!("batch={batch}"),
        format!("sampler.steps={steps}"),
        "max_queue=1000000".into(),
        "quota.concurrent=1000000".into(),
        "quota.per_hour=1000000".into(),
        "idle_poll_s=0.05".into(),
    ];
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--log", "warn", "serve", "--checkpoint"])
        .arg(ckpt)
        .arg("--state")
        .arg(state.path())
        .args(["--addr", "127.0.0.1:0"]);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting sonora serve")?;
    let out = child.stdout.take().context("the server's stdout")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let Some(base) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        bail!("the server did not start (it printed {line:?})");
    };
    Ok(Running {
        base: base.to_string(),
        child,
        key,
        _state: state,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn call(
    a: &ureq::Agent,
    r: &Running,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let url = format!("{}{path}", r.base);
    let auth = format!("Bearer {}", r.key);
    let mut resp = match (method, body) {
        ("POST", Some(b)) => a
            .post(&url)
            .header("Authorization", &auth)
            .content_type("application/json")
            .send(b.to_string())?,
        _ => a.get(&url).header("Authorization", &auth).call()?,
    };
    let status = resp.status().as_u16();
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string()?)?;
    if status != 200 {
        bail!("{method} {path}: {status} {v}");
    }
    Ok(v)
}

/// A finished job: id, seconds from submit to seen done, final status.
type Done = (String, f64, String);

/// One client: submits `n` jobs, then polls each until it is done. Returns status-call
/// latencies, (id, end-to-end seconds, status) per job.
fn client(r: &Running, n: usize, seed: usize, poll: Duration) -> Result<(Vec<f64>, Vec<Done>)> {
    let a = agent();
    let mut pending: HashMap<String, Instant> = HashMap::new();
    for k in 0..n {
        let v = call(
            &a,
            r,
            "POST",
            "/v1/videos",
            Some(&json!({"prompt": "a red ball falls and bounces", "seed": seed * 1000 + k})),
        )?;
        pending.insert(
            v["id"].as_str().context("an id")?.to_string(),
            Instant::now(),
        );
    }
    let mut lat = Vec::new();
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !pending.is_empty() && Instant::now() < deadline {
        let ids: Vec<String> = pending.keys().cloned().collect();
        for id in ids {
            let t = Instant::now();
            let v = call(&a, r, "GET", &format!("/v1/videos/{id}"), None)?;
            lat.push(t.elapsed().as_secs_f64());
            let s = v["status"].as_str().unwrap_or("").to_string();
            if s == "completed" || s == "failed" {
                let t0 = pending.remove(&id).expect("pending");
                done.push((id, t0.elapsed().as_secs_f64(), s));
            }
        }
        std::thread::sleep(poll);
    }
    Ok((lat, done))
}

fn load(ckpt: &Path, a: &BenchServe, batch: usize) -> Result<LoadReport> {
    let r = Arc::new(start(ckpt, batch, a.steps)?);
    let t = Instant::now();
    let per = a.requests.div_ceil(a.clients);
    let handles: Vec<_> = (0..a.clients)
        .map(|c| {
            let r = r.clone();
            let n = per.min(a.requests.saturating_sub(c * per));
            let poll = Duration::from_secs_f64(a.poll_s);
            std::thread::spawn(move || client(&r, n, c, poll))
        })
        .collect();
    let mut status = Vec::new();
    let mut jobs = Vec::new();
    for h in handles {
        let (l, d) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        status.extend(l);
        jobs.extend(d);
    }
    let wall = t.elapsed().as_secs_f64();
    // every job listed once, none unknown
    let ag = agent();
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after
            .as_ref()
            .map_or(String::new(), |x| format!("&after={x}"));
        let v = call(&ag, &r, "GET", &format!("/v1/videos?limit=100{q}"), None)?;
        for x in v["data"].as_array().context("data")? {
            listed.push(x["id"].as_str().unwrap_or("").to_string());
        }
        if v["has_more"] != true {
            break;
        }
        after = v["last_id"].as_str().map(str::to_string);
    }
    let unique: BTreeSet<&String> = listed.iter().collect();
    let completed = jobs.iter().filter(|j| j.2 == "completed").count();
    let failed = jobs.iter().filter(|j| j.2 == "failed").count();
    let mut e2e: Vec<f64> = jobs
        .iter()
        .filter(|j| j.2 == "completed")
        .map(|j| j.1)
        .collect();
    Ok(LoadReport {
        batch,
        requests: a.requests,
        completed,
        failed,
        lost: a.requests - completed,
        duplicated: listed.len() - unique.len() + unique.len().saturating_sub(a.requests),
        wall_s: wall,
        videos_per_min: completed as f64 / wall * 60.0,
        status_calls: status.len(),
        status_p50_ms: pct(&mut status, 0.5) * 1e3,
        status_p99_ms: pct(&mut status, 0.99) * 1e3,
        job_p50_s: pct(&mut e2e, 0.5),
        job_p99_s: pct(&mut e2e, 0.99),
    })
}

/// One request's time through the server (submit → completed, polled every 5 ms) and
/// in-process as `sonora sample` runs it (generate + MP4), medians of `n`.
fn overhead(ckpt: &Path, steps: usize, n: usize) -> Result<(f64, f64)> {
    use sonora_framework::diffusion::SamplerConfig;
    use sonora_framework::generate::Generator;
    use sonora_framework::media::{Mp4Options, encode_mp4};
    let device = sonora_framework::device::parse_device("flex").map_err(anyhow::Error::msg)?;
    let (g, _, _) = Generator::load(ckpt, &device)?;
    let sc = SamplerConfig {
        steps,
        text_scale: 3.0,
        ..SamplerConfig::default()
    };
    let mut inproc = Vec::new();
    for k in 0..n {
        let t = Instant::now();
        let req = g.text("a red ball falls and bounces")?.with_seed(k as u64);
        let clips = g.generate(&sc, &[req], &mut |_, _| true)?;
        encode_mp4(&clips[0], &Mp4Options::default())?;
        inproc.push(t.elapsed().as_secs_f64());
    }
    let r = start(ckpt, 1, steps)?;
    let a = agent();
    let mut served = Vec::new();
    for k in 0..n {
        let t = Instant::now();
        let v = call(
            &a,
            &r,
            "POST",
            "/v1/videos",
            Some(&json!({"prompt": "a red ball falls and bounces", "seed": k})),
        )?;
        let id = v["id"].as_str().context("id")?.to_string();
        loop {
            let v = call(&a, &r, "GET", &format!("/v1/videos/{id}"), None)?;
            if v["status"] == "completed" {
                break;
            }
            if v["status"] == "failed" {
                bail!("a job failed: {v}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        served.push(t.elapsed().as_secs_f64());
    }
    Ok((pct(&mut served, 0.5), pct(&mut inproc, 0.5)))
}

/// Runs `sonora bench serve`.
pub fn run(a: BenchServe) -> Result<()> {
    if a.requests == 0 || a.clients == 0 || a.batch == 0 || a.steps == 0 {
        bail!("--requests, --clients, --batch and --steps must be at least 1");
    }
    let anchor = load(&a.checkpoint, &a, 1)?;
    let batched = load(&a.checkpoint, &a, a.batch)?;
    let (served, inproc) = overhead(&a.checkpoint, a.steps, 5)?;
    if a.json {
        println!(
            "{}",
            json!({"unbatched": anchor, "batched": batched,
                   "single_request_s": {"server": served, "in_process": inproc, "ratio": served / inproc}})
        );
        return Ok(());
    }
    println!(
        "{} requests from {} clients, {} sampler steps, {}",
        a.requests,
        a.clients,
        a.steps,
        a.checkpoint.display()
    );
    println!(
        "{:<10} {:>9} {:>9} {:>6} {:>6} {:>7} {:>10} {:>10} {:>9} {:>9}",
        "workers",
        "videos/m",
        "wall s",
        "lost",
        "dup",
        "failed",
        "status p50",
        "status p99",
        "job p50",
        "job p99"
    );
    for r in [&anchor, &batched] {
        println!(
            "{:<10} {:>9.1} {:>9.1} {:>6} {:>6} {:>7} {:>8.2}ms {:>8.2}ms {:>8.2}s {:>8.2}s",
            format!("batch {}", r.batch),
            r.videos_per_min,
            r.wall_s,
            r.lost,
            r.duplicated,
            r.failed,
            r.status_p50_ms,
            r.status_p99_ms,
            r.job_p50_s,
            r.job_p99_s
        );
    }
    println!(
        "batched throughput: {:.2}× the unbatched anchor",
        batched.videos_per_min / anchor.videos_per_min
    );
    println!(
        "one request: {:.3} s through the server, {:.3} s in-process (sonora sample's path): overhead {:.2}×",
        served,
        inproc,
        served / inproc
    );
    if anchor.lost + batched.lost + anchor.duplicated + batched.duplicated > 0 {
        bail!("jobs were lost or duplicated");
    }
    Ok(())
}
