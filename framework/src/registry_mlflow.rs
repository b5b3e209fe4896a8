//! Promotion into MLflow's model registry (when `MLFLOW_TRACKING_URI` names a server):
//! the checkpoint's files are logged as artifacts of a run in the `sonora-registry`
//! experiment, a model version of the registered model is created from them
//! (`runs:/<run>/checkpoint`, with the step, source and eval score as version tags), and
//! the alias is set. The same gate as the embedded registry applies: an alias does not move
//! to a version scoring lower (same kind of score) than the one holding it unless forced.

use std::path::Path;

use serde_json::{Value, json};

use crate::checkpoint::{MANIFEST_FILE, read_manifest};
use crate::registry::{RegistryError, Score};
use crate::tracking::mlflow::{MlflowRun, RunStatus};

/// What an MLflow promotion did.
#[derive(Clone, Debug)]
pub struct MlflowPromotion {
    /// The new model version.
    pub version: u32,
    /// The run holding the checkpoint's files.
    pub run_id: String,
    /// The version the alias held before, if any.
    pub previous: Option<u32>,
    /// Its score, if it had one.
    pub previous_score: Option<f64>,
}

fn bad(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid(format!("MLflow: {e}"))
}

/// The version `alias` of `name` points to, with its score tags, if the alias exists.
fn alias_holder(run: &MlflowRun, name: &str, alias: &str) -> Option<(u32, Option<Score>)> {
    let v = run
        .get_api(
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
        )
        .ok()?;
    let mv = &v["model_version"];
    let version = mv["version"].as_str()?.parse().ok()?;
    let tag = |k: &str| {
        mv["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == k)
            .and_then(|t| t["value"].as_str())
            .map(str::to_string)
    };
    let score = match (tag("sonora.score"), tag("sonora.score_kind")) {
        (Some(v), Some(kind)) => v.parse().ok().map(|value| Score {
            value,
            kind,
            report: tag("sonora.score_report").unwrap_or_default(),
        }),
        _ => None,
    };
    Some((version, score))
}

/// Promotes the checkpoint at `ckpt` to a new version of `name` on the server at `uri` and
/// moves `alias` to it (see the module docs).
pub fn promote_mlflow(
    uri: &str,
    ckpt: &Path,
    name: &str,
    alias: &str,
    score: Option<Score>,
    force: bool,
    by: &str,
) -> Result<MlflowPromotion, RegistryError> {
    let man = read_manifest(ckpt)
        .map_err(|e| RegistryError::Invalid(format!("checkpoint {}: {e}", ckpt.display())))?;
    let mut run = MlflowRun::start(
        uri,
        "sonora-registry",
        &format!("promote-{name}"),
        &[
            ("sonora.checkpoint", ckpt.display().to_string()),
            ("mlflow.user", by.to_string()),
        ],
    )
    .map_err(bad)?;
    // the gate, before anything is registered
    match run.post_api("registered-models/create", &json!({ "name": name })) {
        Ok(_) => {}
        Err(e) if e.why.contains("RESOURCE_ALREADY_EXISTS") => {}
        Err(e) => return Err(bad(e)),
    }
    let holder = alias_holder(&run, name, alias);
    let previous_score = holder.as_ref().and_then(|h| h.1.as_ref().map(|s| s.value));
    if let (Some((from, Some(old))), Some(new)) = (&holder, &score)
        && old.kind == new.kind
        && new.value < old.value
        && !force
    {
        run.finish(RunStatus::Killed);
        return Err(RegistryError::Invalid(format!(
            "refusing to move `{alias}` of `{name}` from v{from} (score {:.3}) to the new version (score {:.3}): the new version scores lower; pass --force to move it anyway",
            old.value, new.value
        )));
    }
    let mut files: Vec<&String> = man.files.keys().collect();
    let manifest = MANIFEST_FILE.to_string();
    files.push(&manifest);
    for f in files {
        let p = ckpt.join(f);
        let bytes = std::fs::read(&p).map_err(|e| RegistryError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        run.log_artifact(&format!("checkpoint/{f}"), &bytes)
            .map_err(bad)?;
    }
    let mut tags = vec![
        json!({"key": "sonora.step", "value": man.step.to_string()}),
        json!({"key": "sonora.source", "value": ckpt.display().to_string()}),
    ];
    if let Some(s) = &score {
        tags.push(json!({"key": "sonora.score", "value": s.value.to_string()}));
        tags.push(json!({"key": "sonora.score_kind", "value": s.kind}));
        tags.push(json!({"key": "sonora.score_report", "value": s.report}));
    }
    let v: Value = run
        .post_api(
            "model-versions/create",
            &json!({
                "name": name,
                "source": format!("runs:/{}/checkpoint", run.run_id),
                "run_id": run.run_id,
                "tags": tags,
            }),
        )
        .map_err(bad)?;
    let version: u32 = v["model_version"]["version"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("no version in the answer: {v}")))?;
    run.post_api(
        "registered-models/alias",
        &json!({"name": name, "alias": alias, "version": version.to_string()}),
    )
    .map_err(bad)?;
    let run_id = run.run_id.clone();
    run.finish(RunStatus::Finished);
    Ok(MlflowPromotion {
        version,
        run_id,
        previous: holder.map(|h| h.0),
        previous_score,
    })
}
