//! `regent run --server`: load the policies and bundles, bind, serve until a
//! signal. Every configuration problem (bad path, Rego error, bad bundle,
//! address in use) is reported before the server accepts its first
//! connection; a configured bundle service that is down is not a problem
//! (the downloader retries, `/health?bundles` says not ready).

use std::future::Future;

use anyhow::{Context, Result};

use crate::api::offload::Evaluation;
use crate::api::AppState;
use crate::bundle::configured::{bundle_sources, file_sources};
use crate::bundle::download::BundleSource;
use crate::bundle::{archive, download, local, Bundle};
use crate::cache::DecisionCache;
use crate::config::RunConfig;
use crate::decision_log::{configured_upload, DecisionLog};
use crate::metrics::Metrics;
use crate::policy::store::PolicyStore;
use crate::policy::watch;
use crate::policy::{DataPath, Snapshot, Sources};
use crate::server::Server;
use crate::tls::ServerTls;
use crate::walk::Ignore;

/// Reads the configured sources (or the embedded default set).
pub fn load_sources(paths: &[String], ignore: &Ignore) -> Result<Sources> {
    if paths.is_empty() {
        Sources::embedded_default().context("loading the default policies")
    } else {
        Sources::load_paths_ignoring(paths, ignore)
    }
}

/// Compiles `sources` and builds the shared state for a server over them.
pub fn app_state(config: &RunConfig, sources: Sources) -> Result<AppState> {
    let snapshot = Snapshot::build(sources.clone())?;
    let cache = DecisionCache::new(config.cache);
    let metrics = Metrics::new();
    let store = PolicyStore::new(sources, snapshot, cache.clone(), metrics.clone());
    // As OPA: the configured labels, then this instance's `id` (a random
    // UUID per process) and `version`, which configuration cannot override.
    let mut labels = config.opa.labels.clone();
    labels.insert("id".into(), uuid::Uuid::new_v4().to_string());
    labels.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    Ok(AppState {
        snapshots: store.snapshots().clone(),
        store,
        limits: config.limits,
        default_decision: DataPath::parse(&config.default_decision),
        cache,
        evaluation: Evaluation::new(config.eval_timeout, &metrics),
        metrics,
        max_batch_inputs: config.max_batch_inputs,
        decision_log: DecisionLog::new(
            labels.clone(),
            config.opa.decision_logs.as_ref().is_some_and(|d| d.console),
            configured_upload(&config.opa)?,
        ),
        config: std::sync::Arc::new(config.opa.active_config(&labels)),
        labels,
        keys: crate::api::wire::Keys::default(),
        auth: config.auth.clone(),
    })
}

/// What [`prepare`] built: the server's state, and the configured bundle
/// sources (resolved once, from `services`, `bundles` and `keys`), which
/// [`start_background`] hands to their downloaders.
pub struct Prepared {
    pub state: AppState,
    configured: Vec<BundleSource>,
}

/// Everything before binding: the policy paths (or the embedded default
/// set), the `-b` bundles, and the persisted copies of configured bundles.
pub fn prepare(config: &RunConfig) -> Result<Prepared> {
    let sources = if config.serves_default_policies() {
        Sources::embedded_default().context("loading the default policies")?
    } else if config.bundle {
        Sources::default()
    } else {
        Sources::load_paths_ignoring(&config.paths, &config.ignore)?
    };
    let state = app_state(config, sources)?;
    if config.bundle {
        let list = load_local_bundles(
            &config.paths,
            config.local_verification.as_ref(),
            config.skip_verify,
        )?;
        state.store.activate_bundles(list).map_err(|e| {
            anyhow::anyhow!(
                "activating the bundles: {}",
                crate::policy::store::describe(&e)
            )
        })?;
    }
    let configured = bundle_sources(&config.opa)?;
    for source in &configured {
        state.store.bundle_statuses().register(&source.name);
        download::activate_persisted(&state.store, source);
    }
    for source in file_sources(&config.opa)? {
        local::load(&state.store, &source);
    }
    Ok(Prepared { state, configured })
}

/// Reads and checks every `-b` bundle, each with its revision, to be
/// activated together (one compile; all or none): at start-up and on a
/// `--watch` reload.
pub fn load_local_bundles(
    paths: &[String],
    verification: Option<&crate::bundle::signing::Verification>,
    skip_verify: bool,
) -> Result<Vec<(Bundle, String)>> {
    paths
        .iter()
        .map(|path| load_local_bundle(path, verification, skip_verify))
        .collect()
}

/// Reads and checks the `-b` bundle at `path`; returns it with its revision.
fn load_local_bundle(
    path: &str,
    verification: Option<&crate::bundle::signing::Verification>,
    skip_verify: bool,
) -> Result<(Bundle, String)> {
    let mut files = archive::read_path(std::path::Path::new(path), archive::DEFAULT_SIZE_LIMIT)
        .with_context(|| format!("bundle {path}"))?;
    if skip_verify {
        files.retain(|f| f.name != ".signatures.json");
    }
    let bundle =
        Bundle::from_files(path, files, verification).with_context(|| format!("bundle {path}"))?;
    if bundle.patch.is_some() {
        // Each `-b` path is a bundle of its own, so a delta could only patch
        // data no bundle owns, and `--watch` would apply it again on every
        // reload: refused.
        anyhow::bail!("bundle {path}: a delta bundle (patch.json with operations) can only be downloaded, not loaded with -b");
    }
    let revision = bundle.revision_or(None);
    Ok((bundle, revision))
}

/// Starts what runs beside the server: the file watcher with `--watch`, one
/// downloader per configured bundle, the decision log uploads; returns the
/// state to serve. Needs a tokio runtime.
pub fn start_background(config: &RunConfig, prepared: Prepared) -> Result<AppState> {
    let Prepared { state, configured } = prepared;
    if config.watch {
        let watched = if config.bundle {
            watch::Watched::Bundles {
                verification: config.local_verification.clone(),
                skip_verify: config.skip_verify,
            }
        } else {
            watch::Watched::Files {
                ignore: config.ignore.clone(),
            }
        };
        watch::spawn(state.store.clone(), config.paths.clone(), watched)?;
    }
    for source in configured {
        download::spawn(state.store.clone(), source);
    }
    state.decision_log.start()?;
    Ok(state)
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    config.log_warnings();
    let state = start_background(&config, prepare(&config)?)?;
    if let Some(timeout) = config.ready_timeout {
        wait_until_ready(&state, timeout).await?;
    }
    let snapshot = state.snapshots.load();
    let modules = snapshot.modules().len();
    let revision = snapshot.revision().to_string();
    let decision_log = state.decision_log.clone();
    let tls = match &config.tls {
        Some(settings) => {
            let tls = ServerTls::load(settings.clone())?;
            tls.spawn_reloader()?;
            Some(tls)
        }
        None => None,
    };
    let server = Server::bind_with(&config.addrs, state, tls, config.unix_socket_perm)
        .await?
        .with_diagnostic(&config.diagnostic_addrs)
        .await?
        .with_h2c(config.h2c);
    let addrs = server.shown_addrs();
    let diagnostic_addrs = server.shown_diagnostic_addrs();
    tracing::info!(addrs = ?addrs, diagnostic_addrs = ?diagnostic_addrs, modules, revision = %revision, "Initializing server.");
    let wait = config.shutdown_wait;
    let shutdown = async move {
        shutdown.await;
        if !wait.is_zero() {
            tracing::info!("Waiting {}s before initiating shutdown...", wait.as_secs());
            tokio::time::sleep(wait).await;
        }
    };
    let served = server.serve(shutdown, config.shutdown_grace).await;
    // As OPA's plugin on stop: what is buffered is uploaded within the
    // grace period.
    decision_log.flush(config.shutdown_grace).await;
    served
}

/// `--ready-timeout`: waits, before listening, until every configured
/// bundle is activated, as OPA waits for its plugins; not ready in time is
/// an error (exit 1).
async fn wait_until_ready(state: &AppState, timeout: std::time::Duration) -> Result<()> {
    tracing::debug!("Waiting for plugins activation ({timeout:?}).");
    let statuses = state.store.bundle_statuses();
    // A deadline past what the clock holds is no deadline.
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    while statuses.any() && !statuses.all_activated() {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::error!(err = "timeout", "Failed to wait for plugins activation.");
            anyhow::bail!(
                "the bundles were not activated within --ready-timeout ({}s)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
