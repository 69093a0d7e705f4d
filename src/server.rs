//! The accept loop: binds the listeners, serves HTTP/1.1 with keep-alive on
//! every connection (over TLS on an `https` listener, `crate::tls`), and on
//! shutdown stops accepting, lets in-flight requests finish within the grace
//! period, and reports whether they all did. A listener serves the whole
//! API, or only the diagnostic routes (`--diagnostic-addr`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::api::{self, AppState, Peer};
use crate::tls::ServerTls;

/// Bound listeners and the state they serve; nothing is accepted until [`Server::serve`].
pub struct Server {
    listeners: Vec<Listener>,
    state: Arc<AppState>,
    /// With `--tls-cert-file`: what `https` listeners serve.
    tls: Option<Arc<ServerTls>>,
}

struct Listener {
    socket: TcpListener,
    serves: Serves,
    /// Whether connections are TLS.
    https: bool,
}

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// listener is `https` when `tls` is given, `http` otherwise.
    pub async fn bind<S: AsRef<str>>(
        addrs: &[S],
        state: AppState,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Server> {
        let mut server = Server {
            listeners: Vec::new(),
            state: Arc::new(state),
            tls,
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
            let (https, host) = scheme(addr, self.tls.is_some())?;
            let socket = resolve(host).await?;
            let socket = TcpListener::bind(socket)
                .await
                .with_context(|| format!("cannot listen on `{addr}`"))?;
            self.listeners.push(Listener {
                socket,
                serves,
                https,
            });
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
            .filter(|l| l.serves == serves)
            .filter_map(|l| l.socket.local_addr().ok())
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
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = rx.recv() => {
                    let Some(accepted) = accepted else { break };
                    let state = Arc::clone(&self.state);
                    let tls = self.tls.clone().filter(|_| accepted.https);
                    match tls {
                        None => {
                            let peer = Peer { addr: accepted.peer, identity: None };
                            let service = service(state, peer, accepted.serves);
                            let conn = builder.serve_connection(TokioIo::new(accepted.stream), service);
                            tokio::spawn(finish(graceful.watch(conn)));
                        }
                        Some(tls) => {
                            let (builder, watcher) = (builder.clone(), graceful.watcher());
                            tokio::spawn(async move {
                                let handshake = tls.acceptor().accept(accepted.stream);
                                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(err)) => {
                                        tracing::debug!(error = %err, peer = %accepted.peer, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(peer = %accepted.peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let identity = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|certs| certs.first())
                                    .and_then(|cert| crate::tls::subject::identity(cert))
                                    .map(Arc::from);
                                let peer = Peer { addr: accepted.peer, identity };
                                let service = service(state, peer, accepted.serves);
                                let conn = builder.serve_connection(TokioIo::new(stream), service);
                                finish(watcher.watch(conn)).await;
                            });
                        }
                    }
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

/// The service answering one connection's requests.
fn service(
    state: Arc<AppState>,
    peer: Peer,
    serves: Serves,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = api::HttpResponse,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<api::HttpResponse, std::convert::Infallible>> + Send,
> {
    let peer = Arc::new(peer);
    service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        let peer = Arc::clone(&peer);
        let req = req.map(Either::Left);
        async move {
            let response = match serves {
                Serves::Api => api::handle(&state, req, &peer).await,
                Serves::Diagnostic => api::handle_diagnostic(&state, req, &peer).await,
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

/// Waits for a connection to end.
async fn finish<E: std::fmt::Display>(conn: impl Future<Output = Result<(), E>>) {
    if let Err(err) = conn.await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// A connection accepted by a listener.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    serves: Serves,
    https: bool,
}

async fn accept_loop(listener: Listener, tx: mpsc::Sender<Accepted>) {
    loop {
        match listener.socket.accept().await {
            Ok((stream, peer)) => {
                // Decisions are small request/response pairs: do not batch them.
                let _ = stream.set_nodelay(true);
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

/// Whether `addr` is an `https` listener, and its `host:port`, as OPA's
/// `parseURL`: an address without a scheme is `https` when a certificate is
/// configured.
fn scheme(addr: &str, tls: bool) -> Result<(bool, &str)> {
    let Some((scheme, host)) = addr.split_once("://") else {
        return Ok((tls, addr));
    };
    match scheme {
        "http" => Ok((false, host)),
        "https" if tls => Ok((true, host)),
        "https" => bail!("`{addr}`: TLS certificate required but not supplied"),
        "unix" => bail!("`{addr}`: unix sockets are not supported"),
        _ => bail!("invalid url scheme {scheme:?}"),
    }
}

/// Resolves `host:port` (host optional) to one socket address, preferring IPv4
/// as Go's listener does for `localhost`.
async fn resolve(addr: &str) -> Result<SocketAddr> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::scheme;

    #[test]
    fn addresses_without_a_scheme_are_https_when_a_certificate_is_given() {
        assert_eq!(scheme(":8181", false).unwrap(), (false, ":8181"));
        assert_eq!(scheme(":8181", true).unwrap(), (true, ":8181"));
        assert_eq!(scheme("http://:8181", true).unwrap(), (false, ":8181"));
        assert_eq!(scheme("https://:8181", true).unwrap(), (true, ":8181"));
        let err = scheme("https://:8181", false).unwrap_err().to_string();
        assert!(
            err.contains("TLS certificate required but not supplied"),
            "{err}"
        );
        let err = scheme("ftp://:8181", true).unwrap_err().to_string();
        assert_eq!(err, "invalid url scheme \"ftp\"");
    }
}
