//! The one place where errors become HTTP responses. Every failure of the API
//! is an [`ApiError`]; [`ApiError::into_response`] picks OPA's status code and
//! body (`{"code", "message", "errors"}`, indented as OPA indents errors).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::wire::to_json;
use crate::policy::{Diagnostic, EvalError, Location, QueryError};

/// OPA's message for a request that failed in evaluation.
const MSG_EVALUATION_ERROR: &str = "error(s) occurred while evaluating query";

#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_parameter`: malformed body, bad parameter, too deep.
    BadRequest(String),
    /// 413 `invalid_parameter`: the body (or its decompressed form) is over the limit.
    TooLarge(String),
    /// 500 `internal_error` with the evaluation error in `errors`.
    Eval(EvalError),
    /// 404 `undefined_document` (v0 API and the default decision).
    Undefined(String),
    /// 404 `resource_not_found`: a policy id, an unknown route.
    NotFound(String),
    /// 405 `invalid_operation`, with the methods the route accepts.
    MethodNotAllowed { method: String, allow: &'static str },
    /// A failed health check: OPA answers these with `{"error": ...}`.
    Unhealthy(String),
    /// 400: a written module does not parse or compile, or what a deleted
    /// one leaves does not compile, or an ad-hoc query does neither. The
    /// code and message are OPA's for the operation (`invalid_parameter`
    /// for a write or a query, `invalid_operation` for a delete;
    /// [`MSG_COMPILE_ERROR`] for modules, [`MSG_PARSE_QUERY_ERROR`] or
    /// [`MSG_COMPILE_QUERY_ERROR`] for a query); each error has its own
    /// (`rego_parse_error`, `rego_compile_error`...).
    Compile(&'static str, &'static str, Vec<(&'static str, Diagnostic)>),
    /// 500 `internal_error`: a task serving the request failed, or the
    /// authorization policy gave no decision.
    Internal(String),
    /// 401 `unauthorized`: the authorization policy refused the request.
    Unauthorized(String),
}

/// OPA's message for a policy write that does not compile.
pub const MSG_COMPILE_ERROR: &str = "error(s) occurred while compiling module(s)";
/// OPA's messages for an ad-hoc query that does not parse, or compile.
pub const MSG_PARSE_QUERY_ERROR: &str = "error(s) occurred while parsing query";
pub const MSG_COMPILE_QUERY_ERROR: &str = "error(s) occurred while compiling query";

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ErrorDetail<'a>>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a Location>,
}

#[derive(Serialize)]
struct HealthBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Compile(..) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Eval(_) | ApiError::Unhealthy(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Undefined(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = self.body(true);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

fn error_body(code: &str, message: &str, errors: Vec<ErrorDetail<'_>>, pretty: bool) -> Vec<u8> {
    to_json(
        &ErrorBody {
            code,
            message,
            errors,
        },
        pretty,
    )
}

impl ApiError {
    /// The OPA-shaped body (`{"code", "message", "errors"}`). OPA writes
    /// error responses with `json.MarshalIndent(err, "", "  ")`, hence
    /// `pretty` for whole responses; batch items are compact.
    pub fn body(&self, pretty: bool) -> Vec<u8> {
        match self {
            ApiError::Unhealthy(message) => to_json(&HealthBody { error: message }, false),
            ApiError::Eval(err) => {
                let detail = ErrorDetail {
                    code: err.code.as_str(),
                    message: &err.message,
                    location: err.location.as_ref(),
                };
                error_body("internal_error", MSG_EVALUATION_ERROR, vec![detail], pretty)
            }
            ApiError::BadRequest(m) | ApiError::TooLarge(m) => {
                error_body("invalid_parameter", m, vec![], pretty)
            }
            ApiError::Internal(m) => error_body("internal_error", m, vec![], pretty),
            ApiError::Unauthorized(m) => error_body("unauthorized", m, vec![], pretty),
            ApiError::Compile(code, message, errors) => {
                let details = errors
                    .iter()
                    .map(|(code, d)| ErrorDetail {
                        code,
                        message: &d.message,
                        location: d.location.as_ref(),
                    })
                    .collect();
                error_body(code, message, details, pretty)
            }
            ApiError::Undefined(m) => error_body("undefined_document", m, vec![], pretty),
            ApiError::NotFound(m) => error_body("resource_not_found", m, vec![], pretty),
            ApiError::MethodNotAllowed { method, .. } => error_body(
                "invalid_operation",
                &format!("method `{method}` is not allowed on this path"),
                vec![],
                pretty,
            ),
        }
    }
}

impl From<EvalError> for ApiError {
    fn from(err: EvalError) -> ApiError {
        ApiError::Eval(err)
    }
}

impl From<QueryError> for ApiError {
    /// As OPA's query API answers: a query that does not parse or compile is
    /// the client's error (400), an empty one a server error (OPA reaches
    /// its evaluator with it), a failed evaluation as for a decision.
    fn from(err: QueryError) -> ApiError {
        match err {
            QueryError::Empty => ApiError::Internal("cannot evaluate empty query".into()),
            QueryError::Parse(d) => ApiError::Compile(
                "invalid_parameter",
                MSG_PARSE_QUERY_ERROR,
                vec![("rego_parse_error", d)],
            ),
            QueryError::Compile(code, d) => ApiError::Compile(
                "invalid_parameter",
                MSG_COMPILE_QUERY_ERROR,
                vec![(code, d)],
            ),
            QueryError::Eval(e) => ApiError::Eval(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(e: ApiError) -> (StatusCode, String) {
        let r = e.into_response();
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn undefined_document_matches_opa_bytes() {
        let (status, text) = body(ApiError::Undefined(
            "document missing: data.system.main".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The exact 86 bytes OPA sends for this case.
        assert_eq!(
            text,
            "{\n  \"code\": \"undefined_document\",\n  \"message\": \"document missing: data.system.main\"\n}\n"
        );
        assert_eq!(text.len(), 86);
    }
}
