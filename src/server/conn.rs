//! How one accepted connection is served: HTTP/1.1 with keep-alive, with
//! `--h2c` also HTTP/2 with prior knowledge (`Plain`), or over TLS after its
//! handshake (`Handshake`); every connection is watched by the drain.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Serves;
use crate::api::{self, AppState, Peer};
use crate::tls::ServerTls;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// With `--h2c`: how long after the server starts stopping an HTTP/2
/// connection with no request under way is closed, whether or not the
/// client acknowledged the GOAWAY (a client that vanished never does).
const H2_IDLE_CLOSE: Duration = Duration::from_secs(1);

/// With `--h2c`: the largest HTTP/2 header list, as Go's default
/// `MaxHeaderBytes` (hyper's own default is 16 KiB, too small for a
/// `GET /v1/data?input=` that HTTP/1.1 takes).
const H2_MAX_HEADER_LIST: u32 = 1 << 20;

/// A TLS connection before its handshake.
pub(super) struct Handshake {
    pub(super) tls: Arc<ServerTls>,
    pub(super) builder: http1::Builder,
    pub(super) watcher: Watcher,
    pub(super) stopping: watch::Receiver<bool>,
}

impl Handshake {
    /// Completes the handshake (given up after [`HANDSHAKE_TIMEOUT`], or
    /// when the server stops, so that a silent client cannot hold the
    /// drain), names the client by its certificate, then serves.
    pub(super) async fn serve(
        mut self,
        stream: TcpStream,
        state: Arc<AppState>,
        peer: Peer,
        serves: Serves,
    ) {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.acceptor().accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, peer = ?peer.addr, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = ?peer.addr, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.stopping.wait_for(|stopping| *stopping) => return,
        };
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| crate::tls::subject::identity(cert))
            .map(Arc::from);
        let peer = Peer { identity, ..peer };
        let service = service(state, peer, serves, None);
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        finish(self.watcher.watch(conn)).await;
    }
}

/// The service answering one connection's requests; with `active`, each
/// request holds a count there while it is under way.
fn service(
    state: Arc<AppState>,
    peer: Peer,
    serves: Serves,
    active: Option<Arc<AtomicUsize>>,
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
        // Counted here, inside the request's own future: wrapping that
        // (large) future in another one copied it, ~10k instructions a
        // request.
        let active = active.as_ref().map(Active::hold);
        // HTTP/1.1 sends no body for a HEAD; hyper's HTTP/2 would.
        let head_h2 = req.method() == Method::HEAD && req.version() == Version::HTTP_2;
        let req = req.map(Either::Left);
        async move {
            let _active = active;
            let response = match serves {
                Serves::Api => api::handle(&state, req, &peer).await,
                Serves::Diagnostic => api::handle_diagnostic(&state, req, &peer).await,
            };
            let response = if head_h2 {
                without_body(response)
            } else {
                response
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    })
}

/// A HEAD answer: the GET's status and headers, its length, no body.
fn without_body(response: api::HttpResponse) -> api::HttpResponse {
    let (mut parts, body) = response.into_parts();
    let length = body.size_hint().exact().unwrap_or(0);
    parts
        .headers
        .entry(CONTENT_LENGTH)
        .or_insert(HeaderValue::from(length));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Holds one count while a request is under way, cancelled or not
/// (`--h2c` connections, see [`H2_IDLE_CLOSE`]).
struct Active(Arc<AtomicUsize>);

impl Active {
    fn hold(count: &Arc<AtomicUsize>) -> Active {
        count.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(count))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once the server is stopping, [`H2_IDLE_CLOSE`] has passed and
/// the connection has had no request under way for two looks in a row
/// (100 ms apart, time for a finished answer to be flushed).
async fn idle_after_stop(mut stopping: watch::Receiver<bool>, active: Arc<AtomicUsize>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
    tokio::time::sleep(H2_IDLE_CLOSE).await;
    let mut idle_looks = 0;
    while idle_looks < 2 {
        idle_looks = if active.load(Ordering::Acquire) == 0 {
            idle_looks + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How plain (not TLS) connections are served.
pub(super) enum Plain {
    /// HTTP/1.1 only (the default).
    Http1(http1::Builder),
    /// `--h2c`: HTTP/2 when the client opens with the HTTP/2 connection
    /// preface, HTTP/1.1 otherwise. In the drain, an HTTP/2 connection
    /// waits for the client to acknowledge the GOAWAY before it closes, so
    /// one left idle is closed after [`H2_IDLE_CLOSE`].
    Auto(auto::Builder<TokioExecutor>),
}

impl Plain {
    /// HTTP/1.1 as `http1` serves it, or with `h2c` also HTTP/2.
    pub(super) fn new(h2c: bool, http1: &http1::Builder) -> Plain {
        if h2c {
            let mut auto = auto::Builder::new(TokioExecutor::new());
            auto.http2().max_header_list_size(H2_MAX_HEADER_LIST);
            Plain::Auto(auto)
        } else {
            Plain::Http1(http1.clone())
        }
    }

    /// Serves a connection on its own task, watched by the drain.
    pub(super) fn spawn<I>(
        &self,
        graceful: &GracefulShutdown,
        stopping: &watch::Sender<bool>,
        io: I,
        state: Arc<AppState>,
        peer: Peer,
        serves: Serves,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Plain::Http1(builder) => {
                let service = service(state, peer, serves, None);
                let conn = builder.serve_connection(TokioIo::new(io), service);
                tokio::spawn(finish(graceful.watch(conn)));
            }
            Plain::Auto(builder) => {
                let active = Arc::new(AtomicUsize::new(0));
                let service = service(state, peer, serves, Some(Arc::clone(&active)));
                let conn = builder.serve_connection(TokioIo::new(io), service);
                let watched = graceful.watch(conn.into_owned());
                let idle = idle_after_stop(stopping.subscribe(), active);
                tokio::spawn(async move {
                    tokio::select! {
                        () = finish(watched) => {}
                        () = idle => tracing::debug!("closed an idle connection in the drain"),
                    }
                });
            }
        }
    }
}

/// Waits for a connection to end.
async fn finish<E: std::fmt::Display>(conn: impl Future<Output = Result<(), E>>) {
    if let Err(err) = conn.await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}
