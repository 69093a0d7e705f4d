//! The write side of the policy state: the sources the current snapshot was
//! built from, and the one place that activates a new snapshot. Writers (the
//! policy API today; file reloads and bundles later) take the writer lock,
//! build a complete snapshot off the request path and swap it in whole;
//! readers go through [`SnapshotHandle`] and never wait. A build that fails
//! changes nothing.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};

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
}

/// Shared by the API and the loaders; cheap to clone.
#[derive(Clone)]
pub struct PolicyStore {
    snapshots: SnapshotHandle,
    sources: Arc<Mutex<Sources>>,
    cache: DecisionCache,
    metrics: Metrics,
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
            cache,
            metrics,
        }
    }

    pub fn snapshots(&self) -> &SnapshotHandle {
        &self.snapshots
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
        })
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
                tracing::warn!(source, error = %format!("{err:#}"), "kept the active snapshot: the new one does not build");
                self.metrics
                    .reloads
                    .with_label_values(&[source, "failure"])
                    .inc();
                Err(WriteError::Build(err))
            }
        }
    }
}
