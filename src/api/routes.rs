//! Which handler answers which path and method: OPA's routes, each named
//! with OPA's `handler` label for `http_request_duration_seconds`, their 405s
//! with OPA's `Allow`, and the data path a route carries, read from the path
//! as sent.

use hyper::{Method, Request};

use super::wire::Params;
use super::{batch, data, manage, query, ApiError, AppState, Body, Caller, HttpResponse};
use crate::metrics::Handler;
use crate::policy::DataPath;

/// Answers `req` by its route, naming the route in `handler` with OPA's
/// label for `http_request_duration_seconds` (`/metrics`, and paths no route
/// takes, are not instrumented in OPA either).
pub(super) async fn route(
    state: &AppState,
    req: Request<Body>,
    caller: Caller,
    handler: &mut Option<Handler>,
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
        *handler = Some(Handler::V1Data);
        let data_path = data_path(raw_path, "/v1/data", rest)?;
        return match method {
            Method::POST | Method::GET => {
                data::v1_data(state, req, &data_path, &params, caller).await
            }
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
        *handler = Some(Handler::V1BatchData);
        let data_path = data_path(raw_path, "/v1/batch/data", rest)?;
        return match method {
            Method::POST => batch::handle(state, req, &data_path, &params, caller).await,
            _ => Err(allow("POST")),
        };
    }
    if path == "/v1/query" {
        *handler = Some(Handler::V1Query);
        return match method {
            Method::GET | Method::POST => query::v1_query(state, req, &params, caller).await,
            _ => Err(allow("GET, POST")),
        };
    }
    if path == "/v1/config" {
        *handler = Some(Handler::V1Config);
        return match method {
            Method::GET => Ok(manage::config(state, &params)),
            _ => Err(allow("GET")),
        };
    }
    if path == "/v1/status" {
        *handler = Some(Handler::V1Status);
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
        *handler = Some(Handler::V0Data);
        let data_path = data_path(raw_path, "/v0/data", rest)?;
        return match method {
            Method::POST => data::v0_data(state, req, &data_path, &params, caller).await,
            _ => Err(allow("POST")),
        };
    }
    if path == "/" {
        *handler = Some(Handler::Index);
        return match method {
            Method::POST => {
                data::v0_data(state, req, &state.default_decision, &params, caller).await
            }
            _ => Err(allow("POST")),
        };
    }
    if path == "/health" {
        *handler = Some(Handler::Health);
        return match method {
            Method::GET => manage::health(state, &params),
            _ => Err(allow("GET")),
        };
    }
    if let Some(check) = path.strip_prefix("/health/") {
        *handler = Some(Handler::Health);
        return match method {
            Method::GET => manage::health_policy(state, check).await,
            _ => Err(allow("GET")),
        };
    }
    if path == "/v1/policies" {
        *handler = Some(Handler::V1Policies);
        return match method {
            Method::GET => manage::list_policies(state, &params),
            _ => Err(allow("GET")),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/policies/") {
        *handler = Some(Handler::V1Policies);
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
