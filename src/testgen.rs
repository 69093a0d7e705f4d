//! `regent gen-tests`: generates `policies/tests/<package>_test.rego` from the
//! decision tables in `policies/tables/` (see `policies/README.md`).
//!
//! - [`csv`], [`table`], [`limit`]: reading a table.
//! - [`oracle`]: the README's reading, applied to an input document.
//! - [`input`]: input documents per package; [`cases`]: the enumeration.
//! - [`render`]: the Rego modules (split when a package outgrows one).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::cli::GenTestsArgs;

pub mod cases;
pub mod csv;
pub mod input;
pub mod limit;
pub mod oracle;
pub mod render;
pub mod table;

/// Every generated test module (file name, contents) for the tables in
/// `tables_dir`, sorted by file name.
pub fn generate(tables_dir: &Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for package in table_packages(tables_dir)? {
        let path = tables_dir.join(format!("{package}.csv"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let table = table::Table::parse(&package, &text)?;
        let cases = cases::cases(&table)?;
        files.extend(render::modules(&package, &cases)?);
    }
    files.sort();
    Ok(files)
}

/// The packages with a `<package>.csv` in `dir`, sorted.
fn table_packages(dir: &Path) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(package) = name.strip_suffix(".csv") {
            let valid = package.starts_with(|c: char| c.is_ascii_lowercase())
                && package
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                bail!("{name}: a table's name must be a Rego package name");
            }
            out.push(package.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Generated modules in `dir` that a fresh generation no longer writes.
pub fn stale_files(dir: &Path, files: &[(String, String)]) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_test.rego") && !files.iter().any(|(n, _)| *n == name) {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if text.starts_with(render::HEADER) {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes the generated files into `args.out` (removing generated ones no
/// longer produced), or with `--check` fails when the directory differs.
pub fn run(args: &GenTestsArgs) -> Result<()> {
    let files = generate(&args.tables)?;
    let stale = stale_files(&args.out, &files)?;
    if args.check {
        let mut differ: Vec<String> = files
            .iter()
            .filter(|(name, text)| {
                std::fs::read_to_string(args.out.join(name)).ok().as_ref() != Some(text)
            })
            .map(|(name, _)| name.clone())
            .collect();
        differ.extend(stale.iter().map(|n| format!("{n} (no longer generated)")));
        if !differ.is_empty() {
            bail!(
                "out of date in {}: {}; run `regent gen-tests`",
                args.out.display(),
                differ.join(", ")
            );
        }
        println!("{} test files up to date", files.len());
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    for name in &stale {
        let path = args.out.join(name);
        std::fs::remove_file(&path)
            .with_context(|| format!("{}: cannot remove", path.display()))?;
        println!("{}: removed", path.display());
    }
    for (name, text) in &files {
        let path = args.out.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        let tests = text.lines().filter(|l| l.starts_with("test_")).count();
        println!("{}: {tests} tests", path.display());
    }
    Ok(())
}
