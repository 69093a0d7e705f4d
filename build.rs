//! Embeds the default policy set: writes `$OUT_DIR/default_policies.rs`, a
//! table of `(path, contents)` for every `.rego`, `.json`, `.yaml` and `.yml`
//! file under `policies/`, leaving out the generated tests (`tests/`,
//! `*_test.rego`) and the decision tables, which are for `regent test`, not
//! for serving. Cargo reruns this whenever anything under `policies/` changes.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=policies");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut out = String::from("/// The embedded default policy set: (path under `policies/`, contents).\npub static DEFAULT_POLICIES: &[(&str, &str)] = &[\n");
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        let first = rel_text.split('/').next().unwrap_or_default();
        let known = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("rego" | "json" | "yaml" | "yml")
        );
        if !known || matches!(first, "tests" | "tables") || rel_text.ends_with("_test.rego") {
            continue;
        }
        out.push_str(&format!(
            "    ({rel_text:?}, include_str!({:?})),\n",
            file.to_string_lossy()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("default_policies.rs");
    if let Err(err) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {err}", dest.display());
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}
