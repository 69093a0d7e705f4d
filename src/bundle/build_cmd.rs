//! `regent build`: merges bundle directories (or tarballs) into one
//! `.tar.gz` bundle, as `opa build -b` does: one `/data.json` with all data,
//! the modules at their paths, a `.manifest` (revision, roots,
//! rego_version 1, metadata) and, with `--signing-key`, a `.signatures.json`
//! over every file. The result is read back and compiled before it is
//! written, so a bundle that builds is one that activates.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value as Json};

use super::archive::{self, DEFAULT_SIZE_LIMIT};
use super::signing::{self, SigningKey};
use super::{roots_overlap, segments, Bundle, BundleFile, Manifest};
use crate::cli::BuildArgs;
use crate::policy::{Snapshot, Sources};

/// Runs `regent build`.
pub fn run(args: &BuildArgs) -> Result<()> {
    let inputs: Vec<&String> = args.bundles.iter().chain(&args.paths).collect();
    if inputs.is_empty() {
        bail!("`regent build` needs at least one bundle directory (`-b DIR`)");
    }
    let signing = match &args.signing_key {
        Some(key) => Some(SigningKey {
            key: signing::key_text(key)?,
            algorithm: signing::parse_algorithm(&args.signing_alg)?,
            keyid: args.verification_key_id.clone(),
        }),
        None => None,
    };
    let mut inputs_files = Vec::new();
    for input in inputs {
        let files = archive::read_path(std::path::Path::new(input), DEFAULT_SIZE_LIMIT)?;
        inputs_files.push((input.clone(), files));
    }
    let bytes = build(inputs_files, args.revision.as_deref(), signing.as_ref())?;
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("{}: cannot write", args.output.display()))?;
    Ok(())
}

/// Builds the tarball bytes from the files of each input bundle.
pub fn build(
    inputs: Vec<(String, Vec<BundleFile>)>,
    revision: Option<&str>,
    signing: Option<&SigningKey>,
) -> Result<Vec<u8>> {
    // Each input is checked as a bundle of its own first (roots, data).
    let mut checked = Vec::with_capacity(inputs.len());
    for (input, files) in inputs {
        let bundle = Bundle::from_files(&input, files.clone(), None)
            .with_context(|| format!("bundle {input}"))?;
        checked.push((input, files, bundle));
    }
    if let [(_, _, bundle)] = checked.as_mut_slice() {
        if let Some(patch) = bundle.patch.take() {
            return build_delta(
                std::mem::take(&mut bundle.manifest),
                &patch,
                revision,
                signing,
            );
        }
    }
    let mut manifest = Manifest::default();
    let mut roots: Vec<String> = Vec::new();
    let mut any_roots = false;
    let mut metadata = Map::new();
    let mut modules: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut data = Sources::default();
    for (input, files, bundle) in checked {
        if bundle.patch.is_some() {
            bail!("bundle merge failed: delta bundle {input} cannot be merged with other bundles");
        }
        if let Some(input_roots) = &bundle.manifest.roots {
            any_roots = true;
            roots.extend(input_roots.iter().cloned());
        } else {
            roots.push(String::new());
        }
        if manifest.revision.is_empty() {
            manifest.revision = bundle.manifest.revision.clone();
        }
        metadata.extend(bundle.manifest.metadata.clone().unwrap_or_default());
        data.merge_data(&input, &[], Json::Object(bundle.data))?;
        for file in files {
            if file.name.ends_with(".rego")
                && modules.insert(file.name.clone(), file.bytes).is_some()
            {
                bail!(
                    "bundle merge failed: module {} appears in two bundles",
                    file.name
                );
            }
        }
    }
    for (i, a) in roots.iter().enumerate() {
        for b in &roots[i + 1..] {
            if roots_overlap(&segments(a), &segments(b)) {
                bail!("bundle merge failed: manifest has overlapped roots: '{a}' and '{b}'");
            }
        }
    }
    if let Some(revision) = revision {
        manifest.revision = revision.to_string();
    }
    manifest.roots = Some(if any_roots {
        roots
    } else {
        vec![String::new()]
    });
    manifest.rego_version = Some(1);
    manifest.metadata = (!metadata.is_empty()).then_some(metadata);

    let mut files = vec![BundleFile {
        name: "data.json".into(),
        bytes: serde_json::to_vec(&data.data)?,
    }];
    files.extend(
        modules
            .into_iter()
            .map(|(name, bytes)| BundleFile { name, bytes }),
    );
    let manifest_file = BundleFile {
        name: ".manifest".into(),
        bytes: serde_json::to_vec(&manifest)?,
    };
    if let Some(key) = signing {
        let mut signed = files.clone();
        signed.push(manifest_file.clone());
        files.push(BundleFile {
            name: ".signatures.json".into(),
            bytes: signing::sign(&signed, key)?,
        });
    }
    files.push(manifest_file);

    // Read the result back as a server would, and compile it.
    let unsigned: Vec<BundleFile> = files
        .iter()
        .filter(|f| f.name != ".signatures.json")
        .cloned()
        .collect();
    let bundle = Bundle::from_files("build", unsigned, None)?;
    Snapshot::build(Sources {
        modules: bundle.modules,
        data: bundle.data,
        revisions: Default::default(),
    })
    .map_err(|e| anyhow!("{e:#}"))?;
    archive::write_tarball(&files)
}

/// A delta bundle, as OPA writes one: its `patch.json` and `.manifest`
/// (signed when a key is given: Regent verifies deltas as it does snapshots).
fn build_delta(
    mut manifest: Manifest,
    patch: &[super::delta::PatchOperation],
    revision: Option<&str>,
    signing: Option<&SigningKey>,
) -> Result<Vec<u8>> {
    if let Some(revision) = revision {
        manifest.revision = revision.to_string();
    }
    let mut files = vec![
        BundleFile::new("patch.json", super::delta::write(patch)?),
        BundleFile::new(".manifest", serde_json::to_vec(&manifest)?),
    ];
    if let Some(key) = signing {
        let signature = signing::sign(&files, key)?;
        files.push(BundleFile::new(".signatures.json", signature));
    }
    archive::write_tarball(&files)
}
