//! Walking a directory tree for policy and bundle files (walkdir): regular
//! files only, symlinks followed (a symlink loop is an error, not a stack
//! overflow), entries whose name `skip` rejects left out with everything
//! under them.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use walkdir::WalkDir;

pub fn files(root: &Path, skip: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    let walker = WalkDir::new(root)
        .follow_links(true)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| !skip(&e.file_name().to_string_lossy()));
    let mut out = Vec::new();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            // walkdir follows a symlink before `filter_entry` sees its name:
            // a dangling or looping link under a skipped name (an editor's
            // `.#p.rego` lock) is skipped, not an error.
            Err(err) if err.path().is_some_and(|p| under_skipped(root, p, &skip)) => continue,
            Err(err) => {
                let at = err.path().unwrap_or(root).display().to_string();
                return Err(anyhow!("{at}: cannot read: {err}"));
            }
        };
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

fn under_skipped(root: &Path, path: &Path, skip: &impl Fn(&str) -> bool) -> bool {
    path.strip_prefix(root).is_ok_and(|rel| {
        rel.components()
            .any(|c| skip(&c.as_os_str().to_string_lossy()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_names_prune_their_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["a.rego", "sub/b.rego", ".hidden/c.rego", "sub/.d.rego"] {
            let path = root.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let mut found: Vec<String> = files(root, |name| name.starts_with('.'))
            .unwrap()
            .iter()
            .map(|p| {
                p.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        found.sort();
        assert_eq!(found, ["a.rego", "sub/b.rego"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("d/loop")).unwrap();
        let err = files(dir.path(), |_| false).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn broken_links_under_skipped_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rego"), "").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join(".#a.rego")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join(".loop")).unwrap();
        let found = files(dir.path(), |name| name.starts_with('.')).unwrap();
        assert_eq!(found, [dir.path().join("a.rego")]);
        std::os::unix::fs::symlink("nowhere", dir.path().join("b.rego")).unwrap();
        assert!(files(dir.path(), |name| name.starts_with('.')).is_err());
    }
}
