//! `--watch`: reload the loaded paths when anything under them changes.
//!
//! Every path is watched with `notify` (directories recursively; a file
//! through its parent directory, so that rename-over writes and re-created
//! files are seen). Any change counts (not mere opens and reads: see
//! [`is_change`]): a burst (an editor's save, a `git
//! checkout`, Kubernetes swapping a ConfigMap's `..data` symlink) becomes one
//! reload once the events have been quiet for [`DEBOUNCE`]. The reload goes
//! through [`PolicyStore::reload_files`] (or, with `-b`, re-reads every
//! bundle and activates them together): a complete new snapshot or nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::store::PolicyStore;
use crate::bundle::signing::Verification;

/// What the watched paths are.
#[derive(Clone, Debug)]
pub enum Watched {
    /// Policy and data files (`regent run -w PATH...`), leaving out what
    /// `--ignore` names.
    Files { ignore: crate::walk::Ignore },
    /// Bundle directories or tarballs (`regent run -w -b PATH...`).
    Bundles {
        verification: Option<Verification>,
        skip_verify: bool,
    },
}

/// Quiet time after the last event before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Starts watching `paths` (as given on the command line, `a.b:` prefixes
/// allowed); the watch lasts as long as the returned task runs.
pub fn spawn(
    store: PolicyStore,
    paths: Vec<String>,
    watched: Watched,
) -> Result<tokio::task::JoinHandle<()>> {
    let (mut watcher, mut rx) = changes().context("starting the file watcher")?;
    for arg in &paths {
        let path = strip_prefix(arg);
        let (target, mode) = if path.is_dir() {
            (path.to_path_buf(), RecursiveMode::Recursive)
        } else {
            (parent_dir(path), RecursiveMode::NonRecursive)
        };
        watcher
            .watch(&target, mode)
            .with_context(|| format!("{}: cannot watch", target.display()))?;
    }
    tracing::info!(paths = ?paths, "watching for changes");
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        while next_burst(&mut rx).await {
            let (store, paths, watched) = (store.clone(), paths.clone(), watched.clone());
            let reload = tokio::task::spawn_blocking(move || match watched {
                Watched::Files { ignore } => store.reload_files(&paths, &ignore).is_ok(),
                Watched::Bundles {
                    verification,
                    skip_verify,
                } => crate::run::load_local_bundles(&paths, verification.as_ref(), skip_verify)
                    .map_err(|err| store.record_failure("watch", &err))
                    .is_ok_and(|list| store.activate_bundles(list).is_ok()),
            })
            .await;
            if let Ok(true) = reload {
                tracing::info!("reloaded the watched paths");
            }
        }
    }))
}

/// A watcher (nothing watched yet) that sends `()` on the returned channel
/// for every event that [`is_change`]; events stop when it is dropped.
pub(crate) fn changes() -> notify::Result<(RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e.kind)) {
            let _ = tx.send(());
        }
    })?;
    Ok((watcher, rx))
}

/// Waits for the next burst of changes to end (quiet for [`DEBOUNCE`]);
/// `false` once the watcher is gone.
pub(crate) async fn next_burst(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    if rx.recv().await.is_none() {
        return false;
    }
    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
    true
}

/// The directory a file is watched through (`.` for a bare name).
pub(crate) fn parent_dir(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Whether an event can change what a reload reads. Opening, reading and
/// closing a file unwritten do not (a reload opens every watched file, so
/// counting them would make each reload start the next); nor do metadata
/// changes (OPA's watcher ignores `chmod` too). Writes, creations, removals
/// and renames do; so does anything notify cannot classify.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}

/// The filesystem path of a `a.b:path` argument.
fn strip_prefix(arg: &str) -> &Path {
    match arg.split_once(':') {
        Some((prefix, path)) if !path.starts_with("//") && !prefix.is_empty() => Path::new(path),
        _ => Path::new(arg),
    }
}
