//! A blocking client for the MLflow tracking REST API (2.0): experiments, runs, params,
//! batched metrics, tags, artifacts through the server's `mlflow-artifacts` proxy, and the
//! run's final status.
//!
//! Only starting a run can fail the caller. Afterwards a server that goes away must not stop
//! training: metrics stay buffered (up to [`MAX_BUFFERED`], the oldest dropped beyond that)
//! and are sent when the server answers again; each failure is logged as a warning once per
//! outage.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Metrics kept while the server does not answer; older ones are dropped beyond this.
pub const MAX_BUFFERED: usize = 20_000;
/// Metrics per `runs/log-batch` request (the server's limit is 1000 entries).
const METRICS_PER_BATCH: usize = 900;
/// Params per request (server limit 100).
const PARAMS_PER_BATCH: usize = 100;
/// Longest param value the server keeps (it truncates silently beyond this).
const MAX_PARAM_LEN: usize = 6000;

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[error("MLflow {url}: {why}")]
pub struct MlflowError {
    /// The request URL.
    pub url: String,
    /// What went wrong (transport error or the server's `error_code: message`).
    pub why: String,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Completed.
    Finished,
    /// Stopped by an error.
    Failed,
    /// Stopped by a signal.
    Killed,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An MLflow key: only letters, digits and `_ - . space : /` are accepted by the server.
pub fn sanitize_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-. :/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(250)
        .collect()
}

/// An artifact path relative to the run's root; `..`, empty segments and absolute paths are
/// refused (the server would write them outside the run).
fn check_artifact_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|s| s.is_empty() || s == "..") {
        return Err(format!(
            "artifact path `{p}` must be relative, without `..` or empty parts"
        ));
    }
    Ok(())
}

/// An open run on a tracking server.
pub struct MlflowRun {
    agent: ureq::Agent,
    base: String,
    /// The run id.
    pub run_id: String,
    /// The experiment id.
    pub experiment_id: String,
    buffer: Vec<Value>,
    dropped: u64,
    down: bool,
}

impl MlflowRun {
    /// Creates (or reuses) `experiment` on the server at `uri` and starts a run named
    /// `run_name` with `tags`.
    pub fn start(
        uri: &str,
        experiment: &str,
        run_name: &str,
        tags: &[(&str, String)],
    ) -> Result<Self, MlflowError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut run = Self {
            agent,
            base: uri.trim_end_matches('/').to_string(),
            run_id: String::new(),
            experiment_id: String::new(),
            buffer: Vec::new(),
            dropped: 0,
            down: false,
        };
        run.experiment_id = run.experiment(experiment)?;
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": sanitize_key(k), "value": v}))
            .collect();
        let r = run.post(
            "runs/create",
            &json!({"experiment_id": run.experiment_id, "run_name": run_name,
                    "start_time": now_ms(), "tags": tags}),
        )?;
        run.run_id = r["run"]["info"]["run_id"]
            .as_str()
            .ok_or_else(|| MlflowError {
                url: format!("{}/runs/create", run.api()),
                why: format!("no run id in the answer: {r}"),
            })?
            .to_string();
        Ok(run)
    }

    fn api(&self) -> String {
        format!("{}/api/2.0/mlflow", self.base)
    }

    /// Decodes an answer: JSON on 2xx, else the server's `error_code: message`.
    fn answer(
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let fail = |why: String| MlflowError {
            url: url.to_string(),
            why,
        };
        let mut resp = r.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let v: Value = if text.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| json!({ "message": text }))
        };
        if status.is_success() {
            Ok(v)
        } else {
            Err(fail(format!(
                "HTTP {}: {} {}",
                status.as_u16(),
                v["error_code"].as_str().unwrap_or(""),
                v["message"].as_str().or(v["detail"].as_str()).unwrap_or("")
            )))
        }
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/{endpoint}", self.api());
        let r = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        Self::answer(&url, r)
    }

    /// The id of `name`, creating the experiment if it does not exist.
    fn experiment(&self, name: &str) -> Result<String, MlflowError> {
        let url = format!("{}/experiments/get-by-name", self.api());
        let r = self.agent.get(&url).query("experiment_name", name).call();
        if let Ok(v) = Self::answer(&url, r)
            && let Some(id) = v["experiment"]["experiment_id"].as_str()
        {
            return Ok(id.to_string());
        }
        match self.post("experiments/create", &json!({ "name": name })) {
            Ok(v) => Ok(v["experiment_id"].as_str().unwrap_or("0").to_string()),
            // created meanwhile by another process
            Err(e) if e.why.contains("RESOURCE_ALREADY_EXISTS") => {
                let r = self.agent.get(&url).query("experiment_name", name).call();
                let v = Self::answer(&url, r)?;
                Ok(v["experiment"]["experiment_id"]
                    .as_str()
                    .unwrap_or("0")
                    .to_string())
            }
            Err(e) => Err(e),
        }
    }

    fn warn(&mut self, what: &str, e: &MlflowError) {
        if !self.down {
            tracing::warn!("MLflow: {what} failed ({e}); training goes on, metrics are buffered");
        }
        self.down = true;
    }

    /// Logs params (values longer than the server keeps are cut with a warning).
    pub fn log_params(&mut self, params: &[(String, String)]) {
        for chunk in params.chunks(PARAMS_PER_BATCH) {
            let ps: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| {
                    let v = if v.len() > MAX_PARAM_LEN {
                        tracing::warn!("MLflow: param `{k}` cut to {MAX_PARAM_LEN} bytes");
                        v.chars().take(MAX_PARAM_LEN).collect()
                    } else {
                        v.clone()
                    };
                    json!({"key": sanitize_key(k), "value": v})
                })
                .collect();
            let body = json!({"run_id": self.run_id, "params": ps});
            if let Err(e) = self.post("runs/log-batch", &body) {
                self.warn("logging params", &e);
            }
        }
    }

    /// Sets a tag.
    pub fn set_tag(&mut self, key: &str, value: &str) {
        let body =
            json!({"run_id": self.run_id, "tags": [{"key": sanitize_key(key), "value": value}]});
        if let Err(e) = self.post("runs/log-batch", &body) {
            self.warn("setting a tag", &e);
        }
    }

    /// Buffers one metric value; [`flush`](Self::flush) sends the buffer.
    pub fn log_metric(&mut self, key: &str, value: f64, step: u64) {
        let value = if value.is_finite() {
            json!(value)
        } else if value.is_nan() {
            json!("NaN")
        } else if value > 0.0 {
            json!("Infinity")
        } else {
            json!("-Infinity")
        };
        self.buffer
            .push(json!({"key": sanitize_key(key), "value": value,
                                "timestamp": now_ms(), "step": step}));
        if self.buffer.len() > MAX_BUFFERED {
            let n = self.buffer.len() - MAX_BUFFERED;
            self.buffer.drain(..n);
            self.dropped += n as u64;
        }
    }

    /// Metrics waiting to be sent.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Sends buffered metrics in batches; what the server does not take stays buffered.
    pub fn flush(&mut self) {
        while !self.buffer.is_empty() {
            let n = self.buffer.len().min(METRICS_PER_BATCH);
            let body = json!({"run_id": self.run_id, "metrics": &self.buffer[..n]});
            match self.post("runs/log-batch", &body) {
                Ok(_) => {
                    self.buffer.drain(..n);
                    if self.down {
                        tracing::info!("MLflow: server answers again; buffered metrics sent");
                        self.down = false;
                    }
                }
                Err(e) => {
                    self.warn("logging metrics", &e);
                    return;
                }
            }
        }
        if self.dropped > 0 {
            tracing::warn!(
                "MLflow: {} metric values were dropped while the server was away (buffer full)",
                self.dropped
            );
            self.dropped = 0;
        }
    }

    /// Uploads `bytes` as the run's artifact at `path` (e.g. `samples/step-000100/prompt-0.mp4`).
    pub fn log_artifact(&mut self, path: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/{path}",
            self.base, self.experiment_id, self.run_id
        );
        check_artifact_path(path).map_err(|why| MlflowError {
            url: url.clone(),
            why,
        })?;
        let r = self.agent.put(&url).send(bytes);
        Self::answer(&url, r).map(|_| ())
    }

    /// POSTs `body` to the REST endpoint (`registered-models/create`, …) and returns the
    /// answer; an error carries the server's `error_code: message`.
    pub fn post_api(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        self.post(endpoint, body)
    }

    /// GETs the REST endpoint with `query` and returns the answer.
    pub fn get_api(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let url = format!("{}/{endpoint}", self.api());
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        Self::answer(&url, req.call())
    }

    /// Flushes metrics and sets the final status and end time.
    pub fn finish(mut self, status: RunStatus) {
        self.flush();
        let body = json!({"run_id": self.run_id, "status": status.as_str(), "end_time": now_ms()});
        if let Err(e) = self.post("runs/update", &body) {
            tracing::warn!(
                "MLflow: could not set the run's status to {}: {e}",
                status.as_str()
            );
        }
    }
}

/// A config flattened to `section.key = value` params (arrays and tables joined by dots).
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_paths_are_made_safe() {
        assert_eq!(sanitize_key("loss/total"), "loss/total");
        assert_eq!(sanitize_key("a[0]!"), "a_0__");
        assert!(check_artifact_path("samples/a.mp4").is_ok());
        for bad in ["", "/abs", "a/../b", "a//b", "dir/"] {
            assert!(check_artifact_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flatten_joins_sections() {
        let v =
            json!({"train": {"steps": 3, "lr": 0.1}, "sample": {"prompts": ["a", "b"]}, "x": null});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                ("sample.prompts".to_string(), "[\"a\",\"b\"]".to_string()),
                ("train.lr".to_string(), "0.1".to_string()),
                ("train.steps".to_string(), "3".to_string()),
            ]
        );
    }

    #[test]
    fn unreachable_server_fails_start_with_the_url() {
        // port 9 (discard) on localhost is closed here
        let e = MlflowRun::start("http://127.0.0.1:9", "e", "r", &[])
            .err()
            .expect("no server");
        assert!(e.url.contains("127.0.0.1:9"), "{e}");
    }
}
