//! The operator-facing routes: `/health` (and health policies),
//! `/v1/status`, `/metrics`, the policy API (`/v1/policies`) and data writes
//! (`PUT`/`PATCH`/`DELETE /v1/data`). Writes go to the policy store off the
//! async workers; a write that does not build changes nothing. The decision
//! routes are in `api.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use regorus::Value;
use serde::Serialize;

use super::wire::{self, Params};
use super::{body, json_response, ApiError, AppState, Body, HttpResponse, ResultBody};
use crate::policy::data_write::{DataWrite, DataWriteError};
use crate::policy::store::WriteError;
use crate::policy::{DataPath, EvalOptions, Outcome};

#[derive(Serialize)]
struct StatusBody<'a> {
    revision: &'a str,
    activated_at_unix: u64,
    modules: usize,
    last_error: Option<LastErrorBody>,
    bundles: std::collections::BTreeMap<String, crate::bundle::status::StatusBody>,
    /// With decision log uploads: the last upload's error, `{}` after a
    /// success (OPA's `decision_logs` status).
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_logs: Option<crate::decision_log::UploadStatus>,
    labels: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct LastErrorBody {
    source: String,
    message: String,
    time_unix: u64,
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /v1/status`: the active revision and the last failed activation
/// (a file reload or a policy write that did not build), if any.
pub(super) fn status(state: &AppState, params: &Params) -> HttpResponse {
    let snapshot = state.snapshots.load();
    let result = StatusBody {
        revision: snapshot.revision(),
        activated_at_unix: unix(snapshot.activated_at()),
        modules: snapshot.modules().len(),
        last_error: state.store.last_error().map(|e| LastErrorBody {
            source: e.source,
            message: e.message,
            time_unix: unix(e.time),
        }),
        bundles: state.store.bundle_statuses().to_json(),
        decision_logs: state.decision_log.upload_status(),
        labels: &state.labels,
    };
    json_response(wire::to_json(&ResultBody { result }, params.pretty), false)
}

/// `GET /v1/config`: the active configuration, as OPA shows it (service
/// credentials and key material removed; see `OpaConfig::active_config`).
pub(super) fn config(state: &AppState, params: &Params) -> HttpResponse {
    let result = state.config.as_ref();
    json_response(wire::to_json(&ResultBody { result }, params.pretty), false)
}

/// `GET /metrics`: Prometheus text exposition.
pub(super) fn metrics(state: &AppState) -> HttpResponse {
    let indexed = state.snapshots.load().evaluator().indexed_copies();
    let text = state.metrics.render(&state.cache, indexed);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /health`: 200 once policies are loaded, which is before the server
/// binds. With `?bundle` or `?bundles`, 500 until every configured bundle
/// has been activated once; with `?plugins`, 500 while a plugin (see
/// [`plugin_states`]) not named by an `exclude-plugin` is not `OK`. The
/// options are read as OPA's `getBoolParam` reads them (`?bundles=false` is
/// off).
pub(super) fn health(state: &AppState, params: &Params) -> Result<HttpResponse, ApiError> {
    if (params.flag("bundle") || params.flag("bundles"))
        && !state.store.bundle_statuses().all_activated()
    {
        return Err(ApiError::Unhealthy(
            "one or more bundles are not activated".into(),
        ));
    }
    let excluded = match params.all("exclude-plugin") {
        [only] if only.is_empty() => &[],
        names => names,
    };
    if params.flag("plugins")
        && plugin_states(state)
            .iter()
            .any(|(name, ok)| !ok && !excluded.iter().any(|x| x == name))
    {
        return Err(ApiError::Unhealthy("one or more plugins are not up".into()));
    }
    Ok(json_response(b"{}\n".to_vec(), false))
}

/// OPA's plugins that Regent has, by the name OPA gives them, and whether
/// each is `OK`: `bundle` (when bundles are configured) is `OK` once every
/// bundle has been activated, as OPA's bundle plugin becomes; `decision_logs`
/// (when configured) is `OK` from the start.
fn plugin_states(state: &AppState) -> Vec<(&'static str, bool)> {
    let mut plugins = Vec::new();
    let statuses = state.store.bundle_statuses();
    if statuses.any() {
        plugins.push(("bundle", statuses.all_activated()));
    }
    if state.decision_log.enabled() {
        plugins.push(("decision_logs", true));
    }
    plugins
}

/// `GET /health/{name}`: evaluates `data.system.health.{name}` with OPA's
/// input: `plugin_state` (each plugin's `OK` or `NOT_READY`) and
/// `plugins_ready` (every plugin has been `OK`; the plugins' states never go
/// back). Only `true` is healthy.
pub(super) async fn health_policy(state: &AppState, name: &str) -> Result<HttpResponse, ApiError> {
    let mut segments = vec!["system".to_string(), "health".to_string()];
    segments.extend(
        name.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    let path = DataPath::from_segments(segments);
    let plugins = plugin_states(state);
    let input = serde_json::json!({
        "plugin_state": plugins
            .iter()
            .map(|&(name, ok)| (name, if ok { "OK" } else { "NOT_READY" }))
            .collect::<BTreeMap<_, _>>(),
        "plugins_ready": plugins.iter().all(|&(_, ok)| ok),
    });
    let input =
        Value::from_json_str(&input.to_string()).map_err(|e| ApiError::Unhealthy(e.to_string()))?;
    let snapshot = state.snapshots.load();
    match state
        .evaluation
        .evaluate(&snapshot, &path, Some(input), EvalOptions::default())
        .await
    {
        Ok(Outcome::Defined(Value::Bool(true))) => Ok(json_response(b"{}\n".to_vec(), false)),
        Ok(Outcome::Undefined) => Err(ApiError::Unhealthy(format!(
            "health check ({path}) was undefined"
        ))),
        Ok(Outcome::Defined(_)) => Err(ApiError::Unhealthy(format!(
            "health check ({path}) returned unexpected value"
        ))),
        Err(err) => Err(ApiError::Unhealthy(err.to_string())),
    }
}

#[derive(Serialize)]
struct PolicyBody<'a> {
    id: &'a str,
    raw: &'a str,
}

/// `GET /v1/policies`: every loaded module, id and raw text (no AST).
pub(super) fn list_policies(state: &AppState, params: &Params) -> Result<HttpResponse, ApiError> {
    let snapshot = state.snapshots.load();
    let result: Vec<PolicyBody> = snapshot
        .modules()
        .iter()
        .map(|m| PolicyBody {
            id: &m.id,
            raw: &m.text,
        })
        .collect();
    Ok(json_response(
        wire::to_json(&ResultBody { result }, params.pretty),
        false,
    ))
}

/// `GET /v1/policies/{id}`.
pub(super) fn get_policy(
    state: &AppState,
    id: &str,
    params: &Params,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.snapshots.load();
    let module = snapshot
        .module(id)
        .ok_or_else(|| ApiError::NotFound(format!("storage_not_found_error: policy id {id:?}")))?;
    let result = PolicyBody {
        id: &module.id,
        raw: &module.text,
    };
    Ok(json_response(
        wire::to_json(&ResultBody { result }, params.pretty),
        false,
    ))
}

/// `PUT`/`PATCH`/`DELETE /v1/data/{path}`: 204 on success, as OPA.
pub(super) async fn data_write(
    state: &AppState,
    req: Request<Body>,
    path: DataPath,
) -> Result<HttpResponse, ApiError> {
    let method = req.method().clone();
    let if_none_match = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let path = path.segments().to_vec();
    let write = if method == Method::DELETE {
        DataWrite::Delete { path }
    } else {
        let body = body::read(req, &state.limits, "").await?;
        body::check_body_depth(&body, &state.limits, "")?;
        if method == Method::PUT {
            // Read as Go reads it: see `wire::go_text`.
            let value = serde_json::from_str(&wire::go_text(&body)).map_err(|e| {
                ApiError::BadRequest(format!("body contains malformed document: {e}"))
            })?;
            DataWrite::Put {
                path,
                value,
                if_none_match,
            }
        } else {
            let ops = serde_json::from_str(&wire::go_text(&body)).map_err(|e| {
                ApiError::BadRequest(format!("body contains malformed JSON patch: {e}"))
            })?;
            DataWrite::Patch { path, ops }
        }
    };
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || store.write_data(write))
        .await
        .map_err(|e| ApiError::Internal(format!("data write failed: {e}")))?;
    match result {
        Ok(()) => Ok(empty_response(StatusCode::NO_CONTENT)),
        Err(WriteError::Data(DataWriteError::NotModified)) => {
            Ok(empty_response(StatusCode::NOT_MODIFIED))
        }
        Err(err) => Err(write_error(err, None)),
    }
}

fn empty_response(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// `PUT /v1/policies/{id}`: the body is the module's Rego text. The module is
/// compiled with all the others and a new snapshot activated, or nothing
/// changes and the answer is 400 with the errors.
pub(super) async fn put_policy(
    state: &AppState,
    req: Request<Body>,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let body = body::read(req, &state.limits, "").await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("policy body is not valid UTF-8".into()))?;
    let (store, owned_id, owned_text) = (state.store.clone(), id.to_string(), text.clone());
    tokio::task::spawn_blocking(move || store.put_policy(&owned_id, &owned_text))
        .await
        .map_err(|e| ApiError::Internal(format!("policy write failed: {e}")))?
        .map_err(|e| write_error(e, Some((id, &text))))?;
    Ok(json_response(b"{}\n".to_vec(), false))
}

/// `DELETE /v1/policies/{id}`: removes the module, unless the rest then
/// fails to compile (400, nothing changes).
pub(super) async fn delete_policy(state: &AppState, id: &str) -> Result<HttpResponse, ApiError> {
    let (store, owned_id) = (state.store.clone(), id.to_string());
    tokio::task::spawn_blocking(move || store.delete_policy(&owned_id))
        .await
        .map_err(|e| ApiError::Internal(format!("policy write failed: {e}")))?
        .map_err(|e| match write_error(e, None) {
            // OPA's code when what the delete leaves does not compile.
            ApiError::Compile(_, message, errors) => {
                ApiError::Compile("invalid_operation", message, errors)
            }
            other => other,
        })?;
    Ok(json_response(b"{}\n".to_vec(), false))
}

/// A failed write as OPA reports it. `written` is the module a PUT sent: when
/// it does not parse on its own, the error is a `rego_parse_error`.
fn write_error(err: WriteError, written: Option<(&str, &str)>) -> ApiError {
    match err {
        WriteError::NoSuchPolicy(id) => {
            ApiError::NotFound(format!("storage_not_found_error: policy id {id:?}"))
        }
        WriteError::Data(DataWriteError::NotFound(message)) => {
            ApiError::NotFound(format!("storage_not_found_error: {message}"))
        }
        WriteError::Data(DataWriteError::Invalid(message)) => ApiError::BadRequest(message),
        WriteError::Data(DataWriteError::NotModified) => {
            ApiError::BadRequest("document exists (If-None-Match: *)".into())
        }
        WriteError::Build(err) => {
            let diagnostic = crate::policy::Diagnostic::from_regorus(&err);
            let code = match written {
                Some((id, text)) if !crate::policy::parses(id, text) => "rego_parse_error",
                _ => diagnostic.compile_code(),
            };
            ApiError::Compile(
                "invalid_parameter",
                super::error::MSG_COMPILE_ERROR,
                vec![(code, diagnostic)],
            )
        }
    }
}
