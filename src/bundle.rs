//! OPA bundles as values. A bundle is a set of files (from a `.tar.gz` or a
//! directory, see [`archive`]) holding Rego modules anywhere, data documents
//! (`data.json`, `data.yaml`, `data.yml`) placed at their directory's path,
//! an optional `.manifest` (revision, roots, rego_version, metadata) and an
//! optional `.signatures.json` (see [`signing`]); or, for a delta bundle,
//! a `patch.json` of data operations and an optional `.manifest` (see
//! [`delta`]). [`Bundle::from_files`]
//! checks everything OPA checks — signature, roots, data shape — so a bundle
//! that exists as a value is one that can be activated.
//!
//! - [`archive`]: reading tarballs and directories safely, writing tarballs.
//! - [`signing`]: file hashes, signing and verifying `.signatures.json`;
//!   [`canonical`]: the canonical JSON form structured files are hashed in.
//! - [`build_cmd`]: `regent build`.
//! - [`configured`]: bundle sources from OPA configuration and flags.
//! - [`download`]: polling a service for a bundle ([`fetch`]: one HTTP GET); [`persist`]: keeping the
//!   last activated one on disk.

pub mod archive;
pub mod build_cmd;
pub mod canonical;
pub mod configured;
pub mod delta;
pub mod download;
pub mod fetch;
pub mod local;
pub mod persist;
pub mod signing;
pub mod status;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::policy::Module;

/// One file of a bundle: its path relative to the bundle root (no leading
/// `/`) and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl BundleFile {
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> BundleFile {
        BundleFile {
            name: name.into(),
            bytes: bytes.into(),
        }
    }

    /// The file's name without its directory (`a/b/data.json`: `data.json`).
    pub fn base_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }

    /// Whether it is a data document (placed at its directory's path).
    pub fn is_data(&self) -> bool {
        matches!(self.base_name(), "data.json" | "data.yaml" | "data.yml")
    }
}

/// The `.manifest` file. Unknown fields (`wasm`, `file_rego_versions`) are
/// ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rego_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Json>>,
}

impl Manifest {
    /// The roots as path segments; no `roots` means `[""]`, which owns all.
    pub fn root_paths(&self) -> Vec<Vec<String>> {
        match &self.roots {
            None => vec![Vec::new()],
            Some(roots) => roots.iter().map(|r| segments(r)).collect(),
        }
    }
}

/// A checked bundle, ready to activate.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub name: String,
    pub manifest: Manifest,
    /// Module ids are `<bundle name>/<file path>`.
    pub modules: Vec<Module>,
    pub data: Map<String, Json>,
    /// A delta bundle's operations (`patch.json` with at least one); `None`
    /// for a snapshot bundle.
    pub patch: Option<Vec<delta::PatchOperation>>,
    /// Whether activating it removes any other module whose package lies
    /// under its roots (OPA's `erasePolicies`): a snapshot does, and so does
    /// a delta applied on top of one; a delta on an empty store does not.
    pub erases_policies: bool,
}

impl Bundle {
    /// Builds a bundle from its files, verifying the signature when
    /// `verification` is given. Every check OPA makes at activation that does
    /// not need the other bundles happens here.
    pub fn from_files(
        name: &str,
        files: Vec<BundleFile>,
        verification: Option<&signing::Verification>,
    ) -> Result<Bundle> {
        let signatures = files
            .iter()
            .find(|f| f.name == ".signatures.json")
            .map(|f| f.bytes.clone());
        if let Some(verification) = verification {
            let signed: Vec<&BundleFile> = files
                .iter()
                .filter(|f| f.name != ".signatures.json")
                .collect();
            verification
                .verify(signatures.as_deref(), &signed)
                .context("bundle signature verification failed")?;
        } else if signatures.is_some() {
            bail!("bundle signature verification failed: verification key not provided");
        }
        let mut manifest = Manifest::default();
        let mut modules = Vec::new();
        let mut sources = crate::policy::Sources::default();
        for file in &files {
            let base = file.base_name();
            let dir = file.name.strip_suffix(base).unwrap_or("");
            if file.name == ".manifest" {
                manifest =
                    serde_json::from_slice(&file.bytes).map_err(|e| anyhow!(".manifest: {e}"))?;
            } else if base.ends_with(".rego") {
                let text = String::from_utf8(file.bytes.clone())
                    .map_err(|_| anyhow!("{}: not UTF-8", file.name))?;
                modules.push(Module {
                    id: format!("{}/{}", name.trim_end_matches('/'), file.name),
                    text,
                });
            } else if file.is_data() {
                let doc: Json = if base == "data.json" {
                    // Read as OPA's bundle reader (Go's decoder) reads it.
                    serde_json::from_str(&crate::go_json::go_text(&file.bytes))
                        .map_err(|e| anyhow!("{}: {e}", file.name))?
                } else {
                    yaml_serde::from_slice(&file.bytes)
                        .map_err(|e| anyhow!("{}: {e}", file.name))?
                };
                sources.merge_data(&file.name, &segments(dir), doc)?;
            }
            // Other files (wasm, plan.json, READMEs) are not Rego or data:
            // ignored, as OPA's reader does for unknown names.
        }
        if let Some(version) = manifest.rego_version {
            if version != 1 {
                bail!(".manifest: rego_version {version} is not supported (Regent reads Rego v1 only)");
            }
        }
        let roots = manifest.root_paths();
        check_overlap_within(&manifest)?;
        if let Some(patch) = delta_patch(&files, &roots, &manifest)? {
            return Ok(Bundle {
                name: name.to_string(),
                manifest,
                modules: Vec::new(),
                data: Map::new(),
                patch: Some(patch),
                erases_policies: false,
            });
        }
        check_data_roots(&roots, &sources.data, &mut Vec::new(), &manifest)?;
        for module in &modules {
            // A module that does not parse is reported by the compile at
            // activation, with OPA's `rego_parse_error` and its location.
            let Ok(package) = crate::policy::module_package(&module.id, &module.text) else {
                continue;
            };
            if !roots.iter().any(|root| package.starts_with(root)) {
                bail!(
                    "manifest roots {} do not permit 'data.{}' in module '{}'",
                    roots_display(&manifest),
                    package.join("."),
                    module.id
                );
            }
        }
        Ok(Bundle {
            name: name.to_string(),
            manifest,
            modules,
            data: sources.data,
            patch: None,
            erases_policies: true,
        })
    }

    /// `"delta"` or `"snapshot"`, as OPA's bundle status names the type.
    pub fn kind(&self) -> &'static str {
        if self.patch.is_some() {
            "delta"
        } else {
            "snapshot"
        }
    }

    /// The manifest's roots as segments.
    pub fn roots(&self) -> Vec<Vec<String>> {
        self.manifest.root_paths()
    }

    /// The revision to report: the manifest's, else `fallback` (the ETag).
    pub fn revision_or(&self, fallback: Option<&str>) -> String {
        if self.manifest.revision.is_empty() {
            fallback.unwrap_or_default().to_string()
        } else {
            self.manifest.revision.clone()
        }
    }
}

/// Whether two roots overlap (one is a prefix of the other).
pub fn roots_overlap(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn check_overlap_within(manifest: &Manifest) -> Result<()> {
    let Some(roots) = &manifest.roots else {
        return Ok(());
    };
    for (i, a) in roots.iter().enumerate() {
        for b in &roots[i + 1..] {
            if roots_overlap(&segments(a), &segments(b)) {
                bail!("manifest has overlapped roots: '{a}' and '{b}'");
            }
        }
    }
    Ok(())
}

/// Every data path must sit under a root (or be an object on the way to one).
fn check_data_roots(
    roots: &[Vec<String>],
    data: &Map<String, Json>,
    at: &mut Vec<String>,
    manifest: &Manifest,
) -> Result<()> {
    for (key, value) in data {
        at.push(key.clone());
        if !roots.iter().any(|root| at.starts_with(root)) {
            match value {
                Json::Object(inner) if roots.iter().any(|root| root.starts_with(at)) => {
                    check_data_roots(roots, inner, at, manifest)?;
                }
                _ => bail!(
                    "manifest roots {} do not permit data at path '/{}' (hint: check bundle directory structure)",
                    roots_display(manifest),
                    at.join("/")
                ),
            }
        }
        at.pop();
    }
    Ok(())
}

/// A delta bundle's operations, when `patch.json` holds any: as OPA, such a
/// bundle may hold nothing else but its `.manifest` (and signatures), and
/// every operation's path lies under its roots. An empty list is a
/// snapshot bundle (which replaces the data under its roots).
fn delta_patch(
    files: &[BundleFile],
    roots: &[Vec<String>],
    manifest: &Manifest,
) -> Result<Option<Vec<delta::PatchOperation>>> {
    // As OPA: the operations of every `patch.json`, in the bundle's order.
    let mut ops = Vec::new();
    for file in files.iter().filter(|f| f.base_name() == "patch.json") {
        ops.extend(delta::parse(&file.bytes)?);
    }
    if ops.is_empty() {
        return Ok(None);
    }
    for (kind, found) in [
        ("data", files.iter().any(BundleFile::is_data)),
        (
            "policy",
            files.iter().any(|f| f.base_name().ends_with(".rego")),
        ),
        (
            "wasm",
            files.iter().any(|f| f.base_name().ends_with(".wasm")),
        ),
    ] {
        if found {
            bail!("delta bundle expected to contain only patch file but {kind} files found");
        }
    }
    for op in &ops {
        // As OPA's `RootPathsContain`, on the path as written (empty
        // segments count); and on the path the operation will change.
        let path = op.path.trim_matches('/');
        let raw: Vec<String> = path.split('/').map(str::to_string).collect();
        let unescaped = delta::path_segments(&op.path)?;
        let under = |p: &[String]| roots.iter().any(|root| p.starts_with(root));
        if !(under(&raw) && under(&unescaped)) {
            bail!(
                "manifest roots {} do not permit data patch at path '{path}'",
                roots_display(manifest)
            );
        }
    }
    Ok(Some(ops))
}

fn roots_display(manifest: &Manifest) -> String {
    format!("[{}]", manifest.roots.clone().unwrap_or_default().join(" "))
}

/// `a/b` (or `/a/b/`) as `["a", "b"]`; `""` is the empty path.
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> BundleFile {
        BundleFile::new(name, text)
    }

    #[test]
    fn data_sits_at_its_directory_and_modules_are_named_after_the_bundle() {
        let bundle = Bundle::from_files(
            "b",
            vec![
                file("rules/a.rego", "package a\nallow := true\n"),
                file("x/y/data.json", r#"{"k": 1}"#),
                file("x/data.yaml", "z: 2\n"),
                file("README.md", "ignored"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(bundle.modules[0].id, "b/rules/a.rego");
        assert_eq!(
            Json::Object(bundle.data.clone()),
            serde_json::json!({"x": {"y": {"k": 1}, "z": 2}})
        );
        assert_eq!(bundle.roots(), vec![Vec::<String>::new()]);
    }

    #[test]
    fn delta_bundles_hold_only_their_patch_under_their_roots() {
        let manifest = file(".manifest", r#"{"revision": "d1", "roots": ["a"]}"#);
        let patch = file(
            "patch.json",
            r#"{"data": [{"op": "upsert", "path": "/a/x", "value": 1}]}"#,
        );
        let delta = Bundle::from_files("b", vec![manifest.clone(), patch.clone()], None).unwrap();
        assert_eq!(delta.kind(), "delta");
        assert_eq!(delta.patch.as_ref().map(Vec::len), Some(1));
        assert_eq!(delta.manifest.revision, "d1");
        for (extra, kind) in [
            (file("p.rego", "package a\n"), "policy"),
            (file("a/data.json", "{}"), "data"),
            (file("policy.wasm", ""), "wasm"),
        ] {
            let err = Bundle::from_files("b", vec![manifest.clone(), patch.clone(), extra], None)
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("delta bundle expected to contain only patch file but {kind} files found")
            );
        }
        let outside = file(
            "patch.json",
            r#"{"data": [{"op": "remove", "path": "/ab/x"}]}"#,
        );
        let err = Bundle::from_files("b", vec![manifest.clone(), outside], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest roots [a] do not permit data patch at path 'ab/x'"
        );
        // As OPA: `//` is an empty segment, so `a//b/x` is not under `a/b`.
        let nested = file(".manifest", r#"{"roots": ["a/b"]}"#);
        let sneaky = file(
            "patch.json",
            r#"{"data": [{"op": "upsert", "path": "/a//b/x", "value": 1}]}"#,
        );
        let err = Bundle::from_files("b", vec![nested, sneaky], None).unwrap_err();
        assert!(err
            .to_string()
            .contains("do not permit data patch at path 'a//b/x'"));
        // The operations of every patch.json count, in order.
        let more = file(
            "x/patch.json",
            r#"{"data": [{"op": "remove", "path": "/a/y"}]}"#,
        );
        let empty_first = file("patch.json", r#"{"data": []}"#);
        let both =
            Bundle::from_files("b", vec![manifest.clone(), empty_first, more], None).unwrap();
        assert_eq!(both.kind(), "delta");
        assert_eq!(both.patch.as_ref().map(Vec::len), Some(1));
        // No operations: a snapshot (of no data), as OPA reads it.
        let empty = Bundle::from_files(
            "b",
            vec![manifest, file("patch.json", r#"{"data": []}"#)],
            None,
        )
        .unwrap();
        assert_eq!(empty.kind(), "snapshot");
        assert!(empty.data.is_empty());
    }

    #[test]
    fn roots_bound_modules_and_data() {
        let manifest = file(".manifest", r#"{"revision": "r1", "roots": ["a"]}"#);
        let ok = Bundle::from_files(
            "b",
            vec![
                manifest.clone(),
                file("p.rego", "package a.p\nx := 1\n"),
                file("a/data.json", "{}"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(ok.revision_or(Some("etag")), "r1");
        let err = Bundle::from_files(
            "b",
            vec![manifest.clone(), file("p.rego", "package other\nx := 1\n")],
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("do not permit 'data.other'"),
            "{err}"
        );
        let err =
            Bundle::from_files("b", vec![manifest, file("x/data.json", "{}")], None).unwrap_err();
        assert!(err.to_string().contains("data at path '/x'"), "{err}");
        let err = Bundle::from_files(
            "b",
            vec![file(".manifest", r#"{"roots": ["a", "a/b"]}"#)],
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest has overlapped roots: 'a' and 'a/b'"
        );
    }

    #[test]
    fn a_signature_without_a_key_and_rego_v0_are_refused() {
        let err = Bundle::from_files("b", vec![file(".signatures.json", "{}")], None).unwrap_err();
        assert!(err.to_string().contains("verification key not provided"));
        let err = Bundle::from_files("b", vec![file(".manifest", r#"{"rego_version": 0}"#)], None)
            .unwrap_err();
        assert!(err.to_string().contains("rego_version 0"));
    }
}
