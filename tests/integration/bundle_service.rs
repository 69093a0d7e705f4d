//! A bundle service for tests: a real HTTP server on 127.0.0.1:0 (on its own
//! thread and runtime) that serves one resource the way CVAT's server does —
//! a gzip'd tarball, `Content-Type: application/x-tar`, an `ETag`, and 304
//! on a matching `If-None-Match` — and records what it was asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use regent::bundle::BundleFile;

use crate::support::spawn_test_server;

/// What one request asked and got.
#[derive(Clone, Debug)]
pub struct Seen {
    pub if_none_match: Option<String>,
    pub authorization: Option<String>,
    pub prefer: Option<String>,
    pub status: u16,
}

struct Served {
    /// `false`: answer 503, as a service that is still starting.
    available: bool,
    resource: String,
    /// `(from, to)`: `from` answers 302 to `to`.
    redirect: Option<(String, String)>,
    content_type: String,
    body: Vec<u8>,
    etag: String,
    seen: Vec<Seen>,
}

pub struct BundleService {
    pub addr: SocketAddr,
    state: Arc<Mutex<Served>>,
}

impl BundleService {
    /// Serves `body` at `resource` with `etag`.
    pub fn start(resource: &str, body: Vec<u8>, etag: &str) -> BundleService {
        BundleService::start_inner(resource, body, etag, None)
    }

    /// The same over https, with `tests/fixtures/tls/cert.pem` (signed by
    /// `ca.pem`, valid for 127.0.0.1 and localhost).
    pub fn start_tls(resource: &str, body: Vec<u8>, etag: &str) -> BundleService {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("cert.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        BundleService::start_inner(resource, body, etag, Some(acceptor))
    }

    fn start_inner(
        resource: &str,
        body: Vec<u8>,
        etag: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> BundleService {
        let state = Arc::new(Mutex::new(Served {
            available: true,
            resource: resource.to_string(),
            redirect: None,
            content_type: "application/x-tar".to_string(),
            body,
            etag: etag.to_string(),
            seen: Vec::new(),
        }));
        let shared = state.clone();
        let addr = spawn_test_server(tls, move |req| {
            let answered = answer(&shared, &req);
            async move { answered }
        });
        BundleService { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Serves new bytes under a new ETag.
    pub fn set(&self, body: Vec<u8>, etag: &str) {
        let mut served = self.state.lock().unwrap();
        served.body = body;
        served.etag = etag.to_string();
    }

    pub fn set_redirect(&self, from: &str, to: &str) {
        self.state.lock().unwrap().redirect = Some((from.to_string(), to.to_string()));
    }

    pub fn set_content_type(&self, content_type: &str) {
        self.state.lock().unwrap().content_type = content_type.to_string();
    }

    pub fn set_available(&self, available: bool) {
        self.state.lock().unwrap().available = available;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Waits until `pred` holds for the requests seen (at most 30 s).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred(&self.seen()) {
            assert!(
                Instant::now() < deadline,
                "bundle service never saw: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn answer(state: &Mutex<Served>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut served = state.lock().unwrap();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let if_none_match = header("if-none-match");
    let redirect = served
        .redirect
        .clone()
        .filter(|(from, _)| req.uri().path() == from);
    let (status, body) = if !served.available {
        (StatusCode::SERVICE_UNAVAILABLE, Vec::new())
    } else if redirect.is_some() {
        (StatusCode::FOUND, Vec::new())
    } else if req.uri().path() != served.resource {
        (StatusCode::NOT_FOUND, Vec::new())
    } else if if_none_match.as_deref() == Some(served.etag.as_str()) {
        (StatusCode::NOT_MODIFIED, Vec::new())
    } else {
        (StatusCode::OK, served.body.clone())
    };
    served.seen.push(Seen {
        if_none_match,
        authorization: header("authorization"),
        prefer: header("prefer"),
        status: status.as_u16(),
    });
    let mut response = Response::builder();
    if let Some((_, to)) = redirect {
        response = response.header("location", to);
    }
    // A 304 has no body, so no Content-Type (as most servers send it).
    if status != StatusCode::NOT_MODIFIED {
        response = response.header("content-type", served.content_type.clone());
    }
    response
        .status(status)
        .header("etag", served.etag.clone())
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// A CVAT-shaped bundle: `rules/<file>.rego`, no manifest, no data.
pub fn cvat_bundle(rules: &[(&str, &str)]) -> Vec<u8> {
    let files: Vec<BundleFile> = rules
        .iter()
        .map(|(name, text)| BundleFile {
            name: format!("rules/{name}"),
            bytes: text.as_bytes().to_vec(),
        })
        .collect();
    regent::bundle::archive::write_tarball(&files).unwrap()
}

/// A gzip'd tarball with raw entry names (which `tar::Builder` would refuse).
pub fn raw_tarball(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}
