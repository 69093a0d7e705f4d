//! OPA's API authentication and authorization (`--authentication`,
//! `--authorization=basic`). Authentication finds who is calling: a bearer
//! token, or the subject of the TLS client certificate (found by the
//! listener, `crate::tls`). Authorization asks the policy at
//! `default_authorization_decision` (`data.system.authz.allow`) whether the
//! request may go on, with OPA's input document: `method`, `path`, `params`,
//! `headers`, `identity`, and the parsed `body` of decision requests. It runs
//! before routing, on every listener, as OPA wraps its routers with it; when
//! it is off a request pays one branch. A body is parsed once: the decision
//! is evaluated on the very value the policy saw ([`ParsedBody`]), as OPA
//! hands its handlers the authorizer's parse.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{AUTHORIZATION, COOKIE, HOST, TRANSFER_ENCODING};
use hyper::{HeaderMap, Method, Request, Version};
use regorus::Value;

use super::body::{self, AlreadyRead};
use super::{wire, ApiError, AppState, Body, Peer};
use crate::policy::{DataPath, EvalOptions, Outcome};

/// How callers are identified (`--authentication`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Authentication {
    /// No identity.
    #[default]
    Off,
    /// The bearer token of the `Authorization` header.
    Token,
    /// The subject of the verified TLS client certificate.
    Tls,
}

/// How requests are admitted (`--authorization`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Authorization {
    /// Every request goes on.
    #[default]
    Off,
    /// The authorization decision must allow each request.
    Basic,
}

/// The server's authentication and authorization settings.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub authentication: Authentication,
    /// With `--authorization=basic`: the decision each request needs.
    pub decision: Option<DataPath>,
}

/// OPA's messages (`server/types`).
const MSG_UNAUTHORIZED: &str = "request rejected by administrative policy";
const MSG_UNDEFINED: &str = "authorization policy missing or undefined";
const MSG_NOT_A_DECISION: &str = "document missing or undefined";

/// Longer `Authorization` headers are ignored, as OPA's token identifier does.
const MAX_AUTHORIZATION_HEADER: usize = 8192;

/// A decision body the policy saw, parsed: the handler takes its input from
/// it (exactly the `input` key of `/v1/data`, the whole of `/v0/data`).
#[derive(Clone)]
pub(super) struct ParsedBody(pub Value);

/// Lets `req` through, or refuses it with OPA's error. A decision request's
/// body is read here when the policy needs it; the request goes on carrying
/// it, read and parsed, so the handler does neither again.
pub(super) async fn authorize(
    state: &AppState,
    req: Request<Body>,
    peer: &Peer,
) -> Result<Request<Body>, ApiError> {
    let Some(decision) = &state.auth.decision else {
        return Ok(req);
    };
    let (input, req) = input(state, req, peer).await?;
    let snapshot = state.snapshots.load();
    let outcome = state
        .evaluation
        .evaluate(&snapshot, decision, Some(input), EvalOptions::default())
        .await?;
    verdict(&outcome)?;
    Ok(req)
}

/// OPA's reading of the decision: `true`, or an object whose `allowed` is
/// `true`, lets the request through; an object's string `reason` becomes the
/// refusal's message.
fn verdict(outcome: &Outcome) -> Result<(), ApiError> {
    let value = match outcome {
        Outcome::Undefined => return Err(ApiError::Internal(MSG_UNDEFINED.into())),
        Outcome::Defined(value) => value,
    };
    match value {
        Value::Bool(true) => return Ok(()),
        Value::Object(fields) => match fields.get(&Value::from("allowed")) {
            None => return Err(ApiError::Internal(MSG_NOT_A_DECISION.into())),
            Some(Value::Bool(true)) => return Ok(()),
            Some(_) => {
                if let Some(Value::String(reason)) = fields.get(&Value::from("reason")) {
                    return Err(ApiError::Unauthorized(reason.to_string()));
                }
            }
        },
        _ => {}
    }
    Err(ApiError::Unauthorized(MSG_UNAUTHORIZED.into()))
}

/// The authorization input of `req`, as OPA's `makeInput` builds it.
async fn input(
    state: &AppState,
    req: Request<Body>,
    peer: &Peer,
) -> Result<(Value, Request<Body>), ApiError> {
    let path = request_path(req.uri().path())?;
    let expects_body = expects_body(req.method(), &path);
    // Built as regorus values directly: a JSON text in between cost about
    // as much as the decision.
    let mut fields = BTreeMap::new();
    fields.insert(
        Value::from("method"),
        Value::from(req.method().as_str().to_uppercase()),
    );
    fields.insert(Value::from("params"), params(req.uri().query()));
    fields.insert(
        Value::from("headers"),
        headers(req.headers(), req.version()),
    );
    if let Some(identity) = identity(state, req.headers(), peer) {
        fields.insert(Value::from("identity"), Value::from(identity));
    }
    fields.insert(
        Value::from("path"),
        Value::from(path.into_iter().map(Value::from).collect::<Vec<_>>()),
    );
    if !expects_body {
        return Ok((Value::from(fields), req));
    }
    let (parts, body) = req.into_parts();
    let mut reading = Request::new(body);
    *reading.headers_mut() = parts.headers.clone();
    let read = body::read_input(reading, &state.limits, "").await?;
    let mut req = Request::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    if !read.iter().all(u8::is_ascii_whitespace) {
        body::check_body_depth(&read, &state.limits, "")?;
        let parsed = wire::parse_raw_input(&read, &state.keys).map_err(|e| {
            ApiError::BadRequest(format!("body contains malformed input document: {}", e.0))
        })?;
        fields.insert(Value::from("body"), parsed.clone());
        req.extensions_mut().insert(ParsedBody(parsed));
    }
    req.extensions_mut().insert(AlreadyRead(read));
    Ok((Value::from(fields), req))
}

/// Who is calling, by `--authentication`.
fn identity(state: &AppState, headers: &HeaderMap, peer: &Peer) -> Option<String> {
    match state.auth.authentication {
        Authentication::Off => None,
        Authentication::Token => headers
            .get(AUTHORIZATION)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(bearer_token)
            .map(str::to_string),
        Authentication::Tls => peer.identity.as_deref().map(str::to_string),
    }
}

/// The token of `Bearer <token>`, as OPA's `^Bearer\s+(\S+)$`.
fn bearer_token(value: &str) -> Option<&str> {
    if value.is_empty() || value.len() > MAX_AUTHORIZATION_HEADER {
        return None;
    }
    let rest = value.strip_prefix("Bearer")?;
    let token = rest.trim_start_matches(is_go_space);
    let spaced = token.len() < rest.len();
    (spaced && !token.is_empty() && !token.contains(is_go_space)).then_some(token)
}

/// `\s` of Go's regular expressions.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// The path's segments: the path decoded (as Go's `URL.Path`), split on `/`,
/// each segment unescaped once more (as OPA's `parsePath`). An invalid escape
/// in a segment is a 400, as in OPA.
fn request_path(raw: &str) -> Result<Vec<String>, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let Some(rest) = decoded.strip_prefix('/') else {
        return Ok(Vec::new());
    };
    rest.split('/').map(unescape_segment).collect()
}

fn unescape_segment(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    for (i, _) in segment.match_indices('%') {
        let valid = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !valid {
            let end = (i + 3).min(bytes.len());
            let shown = String::from_utf8_lossy(&bytes[i..end]);
            return Err(ApiError::BadRequest(format!(
                "invalid URL escape \"{shown}\""
            )));
        }
    }
    Ok(percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned())
}

/// The query as Go's `url.Values`: each name with all its values.
fn params(query: Option<&str>) -> Value {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params
            .entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    lists(params)
}

/// An object of names to lists of strings, as Go's `url.Values` and
/// `http.Header` are.
fn lists(map: BTreeMap<String, Vec<String>>) -> Value {
    let fields: BTreeMap<Value, Value> = map
        .into_iter()
        .map(|(name, values)| {
            let values: Vec<Value> = values.into_iter().map(Value::from).collect();
            (Value::from(name), Value::from(values))
        })
        .collect();
    Value::from(fields)
}

/// The headers as Go's `http.Header`: canonical names, each with all its
/// values in order. Go's server moves `Host` and `Transfer-Encoding` out of
/// the header map, so they are not here either. Over HTTP/2 a client may
/// split `Cookie` into several fields; Go's server joins them with `; `.
fn headers(headers: &HeaderMap, version: Version) -> Value {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if name == HOST || name == TRANSFER_ENCODING {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        let values = out.entry(canonical_header(name.as_str())).or_default();
        match values.last_mut() {
            Some(cookies) if name == COOKIE && version == Version::HTTP_2 => {
                cookies.push_str("; ");
                cookies.push_str(&value);
            }
            _ => values.push(value.into_owned()),
        }
    }
    lists(out)
}

/// Go's `CanonicalMIMEHeaderKey`: `x-custom-2` is `X-Custom-2`; a name with
/// a character outside HTTP's token characters is left as it is.
fn canonical_header(name: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !name.chars().all(token) {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let c = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            c
        })
        .collect()
}

/// Whether the body goes into the input: as OPA, a `POST` to `/`, or to
/// `/v0/data...` or `/v1/data...`; and a `POST` to `/v1/batch/data...`, the
/// batch API OPA's open-source server lacks.
fn expects_body(method: &Method, path: &[String]) -> bool {
    if method != Method::POST {
        return false;
    }
    match path {
        [only] => only.is_empty(),
        [version, batch, data, ..] if version == "v1" && batch == "batch" && data == "data" => true,
        [version, data, ..] => (version == "v0" || version == "v1") && data == "data",
        [] => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_as_opa_reads_them() {
        assert_eq!(bearer_token("Bearer secret"), Some("secret"));
        assert_eq!(bearer_token("Bearer \t secret"), Some("secret"));
        for refused in [
            "Bearer",
            "Bearer ",
            "Bearersecret",
            "Bearer a b",
            "Bearer a ",
            "bearer a",
            "Basic a",
        ] {
            assert_eq!(bearer_token(refused), None, "{refused}");
        }
        let long = format!("Bearer {}", "x".repeat(MAX_AUTHORIZATION_HEADER));
        assert_eq!(bearer_token(&long), None);
    }

    #[test]
    fn paths_split_then_unescape_each_segment() {
        assert_eq!(request_path("").unwrap(), Vec::<String>::new());
        assert_eq!(request_path("/").unwrap(), vec![""]);
        assert_eq!(
            request_path("/v1/data/a%2Fb").unwrap(),
            vec!["v1", "data", "a", "b"]
        );
        assert_eq!(request_path("/x/%2525").unwrap(), vec!["x", "%"]);
        let err = request_path("/x/%25zz").unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(m) if m == "invalid URL escape \"%zz\""));
    }

    #[test]
    fn header_names_are_canonical_as_in_go() {
        assert_eq!(canonical_header("x-custom-2"), "X-Custom-2");
        assert_eq!(canonical_header("content-type"), "Content-Type");
        assert_eq!(canonical_header("custom-header-3?"), "custom-header-3?");
    }

    #[test]
    fn http2_cookie_fields_are_joined_as_go_joins_them() {
        let mut map = HeaderMap::new();
        map.append(COOKIE, "a=1".parse().unwrap());
        map.append(COOKIE, "b=2".parse().unwrap());
        map.append("x-one", "1".parse().unwrap());
        let cookie = |version| {
            let value = headers(&map, version);
            (value["Cookie"].clone(), value["X-One"].clone())
        };
        let one = Value::from(vec![Value::from("1")]);
        assert_eq!(
            cookie(Version::HTTP_2),
            (Value::from(vec![Value::from("a=1; b=2")]), one.clone())
        );
        assert_eq!(
            cookie(Version::HTTP_11),
            (
                Value::from(vec![Value::from("a=1"), Value::from("b=2")]),
                one
            )
        );
    }

    #[test]
    fn decisions_are_read_as_opa_reads_them() {
        let object = |text: &str| Outcome::Defined(Value::from_json_str(text).unwrap());
        assert!(verdict(&Outcome::Defined(Value::Bool(true))).is_ok());
        assert!(verdict(&object(r#"{"allowed": true}"#)).is_ok());
        let refused = |outcome: Outcome| match verdict(&outcome) {
            Err(ApiError::Unauthorized(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(Outcome::Defined(Value::Bool(false))),
            MSG_UNAUTHORIZED
        );
        assert_eq!(refused(object("7")), MSG_UNAUTHORIZED);
        assert_eq!(
            refused(object(r#"{"allowed": false, "reason": "no"}"#)),
            "no"
        );
        assert_eq!(
            refused(object(r#"{"allowed": false, "reason": 0}"#)),
            MSG_UNAUTHORIZED
        );
        assert!(matches!(
            verdict(&object(r#"{"foo": "bar"}"#)),
            Err(ApiError::Internal(m)) if m == MSG_NOT_A_DECISION
        ));
        assert!(matches!(
            verdict(&Outcome::Undefined),
            Err(ApiError::Internal(m)) if m == MSG_UNDEFINED
        ));
    }

    #[test]
    fn only_decision_posts_carry_a_body() {
        let path = |p: &str| request_path(p).unwrap();
        assert!(expects_body(&Method::POST, &path("/")));
        assert!(expects_body(&Method::POST, &path("/v1/data/x")));
        assert!(expects_body(&Method::POST, &path("/v0/data")));
        assert!(!expects_body(&Method::PUT, &path("/v1/data/x")));
        assert!(expects_body(&Method::POST, &path("/v1/batch/data/x")));
        assert!(!expects_body(&Method::POST, &path("/v1/batchy/data/x")));
        assert!(!expects_body(&Method::POST, &path("/v1/policies/x")));
    }
}
