//! The immutable policy snapshot: modules, data, a warmed evaluator and a
//! revision id. Requests read the current snapshot through [`SnapshotHandle`]
//! (an `ArcSwap`), so loading never blocks a decision: a new snapshot is built
//! off the request path and swapped in whole.

pub mod calls;
mod conflicts;
pub mod data_write;
pub mod diagnostic;
pub mod eval;
pub mod fast;
pub mod fold;
pub mod nesting;
pub mod path;
pub mod purity;
pub mod recursion;
pub mod resolve;
pub mod rule_index;
pub mod source;
pub mod store;
pub mod watch;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

pub use diagnostic::Diagnostic;
pub use eval::{EvalError, EvalErrorCode, EvalOptions, Evaluator, Location, Outcome, QueryError};
pub use path::DataPath;
pub use source::{Module, Sources};

/// One complete, compiled policy set. Never mutated after [`Snapshot::build`].
pub struct Snapshot {
    revision: String,
    digest: [u8; 32],
    modules: Vec<Module>,
    /// The active bundles' revisions, by bundle name.
    bundles: std::collections::BTreeMap<String, String>,
    evaluator: Evaluator,
    activated_at: SystemTime,
}

impl Snapshot {
    /// Parses and compiles `sources` into a ready snapshot. Any parse or
    /// compile error fails the whole build; the caller keeps its old snapshot.
    pub fn build(sources: Sources) -> Result<Snapshot> {
        let digest = digest_of(&sources);
        let revision = bundle_revision(&sources)
            .unwrap_or_else(|| digest.iter().take(8).map(|b| format!("{b:02x}")).collect());
        let data = sources.data_value()?;
        let modules = sources
            .modules
            .iter()
            .map(|m| (m.id.as_str(), m.text.as_str()));
        // regorus runs policy code while compiling (constant folding
        // evaluates ground rules): a panic there fails this build, as an
        // error would, and the last good snapshot stays.
        let evaluator =
            eval::catch_panic(|| Evaluator::build(modules, data)).map_err(|message| {
                anyhow::anyhow!("regorus panicked while compiling the policies: {message}")
            })??;
        Ok(Snapshot {
            revision,
            digest,
            modules: sources.modules,
            bundles: sources.revisions,
            evaluator,
            activated_at: SystemTime::now(),
        })
    }

    /// The content hash of the modules and data this snapshot was built from.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The full content hash (the revision is its first 8 bytes): the
    /// decision cache keys on it, so a new revision never sees old answers.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// Whether answers for `path` may be cached; see [`eval::RuleIndex::cacheable`].
    pub fn cacheable(&self, path: &DataPath) -> bool {
        self.evaluator.rules().cacheable(path)
    }

    /// The active bundles' revisions (empty when a bundle has none), by name.
    pub fn bundle_revisions(&self) -> &std::collections::BTreeMap<String, String> {
        &self.bundles
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn module(&self, id: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.id == id)
    }

    pub fn activated_at(&self) -> SystemTime {
        self.activated_at
    }

    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// Evaluates the document at `path`; see [`Evaluator::evaluate`].
    pub fn evaluate(
        &self,
        path: &DataPath,
        input: Option<regorus::Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        self.evaluator.evaluate(path, input, options)
    }
}

/// Whether `text` parses as a Rego module on its own.
pub fn parses(id: &str, text: &str) -> bool {
    regorus::Source::from_contents(id.to_string(), text.to_string())
        .and_then(|source| nesting::parse_module(&source))
        .is_ok()
}

/// With bundles active, the revision is theirs: the one bundle's revision,
/// or `name=revision` pairs for several. `None` without bundles or when the
/// bundles carry no revision (the content hash is used then).
fn bundle_revision(sources: &Sources) -> Option<String> {
    match sources.revisions.len() {
        0 => None,
        1 => sources
            .revisions
            .values()
            .next()
            .filter(|r| !r.is_empty())
            .cloned(),
        _ => Some(
            sources
                .revisions
                .iter()
                .map(|(name, rev)| format!("{name}={rev}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// The package of a module, as segments below `data`.
pub fn module_package(id: &str, text: &str) -> Result<Vec<String>> {
    let parsed = regorus::Source::from_contents(id.to_string(), text.to_string())
        .and_then(|source| nesting::parse_module(&source))
        .map_err(|e| anyhow::anyhow!("{}", Diagnostic::from_regorus(&e)))?;
    let mut segments = eval::ref_segments(&parsed.package.refr)
        .ok_or_else(|| anyhow::anyhow!("{id}: cannot read the package path"))?;
    if segments.first().map(String::as_str) == Some("data") {
        segments.remove(0);
    }
    Ok(segments)
}

/// A sha256 over every module id and text and the data document, so that the
/// same sources always give the same revision.
fn digest_of(sources: &Sources) -> [u8; 32] {
    let mut modules: Vec<&Module> = sources.modules.iter().collect();
    modules.sort_by(|a, b| a.id.cmp(&b.id));
    let mut hasher = Sha256::new();
    for module in modules {
        hasher.update((module.id.len() as u64).to_le_bytes());
        hasher.update(module.id.as_bytes());
        hasher.update((module.text.len() as u64).to_le_bytes());
        hasher.update(module.text.as_bytes());
    }
    // serde_json's map is ordered, so this is canonical.
    hasher.update(
        serde_json::to_string(&sources.data)
            .unwrap_or_default()
            .as_bytes(),
    );
    hasher.finalize().into()
}

/// The current snapshot, shared by every request. Readers never wait.
#[derive(Clone)]
pub struct SnapshotHandle {
    current: Arc<ArcSwap<Snapshot>>,
}

impl SnapshotHandle {
    pub fn new(snapshot: Snapshot) -> SnapshotHandle {
        SnapshotHandle {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }

    /// The snapshot to answer one request with.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Activates a new snapshot for all later requests.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}

/// The error of building `modules` as `file:row:col: message`, or `None`
/// when they build: for the load-time checks' unit tests.
#[cfg(test)]
pub(crate) fn refusal(modules: &[(&str, &str)]) -> Option<String> {
    Evaluator::build(modules.iter().copied(), regorus::Value::new_object())
        .err()
        .map(|e| Diagnostic::from_regorus(&e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> Sources {
        Sources {
            modules: vec![Module {
                id: "a.rego".into(),
                text: text.into(),
            }],
            data: Default::default(),
            revisions: Default::default(),
        }
    }

    #[test]
    fn revision_is_a_content_hash() {
        let a = Snapshot::build(sources("package a\nx := 1\n")).unwrap();
        let b = Snapshot::build(sources("package a\nx := 1\n")).unwrap();
        let c = Snapshot::build(sources("package a\nx := 2\n")).unwrap();
        assert_eq!(a.revision(), b.revision());
        assert_ne!(a.revision(), c.revision());
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let err = Snapshot::build(sources("package a\nx := \n"))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("a.rego:3"), "{err:#}");
    }
}
