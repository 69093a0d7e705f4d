//! The write side of the policy state: the sources the current snapshot was
//! built from, the active bundles, and the one place that activates a new
//! snapshot. Writers (the policy and data API, file reloads, bundle
//! activations) take the writer lock,
//! build a complete snapshot off the request path and swap it in whole;
//! readers go through [`SnapshotHandle`] and never wait. A build that fails
//! changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};

use super::data_write::{self, DataWrite, DataWriteError};
use super::{Module, Snapshot, SnapshotHandle, Sources};
use crate::bundle::status::BundleStatuses;
use crate::bundle::{roots_overlap, Bundle};
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
        let bundles = self.bundles.lock().map_err(|_| poisoned())?;
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
                apply_bundle(&mut next, None, bundle, revision).map_err(WriteError::Build)?;
            }
            *sources = next;
            Ok(())
        })
    }

    /// Activates `bundle` (replacing an earlier version of the same name):
    /// its modules replace the old ones, its data replaces everything under
    /// its roots. Refused when its roots overlap another active bundle's.
    pub fn activate_bundle(&self, bundle: Bundle, revision: String) -> Result<(), WriteError> {
        let result = self.activate_bundle_inner(&bundle, revision.clone());
        match &result {
            Ok(()) => self.statuses.update(&bundle.name, |s| {
                s.active_revision = Some(revision);
                s.last_successful_activation = Some(SystemTime::now());
                s.error = None;
            }),
            Err(err) => self.statuses.failed(&bundle.name, describe(err), None),
        }
        result
    }

    fn activate_bundle_inner(&self, bundle: &Bundle, revision: String) -> Result<(), WriteError> {
        let mut bundles = self.bundles.lock().map_err(|_| poisoned())?;
        let overlapping: Vec<&str> = bundles
            .values()
            .filter(|other| other.name != bundle.name)
            .filter(|other| {
                other
                    .roots()
                    .iter()
                    .any(|a| bundle.roots().iter().any(|b| roots_overlap(a, b)))
            })
            .map(|other| other.name.as_str())
            .collect();
        if !overlapping.is_empty() {
            let err = anyhow!(
                "bundle {}: detected overlapping roots in bundle manifest with: [{}]",
                bundle.name,
                overlapping.join(" ")
            );
            self.failed("bundle", &err);
            return Err(WriteError::Build(err));
        }
        let previous = bundles.get(&bundle.name);
        self.write("bundle", |sources| {
            apply_bundle(sources, previous, bundle, revision).map_err(WriteError::Build)
        })?;
        bundles.insert(bundle.name.clone(), bundle.clone());
        Ok(())
    }

    /// The bundle owning `path` and the refusal message, if a bundle does.
    fn owner_message(bundles: &BTreeMap<String, Bundle>, path: &[String]) -> Option<String> {
        if path.is_empty() && !bundles.is_empty() {
            return Some("can't write to document root with bundle roots configured".into());
        }
        bundles.values().find_map(|bundle| {
            let root = bundle
                .roots()
                .into_iter()
                .find(|root| roots_overlap(root, path))?;
            Some(if root.is_empty() {
                format!("all paths owned by bundle {:?}", bundle.name)
            } else {
                format!(
                    "path {} is owned by bundle {:?}",
                    path.join("/"),
                    bundle.name
                )
            })
        })
    }

    /// `PUT /v1/policies/{id}`: adds or replaces module `id`. Blocking (it
    /// compiles): call it off the async workers.
    pub fn put_policy(&self, id: &str, text: &str) -> Result<(), WriteError> {
        let bundles = self.bundles.lock().map_err(|_| poisoned())?;
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
        let bundles = self.bundles.lock().map_err(|_| poisoned())?;
        if let Some(message) = Self::owner_message(&bundles, write.path()) {
            return Err(WriteError::Data(DataWriteError::Invalid(message)));
        }
        self.write("api", |sources| {
            data_write::apply(&mut sources.data, write).map_err(WriteError::Data)
        })
    }

    /// `DELETE /v1/policies/{id}`.
    pub fn delete_policy(&self, id: &str) -> Result<(), WriteError> {
        let bundles = self.bundles.lock().map_err(|_| poisoned())?;
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

    /// As OPA: a policy write is refused when the new module's package, or
    /// the package of the module it replaces, lies under a bundle's roots.
    fn check_policy_owner(
        &self,
        bundles: &BTreeMap<String, Bundle>,
        id: &str,
        text: Option<&str>,
    ) -> Result<(), WriteError> {
        let existing = self.snapshots.load().module(id).cloned();
        let texts = text
            .into_iter()
            .chain(existing.as_ref().map(|m| m.text.as_str()));
        for text in texts {
            if let Ok(package) = super::module_package(id, text) {
                if let Some(message) = Self::owner_message(bundles, &package) {
                    return Err(WriteError::Data(DataWriteError::Invalid(message)));
                }
            }
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
        let mut current = self.sources.lock().map_err(|_| poisoned())?;
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

fn poisoned() -> WriteError {
    WriteError::Build(anyhow!("policy store lock poisoned"))
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

/// Puts `bundle` into `sources`: the modules of `previous` (the same bundle's
/// last version) go, data under both versions' roots is replaced.
fn apply_bundle(
    sources: &mut Sources,
    previous: Option<&Bundle>,
    bundle: &Bundle,
    revision: String,
) -> Result<()> {
    let mut gone: HashSet<&str> = bundle.modules.iter().map(|m| m.id.as_str()).collect();
    let mut roots = bundle.roots();
    if let Some(previous) = previous {
        gone.extend(previous.modules.iter().map(|m| m.id.as_str()));
        roots.extend(previous.roots());
    }
    sources.modules.retain(|m| !gone.contains(m.id.as_str()));
    sources.modules.extend(bundle.modules.iter().cloned());
    for root in &roots {
        remove_under(&mut sources.data, root);
    }
    // Everything under the roots was removed, but a non-object value on the
    // way to a root (data `a = 1`, root `a/b`) still conflicts: an error.
    sources
        .merge_data(
            &format!("bundle {}", bundle.name),
            &[],
            serde_json::Value::Object(bundle.data.clone()),
        )
        .context("the bundle's data conflicts with the data outside its roots")?;
    sources.revisions.insert(bundle.name.clone(), revision);
    Ok(())
}

fn remove_under(data: &mut serde_json::Map<String, serde_json::Value>, root: &[String]) {
    match root {
        [] => data.clear(),
        [last] => {
            data.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(serde_json::Value::Object(inner)) = data.get_mut(first) {
                remove_under(inner, rest);
            }
        }
    }
}
