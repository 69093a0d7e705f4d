//! OPA's REST routes: the router, and the decision routes (`/v1/data`,
//! `/v0/data`, `POST /`; batches in `batch.rs`). This is the request path:
//! it reads the current snapshot (never waiting on a reload), looks the
//! request up in the decision cache, parses the input, evaluates, and
//! encodes the answer; with the decision log on, each decision is logged
//! (`logged.rs`). Health, status, metrics and the write APIs are in
//! `manage.rs`. Every failure is an [`ApiError`], mapped to HTTP in
//! `error.rs`.

pub mod batch;
pub mod body;
pub mod error;
mod logged;
mod manage;
pub mod offload;
pub mod wire;
pub mod yaml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, VARY};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

pub use body::Limits;
pub use error::ApiError;
use wire::{DataResponse, Params, Provenance};

use crate::cache::{DecisionCache, Key, RequestKind};
use crate::decision_log::DecisionLog;
use crate::metrics::Metrics;
use crate::policy::store::PolicyStore;
use crate::policy::{DataPath, EvalOptions, Outcome, Snapshot, SnapshotHandle};
use logged::{Answer, Input, Logged};

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
}

/// The response header that says whether a decision came from the cache:
/// `hit`, `miss` (cacheable, evaluated and stored) or `bypass` (not cacheable:
/// cache off, `?metrics`/`?provenance`/`?instrument`, or a document that can
/// reach a non-deterministic built-in).
pub const CACHE_HEADER: &str = "x-regent-decision-cache";

type HttpResponse = Response<Full<Bytes>>;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const BUILD_COMMIT: &str = match option_env!("REGENT_BUILD_COMMIT") {
    Some(c) => c,
    None => "",
};

/// Answers one request. Never fails: errors become OPA-shaped responses.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let caller = Caller {
        peer,
        req_id: state.decision_log.request_id(),
        started,
    };
    let response = match route(state, req, caller).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    tracing::debug!(
        req_method = %method,
        resp_status = response.status().as_u16(),
        resp_duration_us = started.elapsed().as_micros() as u64,
        "Sent response."
    );
    response
}

/// Answers one request on a diagnostic listener (`--diagnostic-addr`): as
/// OPA's diagnostic router, only `GET /health`, `GET /health/{name}` and
/// `GET /metrics`; anything else is not found there.
pub async fn handle_diagnostic(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> HttpResponse {
    let path = req.uri().path();
    if path == "/health" || path.starts_with("/health/") || path == "/metrics" {
        return handle(state, req, peer).await;
    }
    ApiError::NotFound(format!(
        "no route for `{} {path}` on the diagnostic listener",
        req.method()
    ))
    .into_response()
}

/// Who asked and when: what the decision log and `?metrics` need.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    pub peer: SocketAddr,
    /// OPA's `req_id` (0 without the decision log).
    pub req_id: u64,
    pub started: Instant,
}

async fn route(
    state: &AppState,
    req: Request<Incoming>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let raw_path = req.uri().path();
    // Decoded for routing only (borrowed when nothing is escaped); data
    // paths are decoded per segment by `data_path`.
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest(format!("path `{raw_path}` is not valid UTF-8")))?;
    let params = Params::parse(req.uri().query());
    let sent = req.method().clone();
    // As Go's router: a GET route answers HEAD too (hyper sends no body).
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        other => other.clone(),
    };
    let allow = |allow: &'static str| ApiError::MethodNotAllowed {
        method: sent.to_string(),
        allow,
    };

    if let Some(rest) = sub_path(&path, "/v1/data") {
        let data_path = data_path(raw_path, "/v1/data", rest)?;
        return match method {
            Method::POST | Method::GET => v1_data(state, req, &data_path, &params, caller).await,
            // As OPA's router: `DELETE /v1/data/{path...}` only, so the bare
            // `/v1/data` has no DELETE (`/v1/data/` is the root, refused).
            Method::DELETE if rest.is_empty() => Err(allow("GET, POST, PUT, PATCH")),
            Method::PUT | Method::PATCH | Method::DELETE => {
                manage::data_write(state, req, data_path).await
            }
            _ => Err(allow("GET, POST, PUT, PATCH, DELETE")),
        };
    }
    if let Some(rest) = sub_path(&path, "/v1/batch/data") {
        let data_path = data_path(raw_path, "/v1/batch/data", rest)?;
        return match method {
            Method::POST => batch::handle(state, req, &data_path, &params, caller).await,
            _ => Err(allow("POST")),
        };
    }
    if path == "/v1/status" {
        return match method {
            Method::GET => Ok(manage::status(state, &params)),
            _ => Err(allow("GET")),
        };
    }
    if path == "/metrics" {
        return match method {
            Method::GET => Ok(manage::metrics(state)),
            _ => Err(allow("GET")),
        };
    }
    if let Some(rest) = sub_path(&path, "/v0/data") {
        let data_path = data_path(raw_path, "/v0/data", rest)?;
        return match method {
            Method::POST => v0_data(state, req, &data_path, &params, caller).await,
            _ => Err(allow("POST")),
        };
    }
    if path == "/" {
        return match method {
            Method::POST => v0_data(state, req, &state.default_decision, &params, caller).await,
            _ => Err(allow("POST")),
        };
    }
    if path == "/health" {
        return match method {
            Method::GET => manage::health(state, &params),
            _ => Err(allow("GET")),
        };
    }
    if let Some(check) = path.strip_prefix("/health/") {
        return match method {
            Method::GET => manage::health_policy(state, check).await,
            _ => Err(allow("GET")),
        };
    }
    if path == "/v1/policies" {
        return match method {
            Method::GET => manage::list_policies(state, &params),
            _ => Err(allow("GET")),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/policies/") {
        let id = &id.to_owned(); // `path` borrows `req`, which PUT takes
        return match method {
            Method::GET => manage::get_policy(state, id, &params),
            Method::PUT => manage::put_policy(state, req, id).await,
            Method::DELETE => manage::delete_policy(state, id).await,
            _ => Err(allow("GET, PUT, DELETE")),
        };
    }
    Err(ApiError::NotFound(format!(
        "no route for `{method} {raw_path}`"
    )))
}

/// The data path under `prefix`: OPA splits the path as sent, then decodes
/// each segment (`/v1/data/a%2Fb` reads the key `a/b`). Only when the prefix
/// itself was sent encoded is the decoded remainder (`decoded_rest`) used.
fn data_path(raw_path: &str, prefix: &str, decoded_rest: &str) -> Result<DataPath, ApiError> {
    match sub_path(raw_path, prefix) {
        Some(raw_rest) => DataPath::parse_escaped(raw_rest)
            .ok_or_else(|| ApiError::BadRequest(format!("path `{raw_path}` is not valid UTF-8"))),
        None => Ok(DataPath::parse(decoded_rest)),
    }
}

/// The part of `path` after `prefix` when `path` is `prefix` or below it.
fn sub_path<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn malformed(context: &str, err: wire::MalformedInput) -> ApiError {
    ApiError::BadRequest(format!("{context}{}", err.0))
}

/// `GET|POST /v1/data/{path}`: the document at `path`, wrapped in `result`.
/// Cacheable decisions are looked up by their raw input bytes before any
/// parsing; a miss stores the finished response (without a `decision_id`,
/// which is added per answer when the decision log is on).
async fn v1_data(
    state: &AppState,
    req: Request<Incoming>,
    path: &DataPath,
    params: &Params,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let body = if req.method() == Method::POST {
        Some(body::read_input(req, &state.limits, "").await?)
    } else {
        None
    };
    let snapshot = state.snapshots.load();
    let logged = Logged {
        state,
        snapshot: &snapshot,
        path,
        caller,
        input: match (&body, &params.input) {
            (Some(body), _) => Input::Body(body),
            (None, Some(text)) => Input::Raw(text),
            (None, None) => Input::None,
        },
        batch: None,
    };
    let key = cache_key(state, &snapshot, path, params, body.as_deref());
    if let Some(key) = &key {
        if let Some(cached) = state.cache.get(key) {
            state.metrics.cache_hits.inc();
            let answer = match logged.write(Answer::Wrapped(&cached), None, None).await {
                Some(id) => logged::with_decision_id(&cached, &id, params.pretty).into(),
                None => cached,
            };
            return Ok(decision_response(answer, "hit"));
        }
        state.metrics.cache_misses.inc();
    }

    let parse_started = Instant::now();
    let (input, missing_input) = match &body {
        Some(body) => {
            body::check_body_depth(body, &state.limits, "")?;
            let input = wire::parse_data_request(body, &state.keys)
                .map_err(|e| malformed("body contains malformed input document: ", e))?;
            let missing = input.is_none();
            (input, missing)
        }
        None => match &params.input {
            Some(text) => {
                let context = "parameter contains malformed input document: ";
                body::check_depth(text, &state.limits, context)?;
                let input = wire::parse_query_input(text, &state.keys)
                    .map_err(|e| malformed(context, e))?;
                (Some(input), false)
            }
            None => (None, false),
        },
    };
    let parse_ns = parse_started.elapsed().as_nanos() as u64;

    let eval_started = Instant::now();
    let evaluated = state
        .evaluation
        .evaluate(&snapshot, path, input, eval_options(params))
        .await;
    let eval_ns = eval_started.elapsed().as_nanos() as u64;
    // The timers, for `?metrics` and the decision log: built once, if asked.
    let timers = (params.metrics || params.instrument || state.decision_log.enabled()).then(|| {
        BTreeMap::from([
            ("timer_rego_input_parse_ns", parse_ns),
            ("timer_rego_query_eval_ns", eval_ns),
            (
                "timer_server_handler_ns",
                caller.started.elapsed().as_nanos() as u64,
            ),
        ])
    });
    let outcome = match evaluated {
        Ok(outcome) => outcome,
        Err(err) => {
            logged
                .write(Answer::None, Some(&err), timers.as_ref())
                .await;
            return Err(err.into());
        }
    };

    let result = match &outcome {
        Outcome::Defined(value) => Some(value),
        Outcome::Undefined => None,
    };
    let response = DataResponse {
        provenance: params.provenance.then(|| Provenance {
            version: VERSION,
            build_commit: BUILD_COMMIT,
            build_timestamp: "",
            build_hostname: "",
            revision: snapshot.revision(),
            bundles: snapshot
                .bundle_revisions()
                .iter()
                .map(|(name, revision)| (name.as_str(), wire::BundleRevision { revision }))
                .collect(),
        }),
        metrics: timers
            .as_ref()
            .filter(|_| params.metrics || params.instrument),
        result,
        warning: missing_input.then_some(wire::MISSING_INPUT),
    };
    let bytes = Bytes::from(wire::to_json(&response, params.pretty));
    let status = match key {
        Some(key) => {
            state.cache.insert(key, &bytes);
            "miss"
        }
        None => "bypass",
    };
    let answer = match logged
        .write(Answer::Wrapped(&bytes), None, timers.as_ref())
        .await
    {
        Some(id) => logged::with_decision_id(&bytes, &id, params.pretty).into(),
        None => bytes,
    };
    Ok(decision_response(answer, status))
}

/// The cache key of a `/v1/data` request, or `None` when its answer must not
/// come from (or go to) the cache.
fn cache_key(
    state: &AppState,
    snapshot: &Snapshot,
    path: &DataPath,
    params: &Params,
    body: Option<&[u8]>,
) -> Option<Key> {
    if !state.cache.enabled()
        || params.metrics
        || params.instrument
        || params.provenance
        || !snapshot.cacheable(path)
    {
        return None;
    }
    let flags = cache_flags(params);
    let path = path.as_ref_str();
    Some(match (body, &params.input) {
        (Some(body), _) => Key::new(
            snapshot.digest(),
            RequestKind::DataPost,
            flags,
            path,
            &[body],
        ),
        (None, Some(input)) => Key::new(
            snapshot.digest(),
            RequestKind::DataGet,
            flags,
            path,
            &[input.as_bytes()],
        ),
        (None, None) => Key::new(snapshot.digest(), RequestKind::DataGet, flags, path, &[]),
    })
}

/// The request options that change a decision's bytes.
fn cache_flags(params: &Params) -> u8 {
    u8::from(params.pretty) | (u8::from(params.strict_builtin_errors) << 1)
}

fn decision_response(body: Bytes, cache: &'static str) -> HttpResponse {
    let mut response = json_response(body, true);
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(cache));
    response
}

/// `POST /v0/data/{path}` and `POST /`: the body is the input, the answer is
/// the bare document, and undefined is a 404.
async fn v0_data(
    state: &AppState,
    req: Request<Incoming>,
    path: &DataPath,
    params: &Params,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let context = "unexpected parse error for input: ";
    let body = body::read_input(req, &state.limits, context).await?;
    body::check_body_depth(&body, &state.limits, context)?;
    let input = wire::parse_raw_input(&body, &state.keys).map_err(|e| {
        malformed(
            "unexpected parse error for input: body contains malformed input document: ",
            e,
        )
    })?;
    let snapshot = state.snapshots.load();
    let evaluated = state
        .evaluation
        .evaluate(&snapshot, path, Some(input), eval_options(params))
        .await;
    let logged = Logged {
        state,
        snapshot: &snapshot,
        path,
        caller,
        input: std::str::from_utf8(&body).map_or(Input::None, Input::Raw),
        batch: None,
    };
    match evaluated {
        Ok(Outcome::Defined(value)) => {
            let answer = wire::to_json(&value, params.pretty);
            logged.write(Answer::Bare(&answer), None, None).await;
            Ok(json_response(answer, false))
        }
        Ok(Outcome::Undefined) => {
            logged.write(Answer::None, None, None).await;
            let what = if snapshot.evaluator().rules().covers(path) {
                "document undefined"
            } else {
                "document missing"
            };
            Err(ApiError::Undefined(format!("{what}: {path}")))
        }
        Err(err) => {
            logged.write(Answer::None, Some(&err), None).await;
            Err(err.into())
        }
    }
}

fn eval_options(params: &Params) -> EvalOptions {
    EvalOptions {
        strict_builtin_errors: params.strict_builtin_errors,
        time_limit: None,
    }
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
