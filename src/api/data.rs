//! The decision routes: `GET|POST /v1/data/{path}` (through the decision
//! cache), `POST /v0/data/{path}` and `POST /` (the default decision). The
//! request path proper: read the snapshot, look the answer up, parse the
//! input, evaluate (`offload.rs`), encode, log (`logged.rs`).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use regorus::Value;

use super::authz::ParsedBody;
use super::logged::{self, Answer, Input, Logged};
use super::wire::{self, DataResponse, Params, Provenance};
use super::{
    body, json_response, ApiError, AppState, Body, Caller, HttpResponse, BUILD_COMMIT,
    CACHE_HEADER, VERSION,
};
use crate::cache::{Key, RequestKind};
use crate::policy::{DataPath, EvalOptions, Outcome, Snapshot};

fn malformed(context: &str, err: wire::MalformedInput) -> ApiError {
    ApiError::BadRequest(format!("{context}{}", err.0))
}

/// `GET|POST /v1/data/{path}`: the document at `path`, wrapped in `result`.
/// Cacheable decisions are looked up by their raw input bytes before any
/// parsing; a miss stores the finished response (without a `decision_id`,
/// which is added per answer when the decision log is on).
pub(super) async fn v1_data(
    state: &AppState,
    mut req: Request<Body>,
    path: &DataPath,
    params: &Params,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let authorized = authorized_body(state, &mut req);
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
        query: "",
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
        // The value the authorization policy saw: its `input`, exactly as
        // OPA reads its authorizer's parse (no key but `input`, no error).
        Some(_) if authorized.is_some() => {
            let input = authorized.and_then(|ParsedBody(body)| match body {
                Value::Object(fields) => fields.get(&Value::from("input")).cloned(),
                _ => None,
            });
            let missing = input.is_none();
            (input, missing)
        }
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
pub(super) fn cache_flags(params: &Params) -> u8 {
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
pub(super) async fn v0_data(
    state: &AppState,
    mut req: Request<Body>,
    path: &DataPath,
    params: &Params,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let context = "unexpected parse error for input: ";
    let authorized = authorized_body(state, &mut req);
    let body = body::read_input(req, &state.limits, context).await?;
    let input = match authorized {
        // The value the authorization policy saw.
        Some(ParsedBody(input)) => input,
        None => {
            body::check_body_depth(&body, &state.limits, context)?;
            wire::parse_raw_input(&body, &state.keys).map_err(|e| {
                malformed(
                    "unexpected parse error for input: body contains malformed input document: ",
                    e,
                )
            })?
        }
    };
    let snapshot = state.snapshots.load();
    let evaluated = state
        .evaluation
        .evaluate(&snapshot, path, Some(input), eval_options(params))
        .await;
    let logged = Logged {
        state,
        snapshot: &snapshot,
        path,
        query: "",
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

/// The body the authorization policy saw (`--authorization=basic` only).
fn authorized_body(state: &AppState, req: &mut Request<Body>) -> Option<ParsedBody> {
    state.auth.decision.as_ref()?;
    req.extensions_mut().remove::<ParsedBody>()
}

pub(super) fn eval_options(params: &Params) -> EvalOptions {
    EvalOptions {
        strict_builtin_errors: params.strict_builtin_errors,
        time_limit: None,
    }
}
