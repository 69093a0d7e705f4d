//! Policy sources: reading `.rego`, `.json` and `.yaml` files from disk (or the
//! embedded default set) into a [`Sources`] value, with data documents placed
//! at the path of their directory the way `opa run` does.
//!
//! Nothing here parses Rego or touches the evaluator; it only gathers text and
//! data so that [`crate::policy::Snapshot::build`] sees one complete input.

use crate::walk::Ignore;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value as Json};

/// One Rego module: its id (the path it was loaded from) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub id: String,
    pub text: String,
}

/// Everything a snapshot is built from.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub modules: Vec<Module>,
    /// The merged data document (always an object).
    pub data: Map<String, Json>,
    /// The revision of each active bundle, by bundle name.
    pub revisions: std::collections::BTreeMap<String, String>,
}

// The default policy set, compiled into the binary by `build.rs` so the daemon
// works from any directory. Test modules and the decision tables are not
// embedded: they are for `regent test`, not for serving.
include!(concat!(env!("OUT_DIR"), "/default_policies.rs"));

/// The prefix used for ids of embedded modules, as if loaded with `regent run policies`.
const DEFAULT_ROOT: &str = "policies";

impl Sources {
    /// Loads the embedded default policy set.
    pub fn embedded_default() -> Result<Sources> {
        let mut sources = Sources::default();
        for (rel, text) in DEFAULT_POLICIES {
            let rel = Path::new(rel);
            let id = format!("{DEFAULT_ROOT}/{}", rel.display());
            sources.add_file(&id, rel, text, &dir_prefix(rel))?;
        }
        Ok(sources)
    }

    /// The data document as a regorus value.
    pub fn data_value(&self) -> Result<regorus::Value> {
        let text = serde_json::to_string(&self.data).context("serializing data")?;
        regorus::Value::from_json_str(&text).context("converting data")
    }

    /// A plain interpreter over every module and the data, as written (no
    /// import resolution, no fast path): for `regent eval` and for tests that
    /// run as written. Built-in errors are non-strict, as in OPA.
    pub fn interpreter(&self) -> Result<regorus::Engine> {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        for m in &self.modules {
            regorus::Source::from_contents(m.id.clone(), m.text.clone())
                .and_then(|source| super::nesting::parse_module(&source))
                .map_err(|e| anyhow!("{}", super::Diagnostic::from_regorus(&e)))?;
            engine
                .add_policy(m.id.clone(), m.text.clone())
                .map_err(|e| anyhow!("{}", super::Diagnostic::from_regorus(&e)))?;
        }
        engine.add_data(self.data_value()?)?;
        // A rule that depends on itself would overflow the stack.
        let names = super::rule_index::rule_names(&mut engine);
        if let Some((message, at)) =
            super::recursion::Dependencies::of(&mut engine, &names).first_problem()
        {
            return Err(anyhow!(
                "{}",
                super::Diagnostic::from_regorus(&at.compile_error(&message))
            ));
        }
        Ok(engine)
    }

    /// Loads positional paths as `opa run` does: files and directories, with an
    /// optional `a.b:path` prefix that places the contents under `data.a.b`.
    pub fn load_paths<S: AsRef<str>>(paths: &[S]) -> Result<Sources> {
        Sources::load_paths_ignoring(paths, &Ignore::default())
    }

    /// [`Self::load_paths`], leaving out what `ignore` names (`--ignore`).
    pub fn load_paths_ignoring<S: AsRef<str>>(paths: &[S], ignore: &Ignore) -> Result<Sources> {
        let mut sources = Sources::default();
        for arg in paths {
            let (prefix, path) = split_prefix(arg.as_ref());
            sources.load_path(&prefix, Path::new(path), ignore)?;
        }
        Ok(sources)
    }

    fn load_path(&mut self, prefix: &[String], path: &Path, ignore: &Ignore) -> Result<()> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if meta.is_dir() {
            // Hidden entries are always skipped, as with OPA's `--ignore=.*`:
            // a mounted Kubernetes ConfigMap holds each file three times
            // (`..data/`, `..<timestamp>/` and the top-level symlink).
            let mut files = crate::walk::files(path, |name| ignore.skips(name))?;
            files.sort();
            for file in files {
                let rel = file.strip_prefix(path).unwrap_or(&file);
                if !has_known_extension(rel) {
                    continue;
                }
                let mut file_prefix = prefix.to_vec();
                file_prefix.extend(dir_prefix(rel));
                self.load_file(&file, &file_prefix)?;
            }
            Ok(())
        } else {
            self.load_file(path, prefix)
        }
    }

    fn load_file(&mut self, path: &Path, prefix: &[String]) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let id = path.to_string_lossy().trim_matches('/').to_string();
        self.add_file(&id, path, &text, prefix)
    }

    /// Adds one file's contents: Rego as a module, JSON/YAML merged into data.
    fn add_file(&mut self, id: &str, path: &Path, text: &str, prefix: &[String]) -> Result<()> {
        match extension(path).as_deref() {
            Some("rego") => {
                self.modules.push(Module {
                    id: id.to_string(),
                    text: text.to_string(),
                });
                Ok(())
            }
            Some("json") => {
                // Read as OPA's loader (Go's decoder) reads it.
                let text = crate::go_json::go_escapes(text);
                let doc: Json = serde_json::from_str(&text).map_err(|e| anyhow!("{id}: {e}"))?;
                self.merge_data(id, prefix, doc)
            }
            Some("yaml") | Some("yml") => {
                let doc = regorus::Value::from_yaml_str(text).map_err(|e| anyhow!("{id}: {e}"))?;
                let doc = serde_json::to_value(&doc).map_err(|e| anyhow!("{id}: {e}"))?;
                self.merge_data(id, prefix, doc)
            }
            _ => bail!("{id}: can't recognize file type"),
        }
    }

    /// Merges `doc` at `prefix` into the data document. As in OPA, the same
    /// key defined twice by non-object values is a merge error, even when equal.
    pub fn merge_data(&mut self, id: &str, prefix: &[String], doc: Json) -> Result<()> {
        let mut doc = doc;
        for key in prefix.iter().rev() {
            let mut wrapper = Map::new();
            wrapper.insert(key.clone(), doc);
            doc = Json::Object(wrapper);
        }
        let Json::Object(doc) = doc else {
            bail!("{id}: document must be of type object");
        };
        merge_objects(&mut self.data, doc).map_err(|()| anyhow!("{id}: merge error"))
    }
}

fn merge_objects(into: &mut Map<String, Json>, from: Map<String, Json>) -> Result<(), ()> {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (None, value) => {
                into.insert(key, value);
            }
            (Some(Json::Object(existing)), Json::Object(value)) => merge_objects(existing, value)?,
            (Some(_), _) => return Err(()),
        }
    }
    Ok(())
}

/// Splits OPA's `a.b:path` prefix syntax (a `://` is not a prefix separator).
fn split_prefix(arg: &str) -> (Vec<String>, &str) {
    match arg.split_once(':') {
        Some((prefix, path)) if !path.starts_with("//") && !prefix.is_empty() => (
            prefix
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            path,
        ),
        _ => (Vec::new(), arg),
    }
}

/// The data path of a file relative to its root: its directory components.
fn dir_prefix(rel: &Path) -> Vec<String> {
    rel.parent()
        .map(|dir| {
            dir.components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn has_known_extension(path: &Path) -> bool {
    matches!(
        extension(path).as_deref(),
        Some("rego" | "json" | "yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_syntax_is_split_but_urls_are_not() {
        assert_eq!(
            split_prefix("a.b:x.json"),
            (vec!["a".into(), "b".into()], "x.json")
        );
        assert_eq!(split_prefix("x.json"), (vec![], "x.json"));
        assert_eq!(split_prefix("http://x"), (vec![], "http://x"));
    }

    #[test]
    fn equal_values_at_the_same_key_are_a_merge_error() {
        let mut s = Sources::default();
        s.merge_data("a.json", &[], serde_json::json!({"x": {"y": 1}}))
            .unwrap();
        s.merge_data("b.json", &[], serde_json::json!({"x": {"z": 2}}))
            .unwrap();
        let err = s.merge_data("c.json", &[], serde_json::json!({"x": {"y": 1}}));
        assert_eq!(err.unwrap_err().to_string(), "c.json: merge error");
        assert_eq!(s.data["x"], serde_json::json!({"y": 1, "z": 2}));
    }

    #[test]
    fn root_documents_must_be_objects() {
        let mut s = Sources::default();
        let err = s
            .merge_data("a.json", &[], serde_json::json!([1]))
            .unwrap_err();
        assert_eq!(err.to_string(), "a.json: document must be of type object");
        s.merge_data("b.json", &["k".into()], serde_json::json!([1]))
            .unwrap();
        assert_eq!(s.data["k"], serde_json::json!([1]));
    }
}
