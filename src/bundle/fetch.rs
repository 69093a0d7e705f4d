//! The HTTP side of bundle downloads: a client for `http://` and
//! `https://` (rustls, with a configured CA or the system's roots) and one
//! conditional GET: `If-None-Match`, `Prefer: modes=snapshot,delta[;wait=N]`,
//! credentials and headers, redirects (at most 10; credentials stay on the
//! first host), the response-header timeout, and the body bounded by the
//! size limit.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::download::{Bearer, BundleSource};

/// The content type under which a service confirms long polling.
const LONG_POLL_TYPE: &str = "application/vnd.openpolicyagent.bundles";

pub type HttpClient<B = Empty<Bytes>> = Client<HttpsConnector<HttpConnector>, B>;

/// A client for `http://` and `https://`, trusting `ca_cert` (PEM), the
/// system's roots when there is none, or both with `system_roots`; `B` is
/// the request body type (none for downloads, the payload for uploads).
pub fn client<B>(ca_cert: Option<&std::path::Path>, system_roots: bool) -> Result<HttpClient<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
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

/// `long_polling`: whether the service confirmed long polling on its last
/// bundle (a 304 carries no `Content-Type` to confirm it again, and keeps it,
/// as OPA's downloader does).
pub async fn download(
    client: &HttpClient,
    source: &BundleSource,
    etag: Option<&str>,
    long_polling: bool,
) -> Result<Downloaded, DownloadError> {
    // As OPA: `wait` is asked for only once the service has confirmed long
    // polling; before, a service could hold a request it will not answer
    // as a long poll.
    let wait = source.long_polling_timeout.filter(|_| long_polling);
    let service_timeout = source.service.response_header_timeout;
    let header_timeout = match (service_timeout, wait) {
        (_, Some(wait)) => Some(wait.saturating_add(service_timeout.unwrap_or(Duration::ZERO))),
        (timeout, None) => timeout,
    };
    // Redirects are followed (at most 10, as Go's client does); credentials
    // are not sent to another host.
    let mut url = source.url.clone();
    let mut same_host = true;
    let mut redirects = 0;
    let response = loop {
        let request = build_request(source, &url, etag, same_host, wait)
            .map_err(|e| DownloadError::new(format!("{e:#}")))?;
        let response = match header_timeout {
            Some(limit) => tokio::time::timeout(limit, client.request(request))
                .await
                .map_err(|_| {
                    DownloadError::new(format!("no response from {url} within {limit:?}"))
                })?,
            None => client.request(request).await,
        }
        .map_err(|e| DownloadError::new(format!("request to {url} failed: {}", chain(&e))))?;
        let status = response.status();
        if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
            break response;
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| DownloadError::new(format!("{url}: redirect without a Location")))?;
        if redirects == 10 {
            return Err(DownloadError::new(format!(
                "{}: stopped after 10 redirects",
                source.url
            )));
        }
        redirects += 1;
        let next = resolve(&url, location);
        same_host = same_host && authority(&next) == authority(&source.url);
        url = next;
    };
    let status = response.status();
    let long_poll = source.long_polling_timeout.is_some()
        && response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(LONG_POLL_TYPE));
    if status == StatusCode::NOT_MODIFIED {
        let sent = response.headers().get(ETAG).and_then(|v| v.to_str().ok());
        return Ok(Downloaded {
            body: None,
            etag: sent.or(etag).map(str::to_string),
            long_poll: wait.is_some(),
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
    let limit =
        usize::try_from(super::archive::total_limit(source.size_limit)).unwrap_or(usize::MAX);
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(response.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| DownloadError::new("timed out reading the bundle"))?
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            DownloadError::new(format!("bundle exceeds the size limit of {limit} bytes"))
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

/// The authority (`host:port`) of `url`, if it has one.
fn authority(url: &str) -> Option<String> {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.authority().map(ToString::to_string))
}

/// A `Location` against the URL that answered with it.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let Ok(uri) = base.parse::<hyper::Uri>() else {
        return location.to_string();
    };
    let origin = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(ToString::to_string).unwrap_or_default()
    );
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = uri.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{origin}{dir}/{location}")
    }
}

/// An error with its causes: hyper's own text ("client error (Connect)")
/// hides the reason (a refused connection, an untrusted certificate).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A service's configured headers and, if given, its bearer token (a token
/// file is read again for every request, as OPA does).
pub fn with_credentials(
    mut builder: hyper::http::request::Builder,
    headers: &[(String, String)],
    bearer: Option<&Bearer>,
) -> Result<hyper::http::request::Builder> {
    for (name, value) in headers {
        builder = builder.header(
            HeaderName::try_from(name.as_str()).with_context(|| format!("header {name}"))?,
            HeaderValue::try_from(value.as_str()).with_context(|| format!("header {name}"))?,
        );
    }
    if let Some(bearer) = bearer {
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
    Ok(builder)
}

fn build_request(
    source: &BundleSource,
    url: &str,
    etag: Option<&str>,
    credentials: bool,
    wait: Option<Duration>,
) -> Result<Request<Empty<Bytes>>> {
    let bearer = source.service.bearer.as_ref().filter(|_| credentials);
    // After a redirect to another host, configured headers go along except
    // the ones Go's client strips on such a redirect.
    let headers: Vec<(String, String)> = source
        .service
        .headers
        .iter()
        .filter(|(name, _)| credentials || !is_sensitive(name))
        .cloned()
        .collect();
    let mut builder = with_credentials(Request::get(url), &headers, bearer)?;
    if let Some(etag) = etag {
        builder = builder.header(IF_NONE_MATCH, etag);
    }
    let prefer = match wait {
        Some(wait) => format!("modes=snapshot,delta;wait={}", wait.as_secs()),
        None => "modes=snapshot,delta".to_string(),
    };
    builder = builder.header("prefer", prefer);
    builder
        .body(Empty::new())
        .with_context(|| format!("bad bundle URL {url}"))
}

/// The headers Go's HTTP client drops on a redirect to another host.
fn is_sensitive(name: &str) -> bool {
    ["authorization", "www-authenticate", "cookie", "cookie2"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn locations_resolve_against_the_answering_url() {
        assert_eq!(resolve("http://a:1/x/y", "https://b/z"), "https://b/z");
        assert_eq!(resolve("http://a:1/x/y", "/z"), "http://a:1/z");
        assert_eq!(resolve("http://a:1/x/y", "z"), "http://a:1/x/z");
    }
}
