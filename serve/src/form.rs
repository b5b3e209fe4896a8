//! Request bodies as the official SDKs send them: multipart forms (files and text
//! fields) or JSON objects, read into one shape ([`Fields`]) so every route checks its
//! fields the same way: unknown or repeated fields refused by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;

use crate::error::ApiError;
use crate::state::AppState;

/// An uploaded file.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The client's file name.
    pub filename: Option<String>,
    /// The part's content type.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

/// A request body's fields: text values (JSON scalars as text, nested objects flattened
/// as `key[sub]`) and files.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// Text fields.
    pub text: BTreeMap<String, String>,
    /// File fields.
    pub files: BTreeMap<String, Upload>,
}

fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ApiError> {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Number(_) | Value::Bool(_) => {
            out.insert(prefix.to_string(), v.to_string());
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out)?;
            }
        }
        Value::Object(m) => {
            if prefix.matches('[').count() > 4 {
                return Err(ApiError::bad(
                    prefix,
                    format!("`{prefix}` is nested too deeply"),
                ));
            }
            for (k, x) in m {
                flatten(&format!("{prefix}[{k}]"), x, out)?;
            }
        }
    }
    Ok(())
}

impl Fields {
    /// Reads a JSON object.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_code(
                "",
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let serde_json::Value::Object(m) = v else {
            return Err(ApiError::bad_code(
                "",
                "invalid_json",
                "the body must be a JSON object",
            ));
        };
        let mut text = BTreeMap::new();
        for (k, x) in &m {
            flatten(k, x, &mut text)?;
        }
        Ok(Self {
            text,
            files: BTreeMap::new(),
        })
    }

    /// Refuses any field (text or file) whose name is not `allowed` (a name ending in
    /// `[` allows everything under it, `video[` for `video[id]`).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for k in self.text.keys().chain(self.files.keys()) {
            let ok = allowed.iter().any(|a| {
                if a.ends_with('[') {
                    k.starts_with(a)
                } else {
                    k == a
                }
            });
            if !ok {
                return Err(ApiError::bad_code(
                    k,
                    "unknown_parameter",
                    format!(
                        "unknown parameter `{k}`; this route takes {}",
                        allowed
                            .iter()
                            .map(|a| a.trim_end_matches('['))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A text field.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.text.get(k).map(String::as_str)
    }

    /// A text field that must be present.
    pub fn require(&self, k: &str) -> Result<&str, ApiError> {
        self.get(k).ok_or_else(|| {
            ApiError::bad_code(
                k,
                "missing_required_parameter",
                format!("`{k}` is required"),
            )
        })
    }
}

impl FromRequest<Arc<AppState>> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let limit = st.config.max_body_bytes;
        let ct = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("multipart/form-data") {
            let mut mp = Multipart::from_request(req, st)
                .await
                .map_err(|e| ApiError::bad_code("", "invalid_multipart", format!("{e}")))?;
            let mut out = Fields::default();
            let mut total = 0usize;
            let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let field = match mp.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                            ApiError::too_large(limit)
                        } else {
                            ApiError::bad_code(
                                "",
                                "invalid_multipart",
                                format!("malformed multipart body: {e}"),
                            )
                        });
                    }
                };
                let name = field.name().unwrap_or("").to_string();
                if name.is_empty() {
                    return Err(ApiError::bad_code(
                        "",
                        "invalid_multipart",
                        "a multipart part has no field name",
                    ));
                }
                let filename = field.file_name().map(str::to_string);
                let content_type = field.content_type().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| {
                    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::too_large(limit)
                    } else {
                        ApiError::bad_code(
                            &name,
                            "invalid_multipart",
                            format!("reading `{name}`: {e}"),
                        )
                    }
                })?;
                total += bytes.len();
                if total > limit {
                    return Err(ApiError::too_large(limit));
                }
                // `key[]` repeats (the SDKs' arrays): the n-th becomes `key[n]`
                let name = match name.find("[]") {
                    Some(i) => {
                        let n = arrays.entry(name.clone()).or_insert(0usize);
                        let indexed = format!("{}[{n}]{}", &name[..i], &name[i + 2..]);
                        *n += 1;
                        indexed
                    }
                    None => name,
                };
                if out.text.contains_key(&name) || out.files.contains_key(&name) {
                    return Err(ApiError::bad(&name, format!("`{name}` is given twice")));
                }
                if filename.is_some() {
                    out.files.insert(
                        name,
                        Upload {
                            filename,
                            content_type,
                            bytes,
                        },
                    );
                } else {
                    let s = String::from_utf8(bytes.to_vec())
                        .map_err(|_| ApiError::bad(&name, format!("`{name}` is not UTF-8 text")))?;
                    out.text.insert(name, s);
                }
            }
            Ok(out)
        } else if ct.starts_with("application/json") || ct.is_empty() {
            let bytes = axum::body::to_bytes(req.into_body(), limit)
                .await
                .map_err(|_| ApiError::too_large(limit))?;
            if bytes.is_empty() {
                return Ok(Fields::default());
            }
            Fields::from_json(&bytes)
        } else {
            Err(ApiError::bad_code(
                "",
                "unsupported_content_type",
                format!("send application/json or multipart/form-data, not {ct:?}"),
            ))
        }
    }
}
