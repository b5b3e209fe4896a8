//! Layered configuration: a TOML file, then environment `SONORA_SECTION__KEY`, then
//! `--set section.key=value` overrides. Structs use `deny_unknown_fields`, so a typo is
//! an error that names the key and the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Implements `TryFrom<String>` for a unit enum from its config names, refusing any other
/// name with the list of valid ones. With `#[serde(try_from = "String")]` on the enum this
/// is its deserialisation, so `temporal_crop = "sideways"` answers
/// ``temporal_crop: `sideways` is not one of `start`, `center`, `random` `` whatever the
/// format (TOML, JSON, the layered loader).
#[macro_export]
macro_rules! config_enum {
    ($ty:ty { $($name:literal => $variant:expr),+ $(,)? }) => {
        impl ::core::convert::TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $($name => Ok($variant),)+
                    other => Err(format!(
                        "`{other}` is not one of {}",
                        [$(concat!("`", $name, "`")),+].join(", ")
                    )),
                }
            }
        }
    };
}

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

/// `SONORA_` variables that are not config keys: the registry directory, the memory limit,
/// the kernel switches (`model::flex_kernels`, `model::blas`), the test suite's device and
/// the benchmark scripts' binary and python.
pub const NOT_CONFIG_KEYS: [&str; 7] = [
    "SONORA_BLAS",
    "SONORA_REGISTRY",
    "SONORA_MEMORY_LIMIT_GB",
    "SONORA_FLEX_KERNELS",
    "SONORA_TEST_DEVICE",
    "SONORA_BIN",
    "SONORA_TORCH_PYTHON",
];

/// Loads `T` from `file` (optional), the `SONORA_` environment (less [`NOT_CONFIG_KEYS`])
/// and `overrides`.
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
    // variables that name a tool's setting rather than a config key are not layered in
    let env: config::Map<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SONORA_") && !NOT_CONFIG_KEYS.contains(&k.as_str()))
        .collect();
    b = b.add_source(
        config::Environment::with_prefix("SONORA")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    for o in overrides {
        let (k, v) = parse_override(o).map_err(|m| err(format!("--set: {m}")))?;
        b = b
            .set_override(k, v)
            .map_err(|e| err(format!("--set {o}: {e}")))?;
    }
    let cfg = b.build().map_err(|e| err(e.to_string()))?;
    cfg.try_deserialize::<T>().map_err(|e| {
        let message = with_suggestion(&e.to_string());
        match layer_of(&message, overrides) {
            // the key came from an override or the environment, not the file
            Some(layer) => ConfigError {
                file: PathBuf::from(layer),
                message: format!("{message} (in {})", name.display()),
            },
            None => err(message),
        }
    })
}

/// Which override or environment variable set the key an error names (`unknown field
/// `x``, `for key `a.b``), if one did: `--set a.b=v` or `SONORA_A__B`.
fn layer_of(message: &str, overrides: &[String]) -> Option<String> {
    let quoted = |after: &str| {
        message
            .split(after)
            .nth(1)
            .and_then(|r| r.split('`').next())
            .map(str::to_string)
    };
    let key = quoted("for key `");
    let field = quoted("unknown field `");
    // an unknown field is reported with its parent's key; a bad value with its own
    let matches = |k: &str| match (&key, &field) {
        (Some(parent), Some(f)) => k == format!("{parent}.{f}"),
        (None, Some(f)) => k.rsplit('.').next() == Some(f.as_str()),
        (Some(full), None) => k == full,
        (None, None) => false,
    };
    for o in overrides.iter().rev() {
        if let Some((k, _)) = o.split_once('=')
            && matches(k.trim())
        {
            return Some(format!("--set {o}"));
        }
    }
    for (name, _) in std::env::vars() {
        if let Some(rest) = name.strip_prefix("SONORA_") {
            let k = rest.to_ascii_lowercase().replace("__", ".");
            if matches(&k) {
                return Some(format!("environment variable {name}"));
            }
        }
    }
    None
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

    #[test]
    fn a_bad_override_is_blamed_on_the_override() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "[data]\nwidth = 64\nfps = 8.0\n");
        let e = load_layered::<File>(Some(&p), &["data.bogus=3".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--set data.bogus=3: ") && e.contains("bogus"),
            "{e}"
        );
        assert!(e.contains("(in ") && e.contains("c.toml"), "{e}");
        let e = load_layered::<File>(Some(&p), &["data.width=wide".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--set data.width=wide: "), "{e}");
        // the file's own typo is still the file's
        let q = write(d.path(), "[data]\nwidht = 64\nfps = 8.0\n");
        let e = load_layered::<File>(Some(&q), &["data.width=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&q.display().to_string()), "{e}");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(try_from = "String")]
    enum Crop {
        Start,
        Center,
    }
    crate::config_enum!(Crop { "start" => Crop::Start, "center" => Crop::Center });

    #[derive(Debug, Deserialize)]
    struct WithCrop {
        crop: Crop,
    }

    #[test]
    fn an_unknown_enum_value_lists_the_valid_ones() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "crop = \"sideways\"\n");
        let e = load_layered::<WithCrop>(Some(&p), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`sideways` is not one of `start`, `center`"),
            "{e}"
        );
        let ok: WithCrop = load_layered(Some(&p), &["crop=center".into()]).unwrap();
        assert_eq!(ok.crop, Crop::Center);
    }
}
