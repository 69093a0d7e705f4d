//! Walking a directory tree for policy and bundle files (walkdir): regular
//! files only, symlinks followed (a symlink loop is an error, not a stack
//! overflow), entries whose name `skip` rejects left out with everything
//! under them; and the names `--ignore` leaves out.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use walkdir::WalkDir;

/// The entry names a policy directory walk leaves out: hidden ones (`.x`;
/// what OPA's common `--ignore=.*` does, and a mounted Kubernetes
/// ConfigMap's `..data` copies), and those matching an `--ignore` glob.
/// As OPA's, the globs apply to names below the paths given, not to the
/// paths themselves.
#[derive(Clone, Debug, Default)]
pub struct Ignore {
    globs: Vec<regex::Regex>,
}

impl Ignore {
    pub fn new(globs: &[String]) -> Result<Ignore> {
        let globs = globs
            .iter()
            .map(|g| glob_regex(g).map_err(|e| anyhow!("bad --ignore pattern `{g}`: {e}")))
            .collect::<Result<_>>()?;
        Ok(Ignore { globs })
    }

    pub fn skips(&self, name: &str) -> bool {
        name.starts_with('.') || self.globs.iter().any(|re| re.is_match(name))
    }
}

/// Go's `filepath.Match` globs (`*`, `?`, `[...]`) as an anchored regex.
pub fn glob_regex(glob: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("^");
    let mut in_class = false;
    for c in glob.chars() {
        match c {
            '*' if !in_class => re.push_str("[^/]*"),
            '?' if !in_class => re.push_str("[^/]"),
            '[' if !in_class => {
                in_class = true;
                re.push('[');
            }
            ']' if in_class => {
                in_class = false;
                re.push(']');
            }
            c if in_class => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

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
    fn ignore_globs_match_names_as_go_does() {
        let ignore = Ignore::new(&["*.json".into(), "test_?".into(), "[ab]x".into()]).unwrap();
        for name in [".hidden", "data.json", "test_1", "ax", "bx"] {
            assert!(ignore.skips(name), "{name}");
        }
        for name in ["data.rego", "test_12", "cx", "json"] {
            assert!(!ignore.skips(name), "{name}");
        }
        assert!(Ignore::new(&["[".into()]).is_err());
    }

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
