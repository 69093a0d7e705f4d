//! The accept loop: binds the listeners, hands each accepted connection to
//! `conn.rs` (HTTP/1.1 with keep-alive; over TLS on an `https` listener,
//! `crate::tls`; with `--h2c`, HTTP/2 too on plain listeners), and on
//! shutdown stops accepting, lets in-flight requests finish within the grace
//! period, and reports whether they all did. A listener (`listener.rs`: TCP
//! or unix socket) serves the whole API, or only the diagnostic routes
//! (`--diagnostic-addr`).

mod conn;
mod listener;

pub use listener::unix_socket_perm;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use hyper::server::conn::http1;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::{mpsc, watch};

use crate::api::{AppState, Peer};
use crate::tls::ServerTls;
use conn::{Handshake, Plain};
use listener::{Listener, Stream};

/// Bound listeners and the state they serve; nothing is accepted until [`Server::serve`].
pub struct Server {
    listeners: Vec<Listener>,
    state: Arc<AppState>,
    /// With `--tls-cert-file`: what `https` listeners serve.
    tls: Option<Arc<ServerTls>>,
    /// The mode of unix socket files (`--unix-socket-perm`).
    unix_perm: u32,
    /// `--h2c`: plain listeners also serve HTTP/2 with prior knowledge.
    h2c: bool,
}

/// OPA's default `--unix-socket-perm`.
pub const DEFAULT_UNIX_SOCKET_PERM: u32 = 0o755;

/// What a listener answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    /// Every route (`--addr`).
    Api,
    /// `/health`, `/health/{name}` and `/metrics` only (`--diagnostic-addr`).
    Diagnostic,
}

impl Server {
    /// Binds every address. An address is `[scheme://]host:port`; an empty
    /// host (`:8181`) means all interfaces, as in OPA. Without a scheme, a
    /// listener is `https` when `tls` is given, `http` otherwise;
    /// `unix://PATH` is a unix socket.
    pub async fn bind<S: AsRef<str>>(
        addrs: &[S],
        state: AppState,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Server> {
        Server::bind_with(addrs, state, tls, DEFAULT_UNIX_SOCKET_PERM).await
    }

    /// [`Server::bind`], with unix socket files made with mode `unix_perm`.
    pub async fn bind_with<S: AsRef<str>>(
        addrs: &[S],
        state: AppState,
        tls: Option<Arc<ServerTls>>,
        unix_perm: u32,
    ) -> Result<Server> {
        let mut server = Server {
            listeners: Vec::new(),
            state: Arc::new(state),
            tls,
            unix_perm,
            h2c: false,
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

    /// With `on`, plain (`http` and unix socket) listeners also serve
    /// HTTP/2 to clients that open with its connection preface (prior
    /// knowledge), as OPA's `--h2c`. HTTPS listeners stay HTTP/1.1: OPA's
    /// TLS configuration offers no ALPN protocols either.
    pub fn with_h2c(mut self, on: bool) -> Server {
        self.h2c = on;
        self
    }

    async fn listen<S: AsRef<str>>(&mut self, addrs: &[S], serves: Serves) -> Result<()> {
        for addr in addrs {
            let listener =
                Listener::bind(addr.as_ref(), serves, self.tls.is_some(), self.unix_perm).await?;
            self.listeners.push(listener);
        }
        Ok(())
    }

    /// The API's TCP addresses actually bound (ports resolved when `:0` was
    /// asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| l.serves == Serves::Api)
            .filter_map(Listener::tcp_addr)
            .collect()
    }

    /// Every API address bound, as logged (`127.0.0.1:8181`,
    /// `unix:///run/regent.sock`).
    pub fn shown_addrs(&self) -> Vec<String> {
        self.shown(Serves::Api)
    }

    /// Every diagnostic address bound, as logged.
    pub fn shown_diagnostic_addrs(&self) -> Vec<String> {
        self.shown(Serves::Diagnostic)
    }

    fn shown(&self, serves: Serves) -> Vec<String> {
        self.listeners
            .iter()
            .filter(|l| l.serves == serves)
            .map(Listener::shown)
            .collect()
    }

    /// Serves until `shutdown` completes, then drains. Returns an error when
    /// in-flight requests did not finish within `grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>, grace: Duration) -> Result<()> {
        let (tx, mut rx) = mpsc::channel::<Accepted>(1024);
        let mut acceptors = Vec::new();
        for listener in self.listeners {
            let tx = tx.clone();
            acceptors.push(tokio::spawn(accept_loop(listener, tx)));
        }
        drop(tx);

        let graceful = GracefulShutdown::new();
        let builder = http1::Builder::new();
        let plain = Plain::new(self.h2c, &builder);
        // Tells TLS handshakes still under way that the server is stopping.
        let (stopping, _) = watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = rx.recv() => {
                    let Some(accepted) = accepted else { break };
                    let state = Arc::clone(&self.state);
                    let peer = Peer { addr: accepted.peer, identity: None };
                    let tls = self.tls.clone().filter(|_| accepted.https);
                    let serves = accepted.serves;
                    match (accepted.stream, tls) {
                        (Stream::Unix(stream), _) => {
                            plain.spawn(&graceful, &stopping, stream, state, peer, serves);
                        }
                        (Stream::Tcp(stream), None) => {
                            plain.spawn(&graceful, &stopping, stream, state, peer, serves);
                        }
                        (Stream::Tcp(stream), Some(tls)) => {
                            let handshake = Handshake {
                                tls,
                                builder: builder.clone(),
                                watcher: graceful.watcher(),
                                stopping: stopping.subscribe(),
                            };
                            tokio::spawn(handshake.serve(stream, state, peer, serves));
                        }
                    }
                }
                () = &mut shutdown => break,
            }
        }

        tracing::info!("Shutting down...");
        stopping.send_replace(true);
        for acceptor in &acceptors {
            acceptor.abort();
        }
        // Each listener is closed (a unix socket's file removed) once its
        // task is gone.
        for acceptor in acceptors {
            let _ = acceptor.await;
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

/// A connection accepted by a listener.
struct Accepted {
    stream: Stream,
    peer: Option<SocketAddr>,
    serves: Serves,
    https: bool,
}

async fn accept_loop(listener: Listener, tx: mpsc::Sender<Accepted>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let accepted = Accepted {
                    stream,
                    peer,
                    serves: listener.serves,
                    https: listener.https,
                };
                if tx.send(accepted).await.is_err() {
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
