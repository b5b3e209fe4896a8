//! A real MLflow tracking server for tests (started on 127.0.0.1 in its own process group,
//! killed on drop) and a reader of what a run sent, via MLflow's own Python client
//! (`tests/mlflow_check.py`). Included by tests with `#[path]`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An `mlflow server` in its own process group, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub uri: String,
}

impl Server {
    /// Starts a server storing into `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new("mlflow")
                .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--artifacts-destination")
                .arg(dir.join("artifacts"))
                .args(["--serve-artifacts", "--workers", "1"])
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect(
                    "`mlflow` not found: run `bash scripts/setup.sh --test` (pip install mlflow)",
                )
        };
        let uri = format!("http://127.0.0.1:{port}");
        let mut s = Server { child, uri };
        let t0 = Instant::now();
        loop {
            if let Ok(mut r) = ureq_get(&format!("{}/health", s.uri))
                && r.contains("OK")
            {
                r.clear();
                break;
            }
            if let Some(st) = s.child.try_wait().unwrap() {
                panic!("mlflow server exited: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "mlflow server not up"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        s
    }

    /// Kills the whole process group (the server forks workers).
    pub fn kill(&mut self) {
        let pg = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pg]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET with curl (keeps the test free of an HTTP client dependency).
fn ureq_get(url: &str) -> Result<String, ()> {
    let o = Command::new("curl")
        .args(["-s", "-m", "2", url])
        .output()
        .map_err(|_| ())?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        .ok_or(())
}

/// What MLflow's Python client reads back about a run.
pub fn check(uri: &str, run_id: &str, metric: &str) -> serde_json::Value {
    // the workspace root holds tests/mlflow_check.py; the including crate may sit below it
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tests/mlflow_check.py"))
        .find(|p| p.is_file())
        .expect("tests/mlflow_check.py in the workspace");
    let o = Command::new("python3")
        .arg(script)
        .args([uri, run_id, metric])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}
