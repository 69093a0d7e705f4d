//! `persist: true`: the last activated download of a bundle kept on disk, in
//! OPA's layout (`<persistence_directory>/bundles/<name>/bundle.tar.gz`),
//! with its ETag beside it, so that a restart while the service is down
//! still serves. Writes go to a temporary file renamed into place: a crash
//! never leaves half a bundle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The directory holding bundle `name`'s persisted copy.
pub fn bundle_dir(persistence_dir: &Path, name: &str) -> PathBuf {
    persistence_dir.join("bundles").join(name)
}

/// Saves a downloaded bundle and its ETag.
pub fn save(dir: &Path, bytes: &[u8], etag: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    write_atomic(&dir.join("bundle.tar.gz"), bytes)?;
    let etag_path = dir.join("etag");
    match etag {
        Some(etag) => write_atomic(&etag_path, etag.as_bytes())?,
        None => {
            let _ = std::fs::remove_file(&etag_path);
        }
    }
    Ok(())
}

/// The persisted bundle bytes and ETag, if any were saved.
pub fn load(dir: &Path) -> Result<Option<(Vec<u8>, Option<String>)>> {
    let path = dir.join("bundle.tar.gz");
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let etag = std::fs::read_to_string(dir.join("etag")).ok();
    Ok(Some((bytes, etag)))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn saved_bundles_load_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = bundle_dir(root.path(), "cvat");
        assert!(load(&dir).unwrap().is_none());
        save(&dir, b"bytes", Some("\"e1\"")).unwrap();
        assert_eq!(
            load(&dir).unwrap(),
            Some((b"bytes".to_vec(), Some("\"e1\"".to_string())))
        );
        save(&dir, b"other", None).unwrap();
        assert_eq!(load(&dir).unwrap(), Some((b"other".to_vec(), None)));
    }
}
