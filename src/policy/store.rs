//! The write side of the policy state: the sources the current snapshot was
//! built from, the active bundles, and the one place that activates a new
//! snapshot. Writers (the policy and data API, file reloads, bundle
//! activations in `store/bundles.rs`) take the writer lock, build a complete
//! snapshot off the request path and swap it in whole; readers go through
//! [`SnapshotHandle`] and never wait. A build that fails changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::Result;
use bundles::apply_bundle;

use super::data_write::{self, DataWrite, DataWriteError};
use super::{Module, Snapshot, SnapshotHandle, Sources};
use crate::bundle::status::BundleStatuses;
use crate::bundle::Bundle;
use crate::cache::DecisionCache;
use crate::metrics::Metrics;

mod bundles;

/// What a write asked for, when it cannot be done.
#[derive(Debug)]
pub enum WriteError {
    /// No module has this id.
    NoSuchPolicy(String),
    /// The new sources do not parse or compile; the old snapshot stays.
    Build(anyhow::Error),
    /// A data write that cannot be applied.
    Data(DataWriteError),
}

/// Shared by the API and the loaders; cheap to clone.
#[derive(Clone)]
pub struct PolicyStore {
    snapshots: SnapshotHandle,
    sources: Arc<Mutex<Sources>>,
    /// Ids of modules written through the API: a file reload keeps them.
    api_ids: Arc<Mutex<HashSet<String>>>,
    last_error: Arc<Mutex<Option<LastError>>>,
    /// The active bundles by name: their roots are read-only for the APIs,
    /// and a file reload re-applies them. Locked before `sources`.
    bundles: Arc<Mutex<BTreeMap<String, Bundle>>>,
    statuses: BundleStatuses,
    cache: DecisionCache,
    metrics: Metrics,
}

/// The most recent failed activation, for operators (`GET /v1/status`).
#[derive(Clone, Debug)]
pub struct LastError {
    pub source: String,
    pub message: String,
    pub time: SystemTime,
}

impl PolicyStore {
    pub fn new(
        sources: Sources,
        snapshot: Snapshot,
        cache: DecisionCache,
        metrics: Metrics,
    ) -> PolicyStore {
        PolicyStore {
            snapshots: SnapshotHandle::new(snapshot),
            sources: Arc::new(Mutex::new(sources)),
            api_ids: Arc::default(),
            last_error: Arc::default(),
            bundles: Arc::default(),
            statuses: BundleStatuses::default(),
            cache,
            metrics,
        }
    }

    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// Each configured bundle's status.
    pub fn bundle_statuses(&self) -> &BundleStatuses {
        &self.statuses
    }

    /// The last failed activation, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Re-reads the loaded files (a `--watch` reload): their modules and the
    /// whole data document are replaced, as OPA does (data written through an
    /// API is lost on a file reload); modules written through the API stay.
    pub fn reload_files(
        &self,
        paths: &[String],
        ignore: &crate::walk::Ignore,
    ) -> Result<(), WriteError> {
        let files = match crate::run::load_sources(paths, ignore) {
            Ok(files) => files,
            Err(err) => {
                self.failed("watch", &err);
                return Err(WriteError::Build(err));
            }
        };
        let bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the bundles lock, which `put_policy` and `delete_policy`
        // hold until they have updated the ids: a module written through the
        // API just before this reload is kept.
        let api_ids = self
            .api_ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default();
        self.write("watch", move |sources| {
            let mut next = files;
            for module in &sources.modules {
                if api_ids.contains(&module.id) && !next.modules.iter().any(|m| m.id == module.id) {
                    next.modules.push(module.clone());
                }
            }
            for bundle in bundles.values() {
                let revision = sources
                    .revisions
                    .get(&bundle.name)
                    .cloned()
                    .unwrap_or_default();
                apply_bundle(&mut next, None, bundle, revision)?;
            }
            *sources = next;
            Ok(())
        })
    }

    /// `PUT /v1/policies/{id}`: adds or replaces module `id`. Blocking (it
    /// compiles): call it off the async workers.
    pub fn put_policy(&self, id: &str, text: &str) -> Result<(), WriteError> {
        let bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_policy_owner(&bundles, id, Some(text))?;
        self.write("api", |sources| {
            let module = Module {
                id: id.to_string(),
                text: text.to_string(),
            };
            match sources.modules.iter_mut().find(|m| m.id == id) {
                Some(existing) => *existing = module,
                None => sources.modules.push(module),
            }
            Ok(())
        })?;
        if let Ok(mut ids) = self.api_ids.lock() {
            ids.insert(id.to_string());
        }
        Ok(())
    }

    /// `PUT`/`PATCH`/`DELETE /v1/data/{path}`. The new data document is
    /// compiled with the modules like any other change. It lasts until the
    /// next file reload (`--watch`), which replaces the data document.
    pub fn write_data(&self, write: DataWrite) -> Result<(), WriteError> {
        // Held through the write: no bundle can take the path meanwhile.
        let bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(message) = Self::owner_message(&bundles, write.path()) {
            return Err(WriteError::Data(DataWriteError::Invalid(message)));
        }
        self.write("api", |sources| {
            data_write::apply(&mut sources.data, write).map_err(WriteError::Data)
        })
    }

    /// `DELETE /v1/policies/{id}`.
    pub fn delete_policy(&self, id: &str) -> Result<(), WriteError> {
        let bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_policy_owner(&bundles, id, None)?;
        self.write("api", |sources| {
            let before = sources.modules.len();
            sources.modules.retain(|m| m.id != id);
            if sources.modules.len() == before {
                return Err(WriteError::NoSuchPolicy(id.to_string()));
            }
            Ok(())
        })?;
        if let Ok(mut ids) = self.api_ids.lock() {
            ids.remove(id);
        }
        Ok(())
    }

    /// Applies `change` to a copy of the current sources and activates the
    /// result; on any error the current snapshot and sources stay.
    fn write(
        &self,
        source: &str,
        change: impl FnOnce(&mut Sources) -> Result<(), WriteError>,
    ) -> Result<(), WriteError> {
        let mut current = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = current.clone();
        if let Err(err) = change(&mut next) {
            // A reload or bundle that cannot be applied is a failed
            // activation; an API request's own error is only its answer.
            if source != "api" {
                self.failed(source, &anyhow::anyhow!("{}", describe(&err)));
            }
            return Err(err);
        }
        match Snapshot::build(next.clone()) {
            Ok(snapshot) => {
                tracing::info!(source, revision = %snapshot.revision(), "activated a new policy snapshot");
                let same = self.snapshots.load().digest() == snapshot.digest();
                self.snapshots.store(snapshot);
                // Cache keys hold the digest: entries of an identical
                // snapshot (a reload that changed nothing) stay right.
                if !same {
                    self.cache.clear();
                }
                *current = next;
                self.metrics
                    .reloads
                    .with_label_values(&[source, "success"])
                    .inc();
                Ok(())
            }
            Err(err) => {
                self.failed(source, &err);
                Err(WriteError::Build(err))
            }
        }
    }

    /// Records a failure that happened before a write could start (a bundle
    /// that does not read), as a failed activation.
    pub fn record_failure(&self, source: &str, err: &anyhow::Error) {
        self.failed(source, err);
    }

    fn failed(&self, source: &str, err: &anyhow::Error) {
        let message = format!("{err:#}");
        tracing::warn!(source, error = %message, "kept the active snapshot: the new one does not build");
        self.metrics
            .reloads
            .with_label_values(&[source, "failure"])
            .inc();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(LastError {
                source: source.to_string(),
                message,
                time: SystemTime::now(),
            });
        }
    }
}

/// A one-line description of a failed write.
pub fn describe(err: &WriteError) -> String {
    match err {
        WriteError::Build(err) => format!("{err:#}"),
        WriteError::NoSuchPolicy(id) => format!("no policy {id}"),
        WriteError::Data(DataWriteError::Invalid(m) | DataWriteError::NotFound(m)) => m.clone(),
        WriteError::Data(DataWriteError::NotModified) => "not modified".into(),
    }
}
