//! A `sonora serve` process for tests: a tiny trained checkpoint, the server started on
//! a free port (killed when dropped), and a small HTTP client that returns every status
//! instead of failing on 4xx/5xx. Included by tests with `#[path]`, beside `cli.rs` and
//! `tiny_model.rs`.

#![allow(dead_code)] // not every test that includes this module needs all of it

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Trains the tiny test model for 2 steps in `t`; returns its checkpoint directory.
pub fn tiny_checkpoint(t: &Path) -> PathBuf {
    let data = t.join("data");
    super::cli::tiny_dataset(&data, 4, 1, 2, &[]);
    let recipe = t.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nname = \"r\"\nout_dir = \"{}\"\n{}[data]\npath = \"{}\"\n[data.loader]\nbatch_size = 2\nworkers = 1\n[train]\nsteps = 2\n[checkpoint]\nevery = 2\nkeep_last = 5\n[sample]\nprompts = []\n",
            t.join("runs").display(),
            super::tiny_model::model_toml(32, 1),
            data.display()
        ),
    )
    .unwrap();
    super::cli::ok(&["train", recipe.to_str().unwrap()]);
    t.join("runs/r/checkpoints/step-000002")
}

/// One tiny checkpoint per test binary, trained on first use.
pub fn shared_checkpoint() -> &'static Path {
    static CKPT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CKPT.get_or_init(|| {
        let t = tempfile::tempdir().unwrap().keep();
        tiny_checkpoint(&t)
    })
}

/// A server on `ckpt` with each of `sets` as a `--set`.
pub fn start_on(ckpt: &Path, state: &Path, sets: &[&str]) -> Server {
    let mut args = vec!["--checkpoint".to_string(), ckpt.display().to_string()];
    for e in sets {
        args.extend(["--set".to_string(), e.to_string()]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(state, &a)
}

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its `--state` directory.
    pub state: PathBuf,
}

impl Server {
    /// Starts `sonora serve ARGS --state STATE --addr 127.0.0.1:0` and waits until it
    /// listens.
    pub fn start(state: &Path, args: &[&str]) -> Server {
        let mut cmd = super::cli::sonora();
        cmd.arg("serve").args(args).args([
            "--state",
            state.to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
        ]);
        // the provenance key lives with the registry: beside the state unless given
        if !args.contains(&"--registry") {
            cmd.arg("--registry").arg(Self::registry_of(state));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sonora serve starts");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("sonora serve did not print `listening on` within 120 s");
            }
        };
        Server {
            child,
            base,
            state: state.to_path_buf(),
        }
    }

    /// The registry a server on `state` uses when the test names none.
    pub fn registry_of(state: &Path) -> PathBuf {
        state.with_file_name("registry")
    }

    /// The admin key the server made on first start.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.state.join("admin.key"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client with `key`.
    pub fn http(&self, key: Option<&str>) -> Http {
        Http::new(&self.base, key)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGHUP: reload the model.
    pub fn hangup(&self) {
        let s = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a key for `user` with the CLI (the key alone on stdout).
pub fn create_key(state: &Path, user: &str) -> String {
    let o = super::cli::run(&[
        "serve",
        "keys",
        "create",
        "--user",
        user,
        "--state",
        state.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", super::cli::text(&o));
    let key = String::from_utf8(o.stdout).unwrap();
    assert_eq!(key.lines().count(), 1, "the key alone on stdout: {key:?}");
    key.trim().to_string()
}

/// An HTTP reply.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an OpenAI-shaped error with `status`, whose message contains `needle`.
    pub fn assert_error(&self, status: u16, needle: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "want {status}, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(needle), "{m:?} does not mention {needle:?}");
        v
    }
}

/// A small client.
pub struct Http {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

/// One multipart part: name, file name (a file when given), bytes.
pub type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart body and its content type.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "sonora-test-boundary-7d1c";
    let mut b = Vec::new();
    for (name, file, bytes) in parts {
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

impl Http {
    /// A client for `base` with an optional key.
    pub fn new(base: &str, key: Option<&str>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            // a fresh connection per request: a server that answers before reading a
            // bad body closes the connection, which a pooled one would then trip on
            .max_idle_connections(0)
            .build()
            .into();
        Self {
            agent,
            base: base.to_string(),
            auth: key.map(|k| format!("Bearer {k}")),
        }
    }

    /// A client that sends `value` as its `Authorization` header.
    pub fn with_authorization(base: &str, value: &str) -> Self {
        let mut h = Self::new(base, None);
        h.auth = Some(value.to_string());
        h
    }

    fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut r = r.expect("the server answers");
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        Reply {
            status: r.status().as_u16(),
            headers,
            body: r
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .unwrap(),
        }
    }

    /// A request with any method, content type and body.
    pub fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            b = b.header("Authorization", a.as_str());
        }
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        let req = b.body(body.to_vec()).unwrap();
        Self::reply(self.agent.run(req))
    }

    /// GET.
    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, b"")
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None, b"")
    }

    /// POST JSON.
    pub fn post_json(&self, path: &str, v: &Value) -> Reply {
        self.send(
            "POST",
            path,
            Some("application/json"),
            v.to_string().as_bytes(),
        )
    }

    /// POST multipart.
    pub fn post_multipart(&self, path: &str, parts: &[Part<'_>]) -> Reply {
        let (ct, body) = multipart(parts);
        self.send("POST", path, Some(&ct), &body)
    }

    /// Polls a video until it is completed or failed.
    pub fn wait(&self, id: &str, timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            let r = self.get(&format!("/v1/videos/{id}"));
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            match v["status"].as_str() {
                Some("completed") | Some("failed") => return v,
                _ => {}
            }
            assert!(
                t.elapsed() < timeout,
                "{id} not done after {timeout:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
