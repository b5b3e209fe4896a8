//! The embedded model registry: promote a checkpoint to a numbered version of a named
//! model, move aliases (`production`, `staging`, …) between versions, and resolve
//! `NAME@ALIAS` to a checkpoint directory to serve.
//!
//! Layout of a registry directory (default `registry/` beside `runs/`):
//!
//! ```text
//! registry/<name>/model.json     versions, aliases and the history of every alias move
//! registry/<name>/v<N>/          the checkpoint's files (hard-linked when the file system
//!                                allows, else copied), SHA-256 checked after the copy
//! ```
//!
//! `model.json` is written atomically (temporary file + rename) under a lock file, so a
//! crash leaves the previous registry whole and two promotions cannot interleave. A
//! version directory is filled under a temporary name and renamed into place before
//! `model.json` names it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{MANIFEST_FILE, read_manifest};
use crate::fsutil::{sha256_file, write_atomic};

/// A registry operation that failed; the message names the model, alias or file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Bad input: an unknown model or alias, a bad name, a checkpoint that does not verify.
    #[error("{0}")]
    Invalid(String),
    /// Moving `alias` would put a lower-scoring version in place (`--force` moves it anyway).
    #[error(
        "refusing to move `{alias}` of `{name}` from v{from} (score {from_score:.3}) to v{to} (score {to_score:.3}): the new version scores lower; pass --force to move it anyway"
    )]
    LowerScore {
        /// The model.
        name: String,
        /// The alias.
        alias: String,
        /// Its current version.
        from: u32,
        /// That version's score.
        from_score: f64,
        /// The version asked for.
        to: u32,
        /// Its score.
        to_score: f64,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |e| RegistryError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One registered version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// 1, 2, …
    pub version: u32,
    /// The checkpoint it was promoted from.
    pub source: String,
    /// The checkpoint's training step.
    pub step: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// SHA-256 of every file, as in the checkpoint's manifest.
    pub files: BTreeMap<String, String>,
    /// The eval score the checkpoint had when promoted (normalised when its report has
    /// one), and where it came from.
    pub score: Option<Score>,
}

/// An eval score attached to a version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Score {
    /// The value (higher is better).
    pub value: f64,
    /// What it is: `physics normalised`, `physics raw`, …
    pub kind: String,
    /// The report it was read from.
    pub report: String,
}

/// One alias move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasMove {
    /// The alias.
    pub alias: String,
    /// The version it pointed to before (none for a new alias).
    pub from: Option<u32>,
    /// The version it points to now.
    pub to: u32,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Who moved it (`--by`, else `$USER`).
    pub by: String,
    /// The new version's score, if it had one.
    pub score: Option<f64>,
    /// Whether a lower score was overridden with `--force`.
    pub forced: bool,
}

/// `model.json`: everything the registry knows about one model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The model's name.
    pub name: String,
    /// Every version, oldest first.
    pub versions: Vec<Version>,
    /// Alias → version.
    pub aliases: BTreeMap<String, u32>,
    /// Every alias move, oldest first.
    pub history: Vec<AliasMove>,
}

impl ModelEntry {
    /// A version by number.
    pub fn version(&self, v: u32) -> Option<&Version> {
        self.versions.iter().find(|x| x.version == v)
    }
}

/// What a promotion did.
#[derive(Clone, Debug)]
pub struct Promotion {
    /// The new version.
    pub version: Version,
    /// Its directory.
    pub dir: PathBuf,
    /// The alias move, when an alias was given.
    pub moved: Option<AliasMove>,
    /// The score of the version the alias pointed to before, when it had one.
    pub previous_score: Option<f64>,
}

/// A registry directory.
pub struct Registry {
    root: PathBuf,
}

/// Names of models and aliases: letters, digits, `-`, `_`, `.`; 1–64 characters; not
/// starting with `.` (they become directory names).
fn check_name(what: &str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{what} `{s}`: use 1–64 letters, digits, `-`, `_` or `.` (not starting with `.`)"
        )))
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc(secs: u64) -> String {
    // days → civil date (Howard Hinnant's algorithm)
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Holds `<dir>/.lock` while it lives (created exclusively; removed on drop).
struct Lock(PathBuf);

impl Lock {
    fn take(dir: &Path) -> Result<Self, RegistryError> {
        let p = dir.join(".lock");
        for _ in 0..200 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
            {
                Ok(_) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(io(&p)(e)),
            }
        }
        Err(RegistryError::Invalid(format!(
            "{} is held by another promotion (remove it if no sonora process is running)",
            p.display()
        )))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Registry {
    /// The registry at `root` (created on the first promotion).
    pub fn open(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The registry directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every registered model's name.
    pub fn models(&self) -> Result<Vec<String>, RegistryError> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = rd
            .flatten()
            .filter(|e| e.path().join("model.json").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// A model's entry.
    pub fn model(&self, name: &str) -> Result<ModelEntry, RegistryError> {
        check_name("model name", name)?;
        let p = self.root.join(name).join("model.json");
        if !p.is_file() {
            let known = self.models()?;
            return Err(RegistryError::Invalid(format!(
                "no model `{name}` in the registry {} (models: {})",
                self.root.display(),
                if known.is_empty() {
                    "none yet; `sonora promote CHECKPOINT --name NAME` adds one".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Io {
            path: p.clone(),
            message: format!("not a sonora registry entry: {e}"),
        })
    }

    /// The checkpoint directory `spec` names: `NAME@ALIAS`, `NAME@vN` or `NAME` (its
    /// `production` alias); its files are checked against the recorded SHA-256.
    pub fn resolve(&self, spec: &str) -> Result<(PathBuf, Version), RegistryError> {
        let (name, which) = spec.split_once('@').unwrap_or((spec, "production"));
        let m = self.model(name)?;
        let v = match which.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => n,
            None => *m.aliases.get(which).ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "model `{name}` has no alias `{which}` (aliases: {})",
                    m.aliases
                        .iter()
                        .map(|(a, v)| format!("{a} → v{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let ver = m
            .version(v)
            .cloned()
            .ok_or_else(|| RegistryError::Invalid(format!("model `{name}` has no version v{v}")))?;
        let dir = self.root.join(name).join(format!("v{v}"));
        for (f, want) in &ver.files {
            let p = dir.join(f);
            let got = sha256_file(&p).map_err(io(&p))?;
            if &got != want {
                return Err(RegistryError::Invalid(format!(
                    "{}: SHA-256 {got} differs from the registry's {want}; the version is damaged",
                    p.display()
                )));
            }
        }
        Ok((dir, ver))
    }

    /// Registers the checkpoint at `ckpt` as the next version of `name` (its files
    /// checked against its manifest, then hard-linked or copied and checked again) and,
    /// with `alias`, moves the alias to it. When the alias's current version has a score
    /// of the same kind and the new one scores lower, the promotion is refused before
    /// anything is written, unless `force`.
    pub fn promote(
        &self,
        ckpt: &Path,
        name: &str,
        alias: Option<&str>,
        score: Option<Score>,
        force: bool,
        by: &str,
    ) -> Result<Promotion, RegistryError> {
        check_name("model name", name)?;
        if let Some(a) = alias {
            check_name("alias", a)?;
        }
        let man = read_manifest(ckpt)
            .map_err(|e| RegistryError::Invalid(format!("checkpoint {}: {e}", ckpt.display())))?;
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let _lock = Lock::take(&dir)?;
        let mut m = if dir.join("model.json").is_file() {
            self.model(name)?
        } else {
            ModelEntry {
                name: name.into(),
                ..ModelEntry::default()
            }
        };
        // the gate, before anything is copied
        let current = alias.and_then(|a| m.aliases.get(a).copied());
        let previous = current
            .and_then(|v| m.version(v))
            .and_then(|v| v.score.clone());
        let previous_score = previous.as_ref().map(|s| s.value);
        let n = m.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        // scores compare only when they are the same kind (suite, normalised or raw)
        let lower = match (&previous, &score) {
            (Some(old), Some(new)) if old.kind == new.kind => new.value < old.value,
            _ => false,
        };
        if let (Some(a), Some(from), Some(old), Some(new), true) = (
            alias,
            current,
            previous_score,
            score.as_ref().map(|s| s.value),
            lower,
        ) && !force
        {
            return Err(RegistryError::LowerScore {
                name: name.into(),
                alias: a.into(),
                from,
                from_score: old,
                to: n,
                to_score: new,
            });
        }
        // the files, under a temporary name, then renamed into place
        let tmp = dir.join(format!(".v{n}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut files = man.files.clone();
        files.insert(
            MANIFEST_FILE.into(),
            sha256_file(&ckpt.join(MANIFEST_FILE)).map_err(io(&ckpt.join(MANIFEST_FILE)))?,
        );
        for (f, want) in &files {
            let (src, dst) = (ckpt.join(f), tmp.join(f));
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).map_err(io(&src))?;
            }
            let got = sha256_file(&dst).map_err(io(&dst))?;
            if &got != want {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(RegistryError::Invalid(format!(
                    "{}: changed while it was copied (SHA-256 {got}, expected {want})",
                    src.display()
                )));
            }
        }
        let vdir = dir.join(format!("v{n}"));
        std::fs::rename(&tmp, &vdir).map_err(io(&vdir))?;
        let version = Version {
            version: n,
            source: ckpt.display().to_string(),
            step: man.step,
            created_at: now(),
            files,
            score,
        };
        m.versions.push(version.clone());
        let moved = alias.map(|a| {
            let mv = AliasMove {
                alias: a.into(),
                from: current,
                to: n,
                at: now(),
                by: by.into(),
                score: version.score.as_ref().map(|s| s.value),
                forced: force && lower,
            };
            m.aliases.insert(a.into(), n);
            m.history.push(mv.clone());
            mv
        });
        let json =
            serde_json::to_vec_pretty(&m).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let p = dir.join("model.json");
        write_atomic(&p, &json).map_err(io(&p))?;
        Ok(Promotion {
            version,
            dir: vdir,
            moved,
            previous_score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_170_000), "2026-12-02T00:06:40Z");
    }

    #[test]
    fn names_become_directory_names_only_when_safe() {
        for ok in ["quickstart", "small-v2", "a_b.c"] {
            assert!(check_name("model name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(check_name("model name", bad).is_err(), "{bad}");
        }
    }
}
