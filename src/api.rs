//! OPA's REST API: the shared state, and the wrapper every request passes
//! through (authorization, the request histogram); the router is
//! `routes.rs`. The decision routes (`/v1/data`, `/v0/data`, `POST /`), the
//! request path proper, are in `data.rs`: it reads the current snapshot
//! (never waiting on a reload), looks the request up in the decision cache,
//! parses the input, evaluates (`offload.rs`), and encodes the answer; with
//! the decision log on, each decision is logged (`logged.rs`). Batches are
//! in `batch.rs`, ad-hoc queries (`/v1/query`) in `query.rs`; health,
//! status, metrics and the write APIs in `manage.rs`. Every request is first
//! authorized when `--authorization=basic` asks for it (`authz.rs`). Every
//! failure is an [`ApiError`], mapped to HTTP in `error.rs`.

pub mod authz;
pub mod batch;
pub mod body;
mod data;
pub mod error;
mod logged;
mod manage;
pub mod offload;
mod query;
mod routes;
pub mod wire;
pub mod yaml;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, VARY};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

pub use body::Limits;
pub use error::ApiError;

use crate::cache::DecisionCache;
use crate::decision_log::DecisionLog;
use crate::metrics::{Handler, Metrics};
use crate::policy::store::PolicyStore;
use crate::policy::{DataPath, SnapshotHandle};

/// What every handler needs, cheap to clone: one per connection.
#[derive(Clone)]
pub struct AppState {
    pub snapshots: SnapshotHandle,
    /// The write side (policy API); shares `snapshots`.
    pub store: PolicyStore,
    pub limits: Limits,
    /// The document `POST /` answers (OPA's `default_decision`).
    pub default_decision: DataPath,
    pub cache: DecisionCache,
    pub metrics: Metrics,
    /// Most inputs one batch request may carry.
    pub max_batch_inputs: usize,
    /// Where decisions are evaluated, and for how long.
    pub evaluation: offload::Evaluation,
    /// The configured `labels`, with `id` and `version` added (as OPA's).
    pub labels: std::collections::BTreeMap<String, String>,
    /// OPA's decision logs (`decision_logs`: console, uploads); off by default.
    pub decision_log: DecisionLog,
    /// Object keys seen in earlier inputs, reused when reading new ones.
    pub keys: wire::Keys,
    /// `--authentication`, `--authorization`.
    pub auth: authz::Auth,
    /// What `GET /v1/config` answers: the configuration, secrets removed.
    pub config: Arc<serde_json::Value>,
}

/// A request body: as received, or already read by the authorizer.
pub type Body = Either<Incoming, Full<Bytes>>;

/// The connection a request came on.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address (none over a unix socket).
    pub addr: Option<SocketAddr>,
    /// The subject of the client's verified TLS certificate, as OPA's TLS
    /// authentication names it (`CN=client,O=Example`).
    pub identity: Option<Arc<str>>,
}

/// The response header that says whether a decision came from the cache:
/// `hit`, `miss` (cacheable, evaluated and stored) or `bypass` (not cacheable:
/// cache off, `?metrics`/`?provenance`/`?instrument`, or a document that can
/// reach a non-deterministic built-in).
pub const CACHE_HEADER: &str = "x-regent-decision-cache";

pub type HttpResponse = Response<Full<Bytes>>;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BUILD_COMMIT: &str = match option_env!("REGENT_BUILD_COMMIT") {
    Some(c) => c,
    None => "",
};

/// Answers one request. Never fails: errors become OPA-shaped responses.
pub async fn handle(state: &AppState, req: Request<Body>, peer: &Peer) -> HttpResponse {
    respond(state, req, peer, false).await
}

/// Answers one request on a diagnostic listener (`--diagnostic-addr`): as
/// OPA's diagnostic router, only `GET /health`, `GET /health/{name}` and
/// `GET /metrics`; anything else is not found there (once authorized, as
/// OPA authorizes before routing).
pub async fn handle_diagnostic(state: &AppState, req: Request<Body>, peer: &Peer) -> HttpResponse {
    respond(state, req, peer, true).await
}

async fn respond(
    state: &AppState,
    req: Request<Body>,
    peer: &Peer,
    diagnostic: bool,
) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let caller = Caller {
        peer: peer.addr,
        req_id: state.decision_log.request_id(),
        started,
    };
    // OPA's `handler` label of the route that answers, if one does.
    let mut handler = None;
    let routed = async {
        // Boxed: the request path without authorization does not carry the
        // authorizer's state in its own.
        let req = match &state.auth.decision {
            Some(_) => Box::pin(authz::authorize(state, req, peer)).await?,
            None => req,
        };
        let path = req.uri().path();
        if diagnostic && !(path == "/health" || path.starts_with("/health/") || path == "/metrics")
        {
            return Err(ApiError::NotFound(format!(
                "no route for `{} {path}` on the diagnostic listener",
                req.method()
            )));
        }
        routes::route(state, req, caller, &mut handler).await
    };
    let response = match routed.await {
        Ok(response) => response,
        Err(err) => {
            if let ApiError::MethodNotAllowed { .. } = err {
                // OPA's catch-all routes answer these under the data,
                // policy and query APIs; Go's router answers the others,
                // uncounted.
                handler = match handler {
                    Some(
                        Handler::V1Data | Handler::V0Data | Handler::V1Policies | Handler::V1Query,
                    ) => Some(Handler::Catchall),
                    _ => None,
                };
            }
            err.into_response()
        }
    };
    let elapsed = started.elapsed();
    if let Some(handler) = handler {
        state
            .metrics
            .observe_request(handler, &method, response.status(), elapsed);
    }
    tracing::debug!(
        req_method = %method,
        resp_status = response.status().as_u16(),
        resp_duration_us = elapsed.as_micros() as u64,
        "Sent response."
    );
    response
}

/// Who asked and when: what the decision log and `?metrics` need.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    pub peer: Option<SocketAddr>,
    /// OPA's `req_id` (0 without the decision log).
    pub req_id: u64,
    pub started: Instant,
}

#[derive(Serialize)]
struct ResultBody<T> {
    result: T,
}

fn json_response(body: impl Into<Bytes>, vary: bool) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if vary {
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    response
}
