//! Provenance on every MP4 the server writes: a manifest (model and version, request id,
//! creation time, characters cast, what it was derived from, the SHA-256 of the file
//! without the manifest) signed with the server's Ed25519 key, appended as a top-level
//! ISO-BMFF `uuid` box (players and ffprobe skip it). [`verify`] checks a file against it.
//!
//! C2PA is the standard for this; its Rust SDK (`c2pa`) needs OpenSSL and a large
//! dependency tree, so sonora signs its own manifest, documented here:
//! `uuid` box = size (u32 BE), `uuid`, [`BOX_UUID`], manifest length (u32 BE), manifest
//! (UTF-8 JSON), signature (64 bytes, Ed25519 over the manifest bytes).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sonora_framework::fsutil::{sha256_hex, write_atomic};

/// The `uuid` box's user type: sonora provenance v1.
pub const BOX_UUID: [u8; 16] = *b"sonora-prov-v1\0\0";

/// What a signed video says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `sonora-provenance/1`.
    pub format: String,
    /// The signing server's public key (hex).
    pub server_key: String,
    /// The model and version that made it (`NAME@vN`).
    pub model: String,
    /// The request (video id).
    pub request_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Characters cast (ids).
    pub characters: Vec<String>,
    /// `remix`, `edit` or `extension` of another video, if it is one.
    pub derived_from: Option<Derived>,
    /// Whether this file carries sonora's visible mark.
    pub watermarked: bool,
    /// SHA-256 (hex) of the file's bytes before the provenance box.
    pub content_sha256: String,
}

/// What a video was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derived {
    /// `remix`, `edit` or `extension`.
    pub kind: String,
    /// The source video's id (none for an uploaded clip).
    pub video_id: Option<String>,
}

/// The server's signing key, kept with the registry: `REGISTRY/.provenance/ed25519.key`
/// (the 32-byte secret in hex, readable by its owner only) and `ed25519.pub`.
pub struct ServerKey {
    key: SigningKey,
}

/// Where a registry keeps the key.
pub fn key_path(registry: &Path) -> PathBuf {
    registry.join(".provenance").join("ed25519.key")
}

impl ServerKey {
    /// Creates a new key under `registry`; refuses to replace one unless `force`.
    pub fn init(registry: &Path, force: bool) -> anyhow::Result<Self> {
        let p = key_path(registry);
        if p.exists() && !force {
            anyhow::bail!(
                "{} exists: videos already signed with it verify only against it (pass --force to replace it)",
                p.display()
            );
        }
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        write_atomic(&p, hex::encode(seed).as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        write_atomic(
            &p.with_file_name("ed25519.pub"),
            hex::encode(key.verifying_key().as_bytes()).as_bytes(),
        )?;
        Ok(Self { key })
    }

    /// Loads the key under `registry`.
    pub fn load(registry: &Path) -> anyhow::Result<Self> {
        let p = key_path(registry);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (create the server's signing key with `sonora serve keys init`)",
                p.display()
            )
        })?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("{}: not a 32-byte hex Ed25519 secret", p.display()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&bytes),
        })
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// `mp4` with a signed provenance box appended; `manifest.content_sha256` and
    /// `server_key` are filled in here.
    pub fn sign(&self, mp4: &[u8], mut manifest: Manifest) -> Vec<u8> {
        manifest.format = "sonora-provenance/1".into();
        manifest.server_key = self.public_hex();
        manifest.content_sha256 = sha256_hex(mp4);
        let json = serde_json::to_vec(&manifest).expect("a manifest serialises");
        let sig = self.key.sign(&json);
        let size = 8 + 16 + 4 + json.len() + 64;
        let mut out = Vec::with_capacity(mp4.len() + size);
        out.extend_from_slice(mp4);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend_from_slice(b"uuid");
        out.extend_from_slice(&BOX_UUID);
        out.extend_from_slice(&(json.len() as u32).to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&sig.to_bytes());
        out
    }
}

/// Why a file does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// No sonora box: not made by a sonora server, or re-encoded (which drops it).
    #[error(
        "no sonora provenance in the file: it was not written by a sonora server, or it was re-encoded or cut"
    )]
    Missing,
    /// The box does not parse.
    #[error("the provenance box is damaged: {0}")]
    Damaged(String),
    /// The signature does not match the manifest.
    #[error("the provenance signature does not match its manifest: the manifest was altered")]
    BadSignature,
    /// The file's bytes differ from those signed.
    #[error("the video was altered after it was signed (SHA-256 {got}, signed {want})")]
    Altered {
        /// The file's.
        got: String,
        /// The manifest's.
        want: String,
    },
}

/// The top-level boxes of an ISO-BMFF file: (offset, size, type).
fn top_level_boxes(b: &[u8]) -> Result<Vec<(usize, usize, [u8; 4])>, VerifyError> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 8 <= b.len() {
        let size32 = u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes")) as usize;
        let kind: [u8; 4] = b[i + 4..i + 8].try_into().expect("4 bytes");
        let size = match size32 {
            0 => b.len() - i,
            1 => {
                if i + 16 > b.len() {
                    break;
                }
                u64::from_be_bytes(b[i + 8..i + 16].try_into().expect("8 bytes")) as usize
            }
            s => s,
        };
        if size < 8 || i + size > b.len() {
            break;
        }
        out.push((i, size, kind));
        i += size;
    }
    Ok(out)
}

/// Checks `file`'s provenance: the box is the file's last, its signature matches its
/// manifest, and the bytes before it hash to the manifest's SHA-256.
pub fn verify(file: &[u8]) -> Result<Manifest, VerifyError> {
    let boxes = top_level_boxes(file)?;
    let Some(&(off, size, kind)) = boxes.last() else {
        return Err(VerifyError::Missing);
    };
    if &kind != b"uuid" || size < 8 + 16 + 4 + 64 || file[off + 8..off + 24] != BOX_UUID {
        return Err(VerifyError::Missing);
    }
    if off + size != file.len() {
        return Err(VerifyError::Damaged(
            "bytes follow the provenance box".into(),
        ));
    }
    let body = &file[off + 24..off + size];
    let n = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if 4 + n + 64 != body.len() {
        return Err(VerifyError::Damaged(format!(
            "manifest length {n} does not fit a {}-byte box",
            size
        )));
    }
    let json = &body[4..4 + n];
    let sig = Signature::from_bytes(body[4 + n..].try_into().expect("64 bytes"));
    let manifest: Manifest =
        serde_json::from_slice(json).map_err(|e| VerifyError::Damaged(format!("manifest: {e}")))?;
    let key_bytes: [u8; 32] = hex::decode(&manifest.server_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::Damaged("server_key is not a 32-byte hex key".into()))?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| VerifyError::Damaged(format!("server_key: {e}")))?;
    key.verify(json, &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    let got = sha256_hex(&file[..off]);
    if got != manifest.content_sha256 {
        return Err(VerifyError::Altered {
            got,
            want: manifest.content_sha256,
        });
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: String::new(),
            server_key: String::new(),
            model: "m@v1".into(),
            request_id: "video_1".into(),
            created_at: 5,
            characters: vec!["char_1".into()],
            derived_from: None,
            watermarked: true,
            content_sha256: String::new(),
        }
    }

    /// A minimal ISO-BMFF file: an `ftyp` and a `free` box.
    fn file() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&16u32.to_be_bytes());
        f.extend_from_slice(b"ftypisom\0\0\0\0");
        f.extend_from_slice(&12u32.to_be_bytes());
        f.extend_from_slice(b"freeabcd");
        f
    }

    #[test]
    fn a_signed_file_verifies_and_any_change_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let k = ServerKey::init(d.path(), false).unwrap();
        assert!(
            ServerKey::init(d.path(), false).is_err(),
            "no silent replacement"
        );
        let k2 = ServerKey::load(d.path()).unwrap();
        assert_eq!(k.public_hex(), k2.public_hex());
        let signed = k.sign(&file(), manifest());
        let m = verify(&signed).unwrap();
        assert_eq!(
            (m.request_id.as_str(), m.server_key.clone()),
            ("video_1", k.public_hex())
        );
        // a byte of the content changed
        let mut bad = signed.clone();
        bad[20] ^= 1;
        assert!(matches!(verify(&bad), Err(VerifyError::Altered { .. })));
        // the manifest changed
        let mut bad = signed.clone();
        let i = bad.windows(7).position(|w| w == b"video_1").unwrap();
        bad[i + 6] = b'2';
        assert!(matches!(verify(&bad), Err(VerifyError::BadSignature)));
        // cut short, or without the box
        assert!(matches!(
            verify(&signed[..signed.len() - 10]),
            Err(VerifyError::Missing)
        ));
        assert!(matches!(verify(&file()), Err(VerifyError::Missing)));
    }
}
