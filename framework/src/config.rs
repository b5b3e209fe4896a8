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
pub fn load_layered<T: DeserializeOwned>(
    file: Option<&Path>,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let name = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("<defaults>"));
    let err = |message: String| ConfigError {
        file: name.clone(),
        message,
    };
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
        b = b
            .set_override(k, v)
            .map_err(|e| err(format!("--set {o}: {e}")))?;
    }
    let cfg = b.build().map_err(|e| err(e.to_string()))?;
    cfg.try_deserialize::<T>()
        .map_err(|e| err(with_suggestion(&e.to_string())))
}

/// Adds "did you mean `x`?" to serde's "unknown field `y`, expected one of …" messages.
fn with_suggestion(msg: &str) -> String {
    let Some(rest) = msg.split("unknown field `").nth(1) else {
        return msg.to_string();
    };
    let Some((bad, expected)) = rest.split_once('`') else {
        return msg.to_string();
    };
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (edit_distance(bad, cand), cand))
        .min();
    match best {
        Some((d, cand)) if d <= bad.len().max(3) / 2 + 1 => {
            format!("{msg}; did you mean `{cand}`?")
        }
        _ => msg.to_string(),
    }
}

/// Levenshtein distance between two keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        data: Data,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Data {
        width: u32,
        fps: f64,
        #[serde(default)]
        name: String,
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn layers_apply_in_order_file_then_overrides() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "[data]\nwidth = 64\nfps = 8.0\nname = \"a\"\n");
        let f: File = load_layered(
            Some(&p),
            &["data.width=96".into(), "data.name=hello world".into()],
        )
        .unwrap();
        assert_eq!(
            (f.data.width, f.data.fps, f.data.name.as_str()),
            (96, 8.0, "hello world")
        );
    }

    #[test]
    fn unknown_key_names_key_file_and_suggestion() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "[data]\nwidht = 64\nfps = 8.0\n");
        let e = load_layered::<File>(Some(&p), &[]).unwrap_err().to_string();
        assert!(
            e.contains("c.toml") && e.contains("widht") && e.contains("did you mean `width`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_and_missing_file_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "[data]\nwidth = \"wide\"\nfps = 8.0\n");
        let e = load_layered::<File>(Some(&p), &[]).unwrap_err().to_string();
        assert!(e.contains("width") || e.contains("wide"), "{e}");
        let e = load_layered::<File>(Some(&d.path().join("none.toml")), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found"), "{e}");
        assert!(load_layered::<File>(Some(&p), &["nokey".into()]).is_err());
    }
}
