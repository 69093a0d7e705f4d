//! Bundle files from a gzip'd tarball or a directory, and back to a tarball.
//!
//! Reading a tarball is bounded: as OPA, no file may hold more than
//! `size_limit_bytes`; and the whole bundle, compressed or not, no more
//! than that or OPA's default (1 GiB), whichever is larger, counted while
//! decompressing, so that a gzip bomb of many small files stops there
//! instead of filling memory (OPA has no such bound). Links, devices and
//! FIFOs are skipped; names with `..` components and duplicate names are
//! errors. A leading `/` is how `opa build` names every
//! entry (`/data.json`), so it means the bundle root, never the host's root:
//! nothing here writes an entry to disk.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use tar::EntryType;

use super::BundleFile;
use crate::policy::path::MAX_PATH_SEGMENTS;

/// OPA's default `size_limit_bytes` (1 GiB).
pub const DEFAULT_SIZE_LIMIT: u64 = 1 << 30;

/// The most bytes a whole bundle may hold, compressed or uncompressed, when
/// each file may hold `size_limit`.
pub fn total_limit(size_limit: u64) -> u64 {
    size_limit.max(DEFAULT_SIZE_LIMIT)
}

/// Reads a bundle from disk: a directory, or a `.tar.gz` file.
pub fn read_path(path: &Path, size_limit: u64) -> Result<Vec<BundleFile>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        read_dir(path)
    } else {
        let total = total_limit(size_limit);
        if meta.len() > total {
            bail!(
                "{}: bundle of {} bytes exceeds the size limit of {total} bytes",
                path.display(),
                meta.len()
            );
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        read_tarball(&bytes, size_limit).with_context(|| format!("{}", path.display()))
    }
}

/// Reads a gzip'd tarball whose files may hold `size_limit` bytes each
/// (the whole: [`total_limit`]).
pub fn read_tarball(bytes: &[u8], size_limit: u64) -> Result<Vec<BundleFile>> {
    read_tarball_within(bytes, size_limit, total_limit(size_limit))
}

/// [`read_tarball`] with the bound on the whole given.
fn read_tarball_within(bytes: &[u8], size_limit: u64, total: u64) -> Result<Vec<BundleFile>> {
    if bytes.len() as u64 > total {
        bail!(
            "bundle of {} bytes exceeds the size limit of {total} bytes",
            bytes.len()
        );
    }
    let exceeded = Arc::new(AtomicBool::new(false));
    let reader = Bounded {
        inner: flate2::read::GzDecoder::new(bytes),
        left: total,
        exceeded: exceeded.clone(),
    };
    let too_big = || anyhow!("bundle exceeds the size limit of {total} bytes uncompressed");
    let mut archive = tar::Archive::new(reader);
    let mut files: Vec<BundleFile> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let entries = archive.entries().context("reading the bundle archive")?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(_) if exceeded.load(Ordering::Relaxed) => return Err(too_big()),
            Err(err) => return Err(anyhow!("reading the bundle archive: {err}")),
        };
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).to_string();
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => {}
            // As OPA's tarball loader: only regular files are read; links,
            // devices and FIFOs are skipped (nothing is written to disk, so
            // a link could not point anywhere anyway).
            other => {
                tracing::debug!(entry = %raw_name, kind = ?other, "skipped a bundle entry that is not a regular file");
                continue;
            }
        }
        let name = clean_name(&raw_name)?;
        if entry.size() > size_limit {
            // OPA's words.
            bail!(
                "bundle file '{name}' size ({} bytes) exceeded max size ({size_limit} bytes)",
                entry.size()
            );
        }
        let mut bytes = Vec::new();
        if let Err(err) = entry.read_to_end(&mut bytes) {
            if exceeded.load(Ordering::Relaxed) {
                return Err(too_big());
            }
            bail!("reading bundle entry '{raw_name}': {err}");
        }
        if name.is_empty() {
            continue;
        }
        if !names.insert(name.clone()) {
            bail!("bundle entry '{name}' appears twice");
        }
        files.push(BundleFile { name, bytes });
    }
    if exceeded.load(Ordering::Relaxed) {
        return Err(too_big());
    }
    Ok(files)
}

/// The bundle-relative name of an archive entry: `/`, `./` and empty
/// components dropped; `..`, backslashes and NUL refused.
fn clean_name(raw: &str) -> Result<String> {
    if raw.contains('\\') || raw.contains('\0') {
        bail!("bundle entry '{raw}' has an invalid name: refused");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("bundle entry '{raw}' leaves the bundle root (`..`): refused"),
            part => parts.push(part),
        }
    }
    if parts.len() > MAX_PATH_SEGMENTS {
        bail!("bundle entry '{raw}' is nested more than {MAX_PATH_SEGMENTS} levels deep: refused");
    }
    Ok(parts.join("/"))
}

/// A reader that fails once more than `left` bytes came through.
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: Arc<AtomicBool>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("bundle size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a bundle directory: every file, dot files (`.manifest`,
/// `.signatures.json`) included, except entries starting with `..` (the
/// copies a mounted Kubernetes ConfigMap keeps).
pub fn read_dir(root: &Path) -> Result<Vec<BundleFile>> {
    let mut files = Vec::new();
    for path in crate::walk::files(root, |name| name.starts_with(".."))? {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join("/");
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        files.push(BundleFile { name, bytes });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Writes `files` as a gzip'd tarball with fixed modes and times, so the same
/// files always give the same bytes.
pub fn write_tarball(files: &[BundleFile]) -> Result<Vec<u8>> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(EntryType::Regular);
        builder
            .append_data(&mut header, &file.name, file.bytes.as_slice())
            .with_context(|| format!("writing {}", file.name))?;
    }
    let encoder = builder.into_inner().context("writing the bundle")?;
    encoder.finish().context("writing the bundle")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tarball(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for (name, kind, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // Written raw: `append_data` refuses the names under test.
            let field = &mut header.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            if *kind == EntryType::Symlink {
                header.set_link_name("target").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn opa_style_names_are_bundle_relative() {
        let bytes = tarball(&[
            ("/data.json", EntryType::Regular, b"{}"),
            ("./rules/a.rego", EntryType::Regular, b"package a"),
            ("rules/", EntryType::Directory, b""),
        ]);
        let files = read_tarball(&bytes, 1 << 20).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["data.json", "rules/a.rego"]);
    }

    #[test]
    fn names_deeper_than_the_path_bound_are_refused() {
        let name = |levels: usize| format!("{}data.json", "a/".repeat(levels - 1));
        assert!(clean_name(&name(MAX_PATH_SEGMENTS)).is_ok());
        let err = clean_name(&name(MAX_PATH_SEGMENTS + 1)).unwrap_err();
        assert!(err.to_string().contains("nested more than 128"), "{err}");
    }

    #[test]
    fn escapes_are_refused() {
        for name in ["../x.rego", "a/../../x.rego"] {
            let bytes = tarball(&[(name, EntryType::Regular, b"")]);
            let err = read_tarball(&bytes, 1 << 20).unwrap_err().to_string();
            assert!(err.contains("`..`"), "{name}: {err}");
        }
    }

    #[test]
    fn links_devices_and_fifos_are_skipped_as_opa_skips_them() {
        let bytes = tarball(&[
            ("link.rego", EntryType::Symlink, b""),
            ("hard.rego", EntryType::Link, b""),
            ("dev", EntryType::Char, b""),
            ("fifo", EntryType::Fifo, b""),
            ("a.rego", EntryType::Regular, b"package a"),
        ]);
        let files = read_tarball(&bytes, 1 << 20).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.rego"]);
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        // 64 MiB of zeros compresses to ~64 KiB.
        let zeros = vec![0u8; 64 << 20];
        let bytes = tarball(&[("data.json", EntryType::Regular, &zeros)]);
        assert!(bytes.len() < 1 << 20);
        let err = read_tarball(&bytes, 1 << 20).unwrap_err().to_string();
        assert_eq!(
            err,
            "bundle file 'data.json' size (67108864 bytes) exceeded max size (1048576 bytes)"
        );
        // Many files, each within the per-file limit: the bound on the whole.
        let small = vec![0u8; 1 << 20];
        let many: Vec<(String, EntryType, &[u8])> = (0..64)
            .map(|i| (format!("d{i}/data.json"), EntryType::Regular, &small[..]))
            .collect();
        let many: Vec<(&str, EntryType, &[u8])> =
            many.iter().map(|(n, t, b)| (n.as_str(), *t, *b)).collect();
        let bytes = tarball(&many);
        let err = read_tarball_within(&bytes, 1 << 20, 8 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exceeds the size limit of 8388608 bytes uncompressed"),
            "{err}"
        );
    }

    /// As OPA, `size_limit_bytes` bounds each file: a bundle larger than it,
    /// of files that each fit, loads.
    #[test]
    fn the_size_limit_holds_per_file() {
        let part = vec![b' '; 800];
        let bytes = tarball(&[
            ("a.json", EntryType::Regular, &part),
            ("b/a.json", EntryType::Regular, &part),
            ("c/a.json", EntryType::Regular, &part),
        ]);
        assert_eq!(read_tarball(&bytes, 1024).unwrap().len(), 3);
    }

    #[test]
    fn not_gzip_and_duplicates_are_errors() {
        assert!(read_tarball(b"not a tarball", 1 << 20).is_err());
        let bytes = tarball(&[
            ("a.rego", EntryType::Regular, b"x"),
            ("/a.rego", EntryType::Regular, b"y"),
        ]);
        let err = read_tarball(&bytes, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn written_tarballs_read_back() {
        let files = vec![
            BundleFile {
                name: "rules/a.rego".into(),
                bytes: b"package a".to_vec(),
            },
            BundleFile {
                name: ".manifest".into(),
                bytes: b"{}".to_vec(),
            },
        ];
        let bytes = write_tarball(&files).unwrap();
        assert_eq!(read_tarball(&bytes, 1 << 20).unwrap(), files);
        assert_eq!(write_tarball(&files).unwrap(), bytes);
    }
}
