//! The accept loop: binds the listeners, serves HTTP/1.1 with keep-alive on
//! every connection, and on shutdown stops accepting, lets in-flight requests
//! finish within the grace period, and reports whether they all did. A
//! listener serves the whole API, or only the diagnostic routes
//! (`--diagnostic-addr`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::api::{self, AppState};

/// Bound listeners and the state they serve; nothing is accepted until [`Server::serve`].
pub struct Server {
    listeners: Vec<(TcpListener, Serves)>,
    state: Arc<AppState>,
}

/// What a listener answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    /// Every route (`--addr`).
    Api,
    /// `/health`, `/health/{name}` and `/metrics` only (`--diagnostic-addr`).
    Diagnostic,
}

impl Server {
    /// Binds every address. An address is `host:port`; an empty host (`:8181`)
    /// means all interfaces, as in OPA.
    pub async fn bind<S: AsRef<str>>(addrs: &[S], state: AppState) -> Result<Server> {
        let mut server = Server {
            listeners: Vec::new(),
            state: Arc::new(state),
        };
        server.listen(addrs, Serves::Api).await?;
        Ok(server)
    }

    /// Also binds `addrs` for the diagnostic routes only, as OPA's
    /// `--diagnostic-addr`.
    pub async fn with_diagnostic<S: AsRef<str>>(mut self, addrs: &[S]) -> Result<Server> {
        self.listen(addrs, Serves::Diagnostic).await?;
        Ok(self)
    }

    async fn listen<S: AsRef<str>>(&mut self, addrs: &[S], serves: Serves) -> Result<()> {
        for addr in addrs {
            let addr = addr.as_ref();
            let socket = resolve(addr).await?;
            let listener = TcpListener::bind(socket)
                .await
                .with_context(|| format!("cannot listen on `{addr}`"))?;
            self.listeners.push((listener, serves));
        }
        Ok(())
    }

    /// The API addresses actually bound (ports resolved when `:0` was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Serves::Api)
    }

    /// The diagnostic addresses actually bound.
    pub fn diagnostic_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Serves::Diagnostic)
    }

    fn addrs(&self, serves: Serves) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, s)| *s == serves)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then drains. Returns an error when
    /// in-flight requests did not finish within `grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>, grace: Duration) -> Result<()> {
        let (tx, mut rx) = mpsc::channel::<(TcpStream, SocketAddr, Serves)>(1024);
        let mut acceptors = Vec::new();
        for (listener, serves) in self.listeners {
            let tx = tx.clone();
            acceptors.push(tokio::spawn(accept_loop(listener, serves, tx)));
        }
        drop(tx);

        let graceful = GracefulShutdown::new();
        let builder = http1::Builder::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = rx.recv() => {
                    let Some((stream, peer, serves)) = accepted else { break };
                    let state = Arc::clone(&self.state);
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move {
                            let response = match serves {
                                Serves::Api => api::handle(&state, req, peer).await,
                                Serves::Diagnostic => api::handle_diagnostic(&state, req, peer).await,
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }

        tracing::info!("Shutting down...");
        for acceptor in &acceptors {
            acceptor.abort();
        }
        drop(rx);
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => {
                tracing::info!("Server shutdown.");
                Ok(())
            }
            Err(_) => bail!(
                "failed to shutdown server gracefully: requests still in flight after {grace:?}"
            ),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    serves: Serves,
    tx: mpsc::Sender<(TcpStream, SocketAddr, Serves)>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Decisions are small request/response pairs: do not batch them.
                let _ = stream.set_nodelay(true);
                if tx.send((stream, peer, serves)).await.is_err() {
                    return;
                }
            }
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::error!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Resolves `host:port` (host optional) to one socket address, preferring IPv4
/// as Go's listener does for `localhost`.
async fn resolve(addr: &str) -> Result<SocketAddr> {
    if addr.starts_with("unix://") {
        bail!("`{addr}`: unix sockets are not supported");
    }
    let target = match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_string(),
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(&target)
        .await
        .with_context(|| format!("invalid listen address `{addr}`"))?
        .collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| anyhow!("listen address `{addr}` resolves to nothing"))
}
