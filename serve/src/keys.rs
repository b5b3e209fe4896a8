//! API keys: random 192-bit secrets shown once, stored as their SHA-256 (a key has
//! enough entropy that a slow hash adds nothing), mapped to a user.

use rand::RngCore;
use sonora_framework::fsutil::sha256_hex;

use crate::store::{JobStore, KeyInfo, StoreError, now};

/// The prefix every key starts with.
pub const KEY_PREFIX: &str = "sk-sonora-";

/// Creates a key for `user`; returns the key (shown once, never stored) and its record.
pub fn create(
    store: &dyn JobStore,
    user: &str,
    admin: bool,
) -> Result<(String, KeyInfo), StoreError> {
    let user = user.trim();
    if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
        return Err(StoreError(format!(
            "a user name must be 1 to 128 printable characters, got {user:?}"
        )));
    }
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
    let mut id = [0u8; 6];
    rand::rng().fill_bytes(&mut id);
    let info = KeyInfo {
        id: format!("key_{}", hex::encode(id)),
        user: user.to_string(),
        prefix: key[..KEY_PREFIX.len() + 6].to_string(),
        admin,
        created_at: now(),
        revoked_at: None,
    };
    store.add_key(&info, &hash(&key))?;
    Ok((key, info))
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    sha256_hex(key.as_bytes())
}
