//! `regent run --server`: load the policies, bind, serve until a signal.
//! Every configuration problem (bad path, Rego error, address in use) is
//! reported before the server accepts its first connection.

use std::future::Future;

use anyhow::{Context, Result};

use crate::api::AppState;
use crate::cache::DecisionCache;
use crate::config::RunConfig;
use crate::metrics::Metrics;
use crate::policy::{DataPath, Snapshot, SnapshotHandle, Sources};
use crate::server::Server;

/// The default decision of `POST /` (OPA's `default_decision`).
pub const DEFAULT_DECISION: &str = "system/main";

/// Loads the configured sources (or the embedded default set) into a snapshot.
pub fn load_snapshot(paths: &[String]) -> Result<Snapshot> {
    let sources = if paths.is_empty() {
        Sources::embedded_default().context("loading the default policies")?
    } else {
        Sources::load_paths(paths)?
    };
    Snapshot::build(sources)
}

/// Builds the shared state for a server over `snapshot`.
pub fn app_state(config: &RunConfig, snapshot: Snapshot) -> AppState {
    AppState {
        snapshots: SnapshotHandle::new(snapshot),
        limits: config.limits,
        default_decision: DataPath::parse(DEFAULT_DECISION),
        cache: DecisionCache::new(config.cache),
        metrics: Metrics::new(),
        max_batch_inputs: config.max_batch_inputs,
    }
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    let snapshot = load_snapshot(&config.paths)?;
    let modules = snapshot.modules().len();
    let revision = snapshot.revision().to_string();
    let state = app_state(&config, snapshot);
    let server = Server::bind(&config.addrs, state).await?;
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(addrs = ?addrs, modules, revision = %revision, "Initializing server.");
    let wait = config.shutdown_wait;
    let shutdown = async move {
        shutdown.await;
        if !wait.is_zero() {
            tracing::info!("Waiting {}s before initiating shutdown...", wait.as_secs());
            tokio::time::sleep(wait).await;
        }
    };
    server.serve(shutdown, config.shutdown_grace).await
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
