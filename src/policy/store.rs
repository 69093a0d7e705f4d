//! The write side of the policy state: the sources the current snapshot was
//! built from, and the one place that activates a new snapshot. Writers (the
//! policy API today; file reloads and bundles later) take the writer lock,
//! build a complete snapshot off the request path and swap it in whole;
//! readers go through [`SnapshotHandle`] and never wait. A build that fails
//! changes nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{anyhow, Result};

use super::data_write::{self, DataWrite, DataWriteError};
use super::{Module, Snapshot, SnapshotHandle, Sources};
use crate::cache::DecisionCache;
use crate::metrics::Metrics;

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
    /// Data roots owned by bundles, read-only for the data API (filled in
    /// when bundles are activated; none yet).
    owned_roots: Arc<Mutex<Vec<Vec<String>>>>,
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
            owned_roots: Arc::default(),
            cache,
            metrics,
        }
    }

    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
    }

    /// The last failed activation, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Re-reads the loaded files (a `--watch` reload): their modules and the
    /// whole data document are replaced, as OPA does (data written through an
    /// API is lost on a file reload); modules written through the API stay.
    pub fn reload_files(&self, paths: &[String]) -> Result<(), WriteError> {
        let api_ids = self
            .api_ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default();
        let files = match crate::run::load_sources(paths) {
            Ok(files) => files,
            Err(err) => {
                self.failed("watch", &err);
                return Err(WriteError::Build(err));
            }
        };
        self.write("watch", move |sources| {
            let mut next = files;
            for module in &sources.modules {
                if api_ids.contains(&module.id) && !next.modules.iter().any(|m| m.id == module.id) {
                    next.modules.push(module.clone());
                }
            }
            *sources = next;
            Ok(())
        })
    }

    /// `PUT /v1/policies/{id}`: adds or replaces module `id`. Blocking (it
    /// compiles): call it off the async workers.
    pub fn put_policy(&self, id: &str, text: &str) -> Result<(), WriteError> {
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
        let path = write.path();
        let owned = self
            .owned_roots
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        if let Some(root) = owned
            .iter()
            .find(|root| root.starts_with(path) || path.starts_with(root))
        {
            return Err(WriteError::Data(DataWriteError::Invalid(format!(
                "path /{} is owned by a bundle (root /{})",
                path.join("/"),
                root.join("/")
            ))));
        }
        self.write("api", |sources| {
            data_write::apply(&mut sources.data, write).map_err(WriteError::Data)
        })
    }

    /// `DELETE /v1/policies/{id}`.
    pub fn delete_policy(&self, id: &str) -> Result<(), WriteError> {
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
        let mut current = self
            .sources
            .lock()
            .map_err(|_| WriteError::Build(anyhow!("policy store lock poisoned")))?;
        let mut next = current.clone();
        change(&mut next)?;
        match Snapshot::build(next.clone()) {
            Ok(snapshot) => {
                tracing::info!(source, revision = %snapshot.revision(), "activated a new policy snapshot");
                self.snapshots.store(snapshot);
                self.cache.clear();
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
