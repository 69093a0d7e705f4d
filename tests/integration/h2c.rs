//! `--h2c`: plain listeners (TCP and unix sockets) also serve HTTP/2 to
//! clients with prior knowledge, as OPA's flag does; HTTP/1.1 clients on the
//! same port are unaffected, and without the flag HTTP/2 is refused.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use regent::api::Limits;
use regent::server::Server;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use crate::process::Daemon;
use crate::support::{config, path_string, write_tree, Conn, Reply, TestServer};

const POLICY: &str = "package app\n\nallow := input.user == \"alice\"\n";
const ALICE: &str = r#"{"input": {"user": "alice"}}"#;

/// An HTTP/2 connection opened with prior knowledge (no upgrade, no ALPN).
async fn h2<I>(io: I) -> hyper::Result<SendRequest<Full<Bytes>>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Opens an HTTP/2 connection over `io` and asks whether alice may.
async fn ask_for_alice<I>(io: I) -> (Version, Reply)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut sender = h2(io).await.unwrap();
    h2_post(&mut sender, "/v1/data/app/allow", ALICE)
        .await
        .unwrap()
}

/// A `GET` or `HEAD` (no body) over an HTTP/2 connection.
async fn h2_send(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
) -> hyper::Result<Reply> {
    Ok(h2_request(sender, method, path, "").await?.1)
}

async fn h2_post(
    sender: &mut SendRequest<Full<Bytes>>,
    path: &str,
    body: &'static str,
) -> hyper::Result<(Version, Reply)> {
    h2_request(sender, "POST", path, body).await
}

/// One request over an HTTP/2 connection: the answer's version and reply.
async fn h2_request(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: &'static str,
) -> hyper::Result<(Version, Reply)> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (version, status, headers) = (resp.version(), resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await?.to_bytes();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    Ok((
        version,
        Reply {
            status,
            headers,
            body,
        },
    ))
}

#[tokio::test]
async fn with_h2c_http2_and_http1_clients_share_a_port() {
    let server = TestServer::start_configured(&[("app.rego", POLICY)], |c| c.h2c = true).await;
    let mut sender = h2(TcpStream::connect(server.addr).await.unwrap())
        .await
        .unwrap();

    // Several streams on one connection at once, each with its own answer.
    let mut streams = Vec::new();
    for (user, expected) in [("alice", "true"), ("bob", "false")].repeat(4) {
        let mut sender = sender.clone();
        let body: &'static str = if user == "alice" {
            ALICE
        } else {
            r#"{"input": {"user": "bob"}}"#
        };
        streams.push(tokio::spawn(async move {
            let (version, reply) = h2_post(&mut sender, "/v1/data/app/allow", body)
                .await
                .unwrap();
            assert_eq!(version, Version::HTTP_2);
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, format!("{{\"result\":{expected}}}\n"));
        }));
    }
    for stream in streams {
        stream.await.unwrap();
    }
    // The second ask of the same question is a cache hit, over HTTP/2 too.
    let (_, reply) = h2_post(&mut sender, "/v1/data/app/allow", ALICE)
        .await
        .unwrap();
    assert_eq!(reply.headers["x-regent-decision-cache"], "hit");
    // Errors keep OPA's shape.
    let (_, reply) = h2_post(&mut sender, "/v1/data/app/allow", "{")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "invalid_parameter");

    // HEAD: the GET's status and length, and no body (an HTTP/2 client
    // refuses DATA on a HEAD stream).
    let get = h2_send(&mut sender, "GET", "/health").await.unwrap();
    let head = h2_send(&mut sender, "HEAD", "/health").await.unwrap();
    assert_eq!((head.status, head.body.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        head.headers["content-length"],
        get.body.len().to_string().as_str()
    );
    // Headers as large as HTTP/1.1 takes: a 20 KB input in the query.
    let input = format!(r#"{{"user":"alice","pad":"{}"}}"#, "x".repeat(20_000));
    let query: String = url_escape(&input);
    let reply = h2_send(
        &mut sender,
        "GET",
        &format!("/v1/data/app/allow?input={query}"),
    )
    .await
    .unwrap();
    assert_eq!(reply.body, "{\"result\":true}\n");

    // HTTP/1.1 on the same port, as before.
    let mut conn = Conn::open(server.addr).await;
    let reply = conn
        .send(
            "POST",
            "/v1/data/app/allow",
            &[],
            Bytes::from_static(br#"{"input": {"user": "alice"}}"#),
        )
        .await;
    assert_eq!(reply.body, "{\"result\":true}\n");

    // An open HTTP/2 connection does not hold the drain: it is told to go
    // away (GOAWAY) and closes.
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the drain waited on an idle HTTP/2 connection")
        .unwrap();
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A client that opened HTTP/2 and then went silent (a crashed host, a
/// dropped NAT entry) never acknowledges the drain's GOAWAY; the server
/// closes its idle connection instead of waiting out the grace period.
#[tokio::test]
async fn a_silent_http2_client_does_not_hold_the_drain() {
    let server = TestServer::start_configured(&[("app.rego", POLICY)], |c| {
        c.h2c = true;
        c.shutdown_grace = Duration::from_secs(30);
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame; nothing is read after.
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // The server has taken the connection as HTTP/2 once it answers a
    // second client; then the drain starts.
    let (_, reply) = ask_for_alice(TcpStream::connect(server.addr).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the drain waited on a silent HTTP/2 client")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(silent);
}

#[tokio::test]
async fn without_h2c_http2_is_refused() {
    let server = TestServer::start(&[("app.rego", POLICY)]).await;
    let refused = async {
        let mut sender = h2(TcpStream::connect(server.addr).await.unwrap()).await?;
        h2_post(&mut sender, "/v1/data/app/allow", ALICE).await
    };
    let outcome = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("an HTTP/2 client hung instead of being refused");
    assert!(outcome.is_err(), "HTTP/2 served without --h2c: {outcome:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_h2c_unix_sockets_serve_http2() {
    let dir = write_tree(&[("app.rego", POLICY)]);
    let socket = dir.path().join("regent.sock");
    let mut config = config(vec![path_string(dir.path())], Limits::default());
    config.addrs = vec![format!("unix://{}", socket.display())];
    let prepared = regent::run::prepare(&config).unwrap();
    let state = regent::run::start_background(&config, prepared).unwrap();
    let server = Server::bind(&config.addrs, state, None)
        .await
        .unwrap()
        .with_h2c(true);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    let (version, reply) = ask_for_alice(UnixStream::connect(&socket).await.unwrap()).await;
    assert_eq!(
        (version, reply.status, reply.body.as_str()),
        (Version::HTTP_2, StatusCode::OK, "{\"result\":true}\n")
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_binary_takes_the_h2c_flag() {
    let dir = write_tree(&[("app.rego", POLICY)]);
    let daemon = Daemon::start(dir.path(), &["--h2c", &path_string(dir.path())]);
    let (version, reply) = ask_for_alice(TcpStream::connect(daemon.addr).await.unwrap()).await;
    assert_eq!(
        (version, reply.body.as_str()),
        (Version::HTTP_2, "{\"result\":true}\n")
    );
}
