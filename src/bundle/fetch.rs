//! The HTTP side of bundle downloads: a client for `http://` and
//! `https://` (rustls, with a configured CA or the system's roots) and one
//! conditional GET: `If-None-Match`, `Prefer: modes=snapshot[;wait=N]`,
//! credentials and headers, the response-header timeout, and the body
//! bounded by the size limit.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::download::{Bearer, BundleSource};

/// The content type under which a service confirms long polling.
const LONG_POLL_TYPE: &str = "application/vnd.openpolicyagent.bundles";

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for `http://` and `https://`, trusting `ca_cert` (PEM), the
/// system's roots when there is none, or both with `system_roots`.
pub fn client(ca_cert: Option<&std::path::Path>, system_roots: bool) -> Result<HttpClient> {
    let mut roots = rustls::RootCertStore::empty();
    if system_roots || ca_cert.is_none() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = ca_cert {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("{}: cannot read the CA certificate", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: bad PEM", path.display()))?;
        if certs.is_empty() {
            bail!("{}: no certificate found", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("{}: bad CA certificate", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS configuration")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

pub struct Downloaded {
    /// `None`: 304, nothing new.
    pub body: Option<Vec<u8>>,
    pub etag: Option<String>,
    pub long_poll: bool,
}

pub struct DownloadError {
    pub message: String,
    pub http_code: Option<u16>,
}

impl DownloadError {
    fn new(message: impl Into<String>) -> DownloadError {
        DownloadError {
            message: message.into(),
            http_code: None,
        }
    }
}

pub async fn download(
    client: &HttpClient,
    source: &BundleSource,
    etag: Option<&str>,
) -> Result<Downloaded, DownloadError> {
    let request = build_request(source, etag).map_err(|e| DownloadError::new(format!("{e:#}")))?;
    let header_timeout = match (source.response_header_timeout, source.long_polling_timeout) {
        (_, Some(wait)) => Some(wait + source.response_header_timeout.unwrap_or(Duration::ZERO)),
        (timeout, None) => timeout,
    };
    let response = match header_timeout {
        Some(limit) => tokio::time::timeout(limit, client.request(request))
            .await
            .map_err(|_| {
                DownloadError::new(format!("no response from {} within {limit:?}", source.url))
            })?,
        None => client.request(request).await,
    }
    .map_err(|e| DownloadError::new(format!("request to {} failed: {e}", source.url)))?;
    let status = response.status();
    let long_poll = source.long_polling_timeout.is_some()
        && response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(LONG_POLL_TYPE));
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Downloaded {
            body: None,
            etag: etag.map(str::to_string),
            long_poll,
        });
    }
    if status != StatusCode::OK {
        return Err(DownloadError {
            message: format!(
                "server replied with {}",
                status.canonical_reason().unwrap_or(status.as_str())
            ),
            http_code: Some(status.as_u16()),
        });
    }
    let new_etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = usize::try_from(source.size_limit).unwrap_or(usize::MAX);
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(response.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| DownloadError::new("timed out reading the bundle"))?
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            DownloadError::new(format!(
                "bundle exceeds the size limit of {} bytes",
                source.size_limit
            ))
        } else {
            DownloadError::new(format!("reading the bundle: {e}"))
        }
    })?
    .to_bytes();
    Ok(Downloaded {
        body: Some(body.to_vec()),
        etag: new_etag,
        long_poll,
    })
}

/// How long reading a bundle's body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(300);

fn build_request(source: &BundleSource, etag: Option<&str>) -> Result<Request<Empty<Bytes>>> {
    let mut builder = Request::get(&source.url);
    for (name, value) in &source.headers {
        builder = builder.header(
            HeaderName::try_from(name.as_str()).with_context(|| format!("header {name}"))?,
            HeaderValue::try_from(value.as_str()).with_context(|| format!("header {name}"))?,
        );
    }
    if let Some(bearer) = &source.bearer {
        let (scheme, token) = match bearer {
            Bearer::Token { scheme, token } => (scheme, token.clone()),
            Bearer::File { scheme, path } => (
                scheme,
                std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read the token", path.display()))?
                    .trim()
                    .to_string(),
            ),
        };
        builder = builder.header(AUTHORIZATION, format!("{scheme} {token}"));
    }
    if let Some(etag) = etag {
        builder = builder.header(IF_NONE_MATCH, etag);
    }
    let prefer = match source.long_polling_timeout {
        Some(wait) => format!("modes=snapshot;wait={}", wait.as_secs()),
        None => "modes=snapshot".to_string(),
    };
    builder = builder.header("prefer", prefer);
    builder
        .body(Empty::new())
        .with_context(|| format!("bad bundle URL {}", source.url))
}
