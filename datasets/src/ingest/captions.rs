//! Caption files for ingest: CSV (`file,caption`) or JSONL (`{"file", "caption"}`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{DatasetError, Result};

/// Captions keyed by source file: the path relative to the source folder or the bare name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Captions {
    by_key: HashMap<String, String>,
}

fn normalize_key(k: &str) -> String {
    let k = k.trim().replace('\\', "/");
    let mut k = k.as_str();
    while let Some(rest) = k.strip_prefix("./") {
        k = rest;
    }
    k.to_string()
}

impl Captions {
    /// Loads a captions file: JSONL (`.jsonl`, `.ndjson`, `.json`, or content starting with
    /// `{`) with `file` and `caption` keys, otherwise CSV with a `file,caption` header.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let jsonl = match ext.as_str() {
            "jsonl" | "ndjson" | "json" => true,
            "csv" => false,
            _ => text
                .trim_start_matches('\u{feff}')
                .trim_start()
                .starts_with('{'),
        };
        if jsonl {
            Self::parse_jsonl(&text, path)
        } else {
            Self::parse_csv(&text, path)
        }
    }

    /// Parses CSV text with a header naming `file` and `caption` (other columns ignored;
    /// quoted fields may hold commas, doubled quotes and newlines).
    pub fn parse_csv(text: &str, path: &Path) -> Result<Self> {
        let err = |line: usize, m: String| {
            DatasetError::Config(format!("{}: line {line}: {m}", path.display()))
        };
        let records = parse_csv_records(text).map_err(|(line, m)| err(line, m))?;
        let mut it = records.into_iter();
        let Some((hline, header)) = it.next() else {
            return Err(DatasetError::Config(format!(
                "{}: empty captions file (expected a `file,caption` header)",
                path.display()
            )));
        };
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let (Some(fi), Some(ci)) = (find("file"), find("caption")) else {
            return Err(err(
                hline,
                format!("the header must name `file` and `caption` columns, found {header:?}"),
            ));
        };
        let mut out = Self::default();
        for (line, fields) in it {
            if fields.len() != header.len() {
                return Err(err(
                    line,
                    format!(
                        "expected {} fields like the header, found {}",
                        header.len(),
                        fields.len()
                    ),
                ));
            }
            out.insert(&fields[fi], &fields[ci])
                .map_err(|m| err(line, m))?;
        }
        Ok(out)
    }

    /// Parses JSON Lines: one `{"file": "...", "caption": "..."}` object per line.
    pub fn parse_jsonl(text: &str, path: &Path) -> Result<Self> {
        let mut out = Self::default();
        for (i, line) in text.lines().enumerate() {
            let err = |m: String| {
                DatasetError::Config(format!("{}: line {}: {m}", path.display(), i + 1))
            };
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
            let obj = v
                .as_object()
                .ok_or_else(|| err("expected a JSON object".into()))?;
            let file = obj
                .get("file")
                .and_then(|f| f.as_str())
                .ok_or_else(|| err("missing string field `file`".into()))?;
            let caption = match obj.get("caption") {
                Some(serde_json::Value::String(s)) => s.as_str(),
                Some(serde_json::Value::Null) => "",
                Some(_) => return Err(err("field `caption` must be a string".into())),
                None => return Err(err("missing field `caption`".into())),
            };
            out.insert(file, caption).map_err(err)?;
        }
        Ok(out)
    }

    fn insert(&mut self, file: &str, caption: &str) -> std::result::Result<(), String> {
        let key = normalize_key(file);
        if key.is_empty() {
            return Err("empty `file` value".into());
        }
        if let Some(prev) = self.by_key.insert(key.clone(), caption.trim().to_string()) {
            tracing::warn!(
                "captions: `{key}` appears more than once; keeping the later caption (was {prev:?})"
            );
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The caption of a file given its path relative to the source folder: an entry for the
    /// relative path wins over one for the bare file name. Returns the matched key too.
    pub fn lookup(&self, rel_path: &str) -> Option<(&str, &str)> {
        let rel = normalize_key(rel_path);
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        for k in [rel.as_str(), name] {
            if let Some((k, v)) = self.by_key.get_key_value(k) {
                return Some((k.as_str(), v.as_str()));
            }
        }
        None
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.by_key.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }
}

/// CSV records as `(line, fields)`.
type CsvRecords = Vec<(usize, Vec<String>)>;

/// Splits CSV text into records of fields (the `csv` crate: quoted fields may hold
/// commas, doubled quotes and newlines), each with the line it starts on. Blank lines are
/// skipped; an error carries the line number and what is wrong.
fn parse_csv_records(text: &str) -> std::result::Result<CsvRecords, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            (line, e.to_string())
        })?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue;
        }
        out.push((line, rec.iter().map(str::to_string).collect()));
    }
    // The csv crate closes a quote left open at the end of the file silently; an odd
    // number of quote characters means the last record's quoted field never ended.
    if text.bytes().filter(|&b| b == b'"').count() % 2 == 1 {
        let line = out.last().map_or(1, |r| r.0);
        return Err((line, "unterminated quoted field".into()));
    }
    Ok(out)
}
