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
    /// As OPA, a malformed glob (`[a`) matches nothing.
    pub fn new(globs: &[String]) -> Ignore {
        Ignore {
            globs: globs.iter().filter_map(|g| glob_regex(g).ok()).collect(),
        }
    }

    pub fn skips(&self, name: &str) -> bool {
        name.starts_with('.') || self.globs.iter().any(|re| re.is_match(name))
    }
}

/// Go's `filepath.Match` globs as an anchored regex: `*` and `?` (not
/// matching `/`), classes `[a-z]`, `[^a-z]`, and `\` escaping the next
/// character. A malformed pattern (an unclosed or empty class, a trailing
/// `\`) is an error, as Go's `ErrBadPattern`.
pub fn glob_regex(glob: &str) -> Result<regex::Regex, String> {
    let bad = || format!("malformed glob `{glob}`");
    let literal = |c: char| regex::escape(&c.to_string());
    let mut re = String::from("^");
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => re.push_str(&literal(chars.next().ok_or_else(bad)?)),
            '[' => {
                re.push('[');
                let mut rest = chars.clone().peekable();
                if rest.peek() == Some(&'^') {
                    re.push('^');
                    chars.next();
                }
                let mut members = 0;
                loop {
                    match chars.next().ok_or_else(bad)? {
                        ']' if members > 0 => break,
                        ']' => return Err(bad()),
                        '-' if members > 0 => re.push('-'),
                        '\\' => re.push_str(&literal(chars.next().ok_or_else(bad)?)),
                        c => re.push_str(&literal(c)),
                    }
                    members += 1;
                }
                re.push(']');
            }
            c => re.push_str(&literal(c)),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| format!("{}: {e}", bad()))
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
        let globs = ["*.json", "test_?", "[ab]x", "[^a-y]z", r"lit\*", "[a"];
        let ignore = Ignore::new(&globs.map(String::from));
        for name in [".hidden", "data.json", "test_1", "ax", "bx", "zz", "lit*"] {
            assert!(ignore.skips(name), "{name}");
        }
        for name in ["data.rego", "test_12", "cx", "json", "az", "litx", "[a"] {
            assert!(!ignore.skips(name), "{name}");
        }
        for bad in ["[", "[]", "x\\", "[a-"] {
            assert!(glob_regex(bad).is_err(), "{bad}");
        }
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
