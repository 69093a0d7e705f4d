//! The API secured as OPA secures it: HTTPS listeners, bearer tokens and
//! client certificates as identities, the `system.authz` policy admitting
//! requests, and TLS files reloaded when they change. Real server, real TLS
//! handshakes over 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use regent::api::authz::{Auth, Authentication};
use regent::policy::DataPath;
use regent::tls::{MinVersion, TlsSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::support::{gzip, Conn, Reply, TestServer};

const APP: &str = "package app\n\nimport rego.v1\n\nallow if input.user == \"alice\"\n";

const AUTHZ: &str = r#"package system.authz

import rego.v1

default allow := false

# The operator's token may do anything.
allow if input.identity == "operator-secret"

# The application's token may only ask decisions under data.app, and never
# for mallory.
allow if {
	input.identity == "app-secret"
	input.method == "POST"
	input.path[0] == "v1"
	input.path[1] == "data"
	input.path[2] == "app"
	input.body.input.user != "mallory"
}

# ... and batches of them, none for mallory.
allow if {
	input.identity == "app-secret"
	input.path[1] == "batch"
	every item in input.body.inputs { item.user != "mallory" }
}

# The kubelet's probe needs no token.
allow if {
	input.method == "GET"
	input.path == ["health"]
	input.params.bundles == [""]
	input.headers["X-Probe"] == ["kubelet"]
}

# An object decision, for the `default_authorization_decision` test.
decision := {"allowed": false, "reason": "tokens are checked elsewhere"}
"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn token_auth(decision: &str) -> Auth {
    Auth {
        authentication: Authentication::Token,
        decision: Some(DataPath::parse(decision)),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    crate::support::request(
        server.addr,
        method,
        path,
        headers,
        Bytes::from(body.to_string()),
    )
    .await
}

fn assert_true(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "{\"result\":true}\n")
    );
}

fn assert_refused(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"code": "unauthorized", "message": message})
    );
}

#[tokio::test]
async fn the_authorization_policy_admits_requests_by_token_path_body_and_headers() {
    let server = TestServer::start_configured(&[("app.rego", APP), ("authz.rego", AUTHZ)], |c| {
        c.auth = token_auth("system/authz/allow");
    })
    .await;
    let refused = "request rejected by administrative policy";
    let decide = r#"{"input": {"user": "alice"}}"#;
    let app = bearer("app-secret");
    let as_app = |path: &'static str, body: &'static str| {
        crate::support::request(
            server.addr,
            "POST",
            path,
            &[("authorization", "Bearer app-secret")],
            Bytes::from(body),
        )
    };

    // No token: nothing, not even the health check or the metrics.
    assert_refused(
        &send(&server, "POST", "/v1/data/app/allow", &[], decide).await,
        refused,
    );
    assert_refused(&send(&server, "GET", "/health", &[], "").await, refused);
    assert_refused(&send(&server, "GET", "/metrics", &[], "").await, refused);

    // The application's token: its decisions, read from the body it sends.
    let reply = as_app("/v1/data/app/allow", decide).await;
    assert_true(&reply);
    let mallory = r#"{"input": {"user": "mallory"}}"#;
    let reply = as_app("/v1/data/app/allow", mallory).await;
    assert_refused(&reply, refused);
    assert_refused(
        &send(
            &server,
            "GET",
            "/v1/policies",
            &[("authorization", &app)],
            "",
        )
        .await,
        refused,
    );
    // The decision is made on the input the policy saw: OPA's exact `input`
    // key, not the case-insensitive reading of a request without a policy.
    let sneaky = r#"{"input": {"user": "alice"}, "INPUT": {"user": "mallory"}}"#;
    let reply = as_app("/v1/data/app/allow", sneaky).await;
    assert_true(&reply);
    let sneaky = r#"{"Input": {"user": "mallory"}}"#;
    let reply = as_app("/v1/data/app/allow", sneaky).await;
    assert_refused(&reply, refused);
    // Batches show the policy their inputs too.
    let batch = r#"{"inputs": {"a": {"user": "alice"}, "b": {"user": "bob"}}}"#;
    let reply = as_app("/v1/batch/data/app/allow", batch).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["responses"]["a"]["result"], true);
    let batch = r#"{"inputs": {"a": {"user": "alice"}, "m": {"user": "mallory"}}}"#;
    let reply = as_app("/v1/batch/data/app/allow", batch).await;
    assert_refused(&reply, refused);
    // A malformed header names nobody.
    let sloppy = "Bearer app-secret trailing";
    assert_refused(
        &send(
            &server,
            "POST",
            "/v1/data/app/allow",
            &[("authorization", sloppy)],
            decide,
        )
        .await,
        refused,
    );

    // The body the policy read is the body the decision gets: gzip and YAML too.
    let zipped = crate::support::request(
        server.addr,
        "POST",
        "/v1/data/app/allow",
        &[("authorization", &app), ("content-encoding", "gzip")],
        gzip(decide.as_bytes()),
    )
    .await;
    assert_eq!(
        (zipped.status, zipped.body.as_str()),
        (StatusCode::OK, "{\"result\":true}\n")
    );
    let yaml = "input:\n  user: alice\n";
    let headers = [
        ("authorization", app.as_str()),
        ("content-type", "application/x-yaml"),
    ];
    let reply = send(&server, "POST", "/v1/data/app/allow", &headers, yaml).await;
    assert_true(&reply);
    let reply = send(
        &server,
        "POST",
        "/v1/data/app/allow",
        &headers,
        "input:\n  user: mallory\n",
    )
    .await;
    assert_refused(&reply, refused);
    // A body the policy cannot read is the caller's error.
    let reply = send(
        &server,
        "POST",
        "/v1/data/app/allow",
        &[("authorization", &app)],
        "{oops",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.json()["code"], "invalid_parameter");

    // Headers and query parameters, as Go presents them.
    let probe = send(
        &server,
        "GET",
        "/health?bundles",
        &[("x-probe", "kubelet")],
        "",
    )
    .await;
    assert_eq!(probe.status, StatusCode::OK, "{}", probe.body);
    let reply = send(&server, "GET", "/health", &[("x-probe", "kubelet")], "").await;
    assert_refused(&reply, refused);

    // Ad-hoc queries are not decisions under data.app: refused to the app.
    let reply = send(
        &server,
        "GET",
        "/v1/query?q=data.app.allow",
        &[("authorization", &app)],
        "",
    )
    .await;
    assert_refused(&reply, refused);

    // The operator's token: everything, the policy and query APIs included.
    let operator = bearer("operator-secret");
    let reply = send(
        &server,
        "POST",
        "/v1/query",
        &[("authorization", &operator)],
        r#"{"query": "x := data.app.allow", "input": {"user": "alice"}}"#,
    )
    .await;
    assert_eq!(reply.json(), serde_json::json!({"result": [{"x": true}]}));
    let reply = send(
        &server,
        "GET",
        "/v1/policies",
        &[("authorization", &operator)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = send(
        &server,
        "GET",
        "/nowhere",
        &[("authorization", &operator)],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn object_decisions_give_their_reason_and_a_missing_policy_is_an_error() {
    let files = [("app.rego", APP), ("authz.rego", AUTHZ)];
    let server = TestServer::start_configured(&files, |c| {
        c.auth = token_auth("system/authz/decision");
    })
    .await;
    let reply = send(
        &server,
        "GET",
        "/health",
        &[("authorization", "Bearer operator-secret")],
        "",
    )
    .await;
    assert_refused(&reply, "tokens are checked elsewhere");
    server.stop().await.unwrap();

    let server = TestServer::start_configured(&[("app.rego", APP)], |c| {
        c.auth = token_auth("system/authz/allow");
    })
    .await;
    let reply = send(&server, "GET", "/health", &[], "").await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert_eq!(
        reply.json(),
        serde_json::json!({"code": "internal_error", "message": "authorization policy missing or undefined"})
    );
    server.stop().await.unwrap();
}

fn tls_settings(cert: PathBuf, key: PathBuf) -> TlsSettings {
    TlsSettings {
        cert_file: cert,
        key_file: key,
        ca_file: None,
        client_auth: false,
        min_version: MinVersion::Tls12,
        older_version_asked: false,
        cipher_suites: None,
        refresh: None,
    }
}

/// A client trusting `ca` (a fixture), presenting `identity` (certificate
/// and key fixtures) if given.
fn client_config(ca: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture(ca)).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(fixture(cert))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(fixture(key)).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// `GET path` over a new TLS connection; any failure (handshake, a
/// certificate refused by either side) is an error.
async fn tls_get(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Reply, String> {
    tls_get_with(addr, config, path, &[]).await
}

async fn tls_get_with(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = Conn::over(tls).await.map_err(|e| e.to_string())?;
    conn.try_send("GET", path, headers, Bytes::new())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn https_listeners_serve_the_api_and_only_over_tls() {
    let server = TestServer::start_configured(&[("app.rego", APP)], |c| {
        c.tls = Some(tls_settings(fixture("cert.pem"), fixture("key.pem")));
    })
    .await;
    let decision = "/v1/data/app/allow?input=%7B%22user%22%3A%22alice%22%7D";
    let reply = tls_get(server.addr, client_config("ca.pem", None), decision)
        .await
        .unwrap();
    assert_true(&reply);
    let reply = tls_get(server.addr, client_config("ca.pem", None), "/health")
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "{}\n")
    );
    // A client that does not trust the certificate cannot talk to it.
    let err = tls_get(server.addr, client_config("other-ca.pem", None), "/health").await;
    assert!(err.is_err(), "{err:?}");
    // Plain HTTP on the TLS port gets no answer.
    let addr = server.addr;
    let plain = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(
        !plain.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&plain)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn client_certificates_are_required_verified_and_name_the_caller() {
    // The identity is Go's rendering of the subject, which the policy matches.
    let authz = "package system.authz\n\nimport rego.v1\n\nallow if input.identity == \"CN=regent-client,OU=b+OU=a,O=Regent Tests,C=GB\"\n";
    let server = TestServer::start_configured(&[("app.rego", APP), ("authz.rego", authz)], |c| {
        let mut tls = tls_settings(fixture("cert.pem"), fixture("key.pem"));
        tls.ca_file = Some(fixture("client-ca.pem"));
        tls.client_auth = true;
        c.tls = Some(tls);
        c.auth = Auth {
            authentication: Authentication::Tls,
            decision: Some(DataPath::parse("system/authz/allow")),
        };
    })
    .await;
    let client = client_config("ca.pem", Some(("client.pem", "client-key.pem")));
    let reply = tls_get(server.addr, client, "/health").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let anonymous = tls_get(server.addr, client_config("ca.pem", None), "/health").await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    let stranger = client_config("ca.pem", Some(("stranger.pem", "stranger-key.pem")));
    let stranger = tls_get(server.addr, stranger, "/health").await;
    assert!(stranger.is_err(), "{stranger:?}");
    server.stop().await.unwrap();
}

/// Waits until `check` holds, for at most ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn certificates_reload(refresh: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(fixture("cert.pem"), &cert).unwrap();
    std::fs::copy(fixture("key.pem"), &key).unwrap();
    let server = TestServer::start_configured(&[("app.rego", APP)], |c| {
        let mut tls = tls_settings(cert.clone(), key.clone());
        tls.refresh = refresh;
        c.tls = Some(tls);
    })
    .await;
    let addr = server.addr;
    let first = client_config("ca.pem", None);
    let second = client_config("other-ca.pem", None);
    assert!(tls_get(addr, first.clone(), "/health").await.is_ok());
    assert!(tls_get(addr, second.clone(), "/health").await.is_err());

    // A broken certificate file is not taken: the last good one serves on.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(tls_get(addr, first.clone(), "/health").await.is_ok());

    // The new pair is served to new connections.
    std::fs::copy(fixture("other-cert.pem"), &cert).unwrap();
    std::fs::copy(fixture("other-key.pem"), &key).unwrap();
    eventually("the new certificate is served", async || {
        tls_get(addr, second.clone(), "/health").await.is_ok()
    })
    .await;
    assert!(tls_get(addr, first, "/health").await.is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tls_files_are_reloaded_when_they_change() {
    certificates_reload(None).await;
}

#[tokio::test]
async fn tls_files_are_reloaded_every_refresh_period() {
    certificates_reload(Some(Duration::from_millis(200))).await;
}

#[tokio::test]
async fn the_binary_serves_https_with_token_authorization_from_its_flags() {
    let dir = crate::support::write_tree(&[("app.rego", APP), ("authz.rego", AUTHZ)]);
    let (cert, key) = (fixture("cert.pem"), fixture("key.pem"));
    let args = [
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-private-key-file",
        key.to_str().unwrap(),
        "--authentication=token",
        "--authorization=basic",
        "--set=default_authorization_decision=/system/authz/allow",
        dir.path().to_str().unwrap(),
    ];
    let daemon = crate::process::Daemon::start(dir.path(), &args);
    let client = client_config("ca.pem", None);
    let reply = tls_get(daemon.addr, client.clone(), "/health")
        .await
        .unwrap();
    assert_refused(&reply, "request rejected by administrative policy");
    let token = [("authorization", "Bearer operator-secret")];
    let reply = tls_get_with(daemon.addr, client, "/health", &token)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn diagnostic_listeners_authorize_before_routing() {
    let dir = crate::support::write_tree(&[("app.rego", APP), ("authz.rego", AUTHZ)]);
    let mut config = crate::support::config(
        vec![crate::support::path_string(dir.path())],
        regent::api::Limits::default(),
    );
    config.auth = token_auth("system/authz/allow");
    let prepared = regent::run::prepare(&config).unwrap();
    let state = regent::run::start_background(&config, prepared).unwrap();
    let server = regent::server::Server::bind(&config.addrs, state, None)
        .await
        .unwrap()
        .with_diagnostic(&["127.0.0.1:0"])
        .await
        .unwrap();
    let diagnostic: std::net::SocketAddr = server.shown_diagnostic_addrs()[0].parse().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        crate::support::request(diagnostic, "GET", path, headers, Bytes::new())
    };
    let operator: &[(&str, &str)] = &[("authorization", "Bearer operator-secret")];
    assert_refused(
        &get("/v1/policies", &[]).await,
        "request rejected by administrative policy",
    );
    assert_refused(
        &get("/health", &[]).await,
        "request rejected by administrative policy",
    );
    assert_eq!(
        get("/v1/policies", operator).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get("/health", operator).await.status, StatusCode::OK);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
