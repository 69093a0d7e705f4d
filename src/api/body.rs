//! Reading request bodies under the configured limits: the raw size (checked
//! against `Content-Length` before reading, and while reading), transparent
//! gzip decompression with a bound on the decompressed size (a gzip bomb stops
//! at the bound, it is never inflated in full), the JSON nesting depth, and
//! YAML decision bodies (converted to JSON under the same bounds).

use std::io::Read;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Limited};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::Request;

use super::error::ApiError;
use super::wire::json_depth_exceeds;
use super::yaml::{self, YamlError};
use super::Body;

/// Request body limits (see `--max-request-body-bytes` and friends).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted body as sent, in bytes.
    pub max_body_bytes: usize,
    /// Largest accepted body after gzip decompression, in bytes.
    pub max_decompressed_bytes: usize,
    /// Deepest accepted nesting of JSON arrays and objects.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 256 << 20,
            max_decompressed_bytes: 512 << 20,
            max_json_depth: 64,
        }
    }
}

const TOO_LARGE: &str = "request body too large";

/// A decision body the authorizer already read (`--authorization=basic`),
/// decompressed and converted as [`read_input`] returns it.
#[derive(Clone)]
pub(super) struct AlreadyRead(pub Bytes);

/// Reads the whole body of `req`, decompressing it when it is gzip-encoded.
/// The JSON depth is checked separately, by [`check_body_depth`].
/// `context` prefixes decompression errors as OPA does for the endpoint.
pub async fn read(req: Request<Body>, limits: &Limits, context: &str) -> Result<Bytes, ApiError> {
    if let Some(AlreadyRead(body)) = req.extensions().get() {
        return Ok(body.clone());
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(ApiError::TooLarge(TOO_LARGE.to_string()));
    }
    let gzip = req
        .headers()
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("gzip")));
    let incoming = match req.into_body() {
        Either::Left(incoming) => incoming,
        // Only the authorizer makes these, and it marks them `AlreadyRead`.
        Either::Right(full) => {
            debug_assert!(
                false,
                "a body built by the authorizer is read by `AlreadyRead`"
            );
            let Ok(collected) = full.collect().await;
            return Ok(collected.to_bytes());
        }
    };
    let body = Limited::new(incoming, limits.max_body_bytes)
        .collect()
        .await
        .map_err(|err| {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::TooLarge(TOO_LARGE.to_string())
            } else {
                ApiError::BadRequest(format!("{context}could not read the body: {err}"))
            }
        })?
        .to_bytes();
    let body = if gzip {
        gunzip(&body, limits.max_decompressed_bytes, context)?
    } else {
        body
    };
    Ok(body)
}

/// Reads a decision request's body as [`read`] does; when its
/// `Content-Type` mentions `yaml` (as OPA checks), converts it to JSON under
/// the decompressed-size and depth limits (see [`super::yaml`]), on the
/// blocking pool.
pub async fn read_input(
    req: Request<Body>,
    limits: &Limits,
    context: &str,
) -> Result<Bytes, ApiError> {
    if let Some(AlreadyRead(body)) = req.extensions().get() {
        return Ok(body.clone());
    }
    let yaml = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    let body = read(req, limits, context).await?;
    if !yaml {
        return Ok(body);
    }
    // A large document takes a while to convert: off the request threads.
    let (max, depth) = (limits.max_decompressed_bytes, limits.max_json_depth);
    let converted = tokio::task::spawn_blocking(move || yaml::to_json(&body, max, depth))
        .await
        .map_err(|e| ApiError::BadRequest(format!("{context}could not read YAML: {e}")))?;
    match converted {
        Ok(json) => Ok(Bytes::from(json)),
        Err(YamlError::Malformed(err)) => Err(ApiError::BadRequest(format!(
            "{context}body contains malformed input document: {err}"
        ))),
        Err(YamlError::TooLarge) => Err(ApiError::TooLarge(format!(
            "{context}{TOO_LARGE}: as JSON, the YAML document is over {} bytes \
             (--max-decompressed-body-bytes)",
            limits.max_decompressed_bytes
        ))),
        Err(YamlError::TooLong) => Err(ApiError::TooLarge(format!(
            "{context}{TOO_LARGE}: YAML bodies are limited to {} bytes (JSON bodies are not)",
            yaml::MAX_YAML_BYTES
        ))),
    }
}

/// Checks a body against the depth limit before it is parsed (not in
/// [`read`]: a decision cache hit never parses, so it need not scan).
pub fn check_body_depth(body: &[u8], limits: &Limits, context: &str) -> Result<(), ApiError> {
    if json_depth_exceeds(body, limits.max_json_depth) {
        return Err(ApiError::BadRequest(format!(
            "{context}body contains malformed input document: exceeded max depth of {}",
            limits.max_json_depth
        )));
    }
    Ok(())
}

fn gunzip(body: &[u8], max: usize, context: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut decoder = flate2::read::GzDecoder::new(body).take(max as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|err| {
        ApiError::BadRequest(format!("{context}could not decompress the body: {err}"))
    })?;
    if out.len() > max {
        return Err(ApiError::TooLarge(format!(
            "{context}could not decompress the body: gzip payload too large"
        )));
    }
    Ok(Bytes::from(out))
}

/// Checks a query-string input against the depth limit.
pub fn check_depth(text: &str, limits: &Limits, context: &str) -> Result<(), ApiError> {
    if json_depth_exceeds(text.as_bytes(), limits.max_json_depth) {
        return Err(ApiError::BadRequest(format!(
            "{context}exceeded max depth of {}",
            limits.max_json_depth
        )));
    }
    Ok(())
}
