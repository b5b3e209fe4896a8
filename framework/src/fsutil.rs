//! Crash-safe file writes and checksums.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
///
/// A crash leaves either the old file or the new one, never a torn write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Best-effort fsync of a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Checks that `rel`, a path read from a file or a request, stays inside the directory it
/// is relative to: not empty, not absolute, no `..`, no drive or root prefix. The error
/// says which rule it breaks.
pub fn check_relative(rel: &str) -> Result<(), String> {
    use std::path::Component;
    if rel.is_empty() {
        return Err("the path is empty".into());
    }
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "`{rel}` leaves its directory (`..` is not allowed)"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{rel}` is absolute; it must be relative to its directory"
                ));
            }
        }
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod relative_tests {
    use super::check_relative;

    #[test]
    fn paths_that_leave_their_root_are_refused() {
        for ok in ["train-00000.parquet", "shards/a.parquet", "./a.parquet"] {
            assert!(check_relative(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("../other/train-00000.parquet", "`..`"),
            ("a/../../b.parquet", "`..`"),
            ("/etc/passwd", "absolute"),
            ("", "empty"),
        ] {
            let e = check_relative(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
