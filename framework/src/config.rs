//! Layered configuration: a TOML file, then environment `SONORA_SECTION__KEY`, then
//! `--set section.key=value` overrides. Structs use `deny_unknown_fields`, so a typo is
//! an error that names the key and the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file being loaded (or `<overrides>`).
    pub file: PathBuf,
    /// What is wrong, naming the key.
    pub message: String,
}

/// Parses one `section.key=value` override; the value is read as TOML when it parses
/// (numbers, booleans, arrays) and as a plain string otherwise.
pub fn parse_override(s: &str) -> Result<(String, config::Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("override `{s}` is not of the form section.key=value"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("override `{s}` has an empty key"));
    }
    let v = v.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(t) => toml_to_config(t.get("v").cloned().unwrap_or(toml::Value::String(v.into()))),
        Err(_) => config::Value::from(v.to_string()),
    };
    Ok((k.to_string(), value))
}

fn toml_to_config(v: toml::Value) -> config::Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(toml_to_config).collect::<Vec<_>>().into(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k, toml_to_config(v)))
            .collect::<std::collections::HashMap<_, _>>()
            .into(),
    }
}

/// Loads `T` from `file` (optional), the `SONORA_` environment and `overrides`.
pub fn load_layered<T: DeserializeOwned>(file: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError> {
    let name = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<defaults>"));
    let err = |message: String| ConfigError { file: name.clone(), message };
    let mut b = config::Config::builder();
    if let Some(f) = file {
        if !f.is_file() {
            return Err(err("config file not found".into()));
        }
        b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
    }
    b = b.add_source(
        config::Environment::with_prefix("SONORA")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true),
    );
    for o in overrides {
        let (k, v) = parse_override(o).map_err(|m| err(format!("--set: {m}")))?;
        b = b.set_override(k, v).map_err(|e| err(format!("--set {o}: {e}")))?;
    }
    let cfg = b.build().map_err(|e| err(e.to_string()))?;
    cfg.try_deserialize::<T>().map_err(|e| err(e.to_string()))
}
