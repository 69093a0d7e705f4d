//! Test support: the real server started in-process on 127.0.0.1:0 over policy
//! files written to a temp dir, and a small HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use regent::api::Limits;
use regent::config::RunConfig;
use regent::server::Server;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Writes `files` (relative path, contents) under a new temp dir.
pub fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    dir
}

/// `regent run --server` on 127.0.0.1:0 over `paths`, with `limits`; every
/// other setting as the command line defaults it.
pub fn config(paths: Vec<String>, limits: Limits) -> RunConfig {
    let mut config = RunConfig::from_command_line(&[
        "--addr=127.0.0.1:0",
        "--log-level=error",
        "--log-format=text",
        "--shutdown-grace-period=5",
    ])
    .unwrap();
    config.paths = paths;
    config.limits = limits;
    config
}

/// A running server and the temp dir its policies live in.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Keeps the policy files alive while the server runs.
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start(files: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(files, Limits::default()).await
    }

    pub async fn start_with(files: &[(&str, &str)], limits: Limits) -> TestServer {
        TestServer::start_configured(files, |c| c.limits = limits).await
    }

    /// A server over `files` with the configuration adjusted by `adjust`.
    pub async fn start_configured(
        files: &[(&str, &str)],
        adjust: impl FnOnce(&mut RunConfig),
    ) -> TestServer {
        let dir = write_tree(files);
        let mut config = config(vec![path_string(dir.path())], Limits::default());
        adjust(&mut config);
        TestServer::launch(dir, config).await
    }

    /// A server over existing policy paths (files or directories).
    pub async fn start_paths(paths: Vec<String>) -> TestServer {
        let config = config(paths, Limits::default());
        TestServer::launch(tempfile::tempdir().unwrap(), config).await
    }

    /// A server on `config` as given (bundles, OPA configuration...).
    pub async fn start_config(config: RunConfig) -> TestServer {
        TestServer::launch(tempfile::tempdir().unwrap(), config).await
    }

    async fn launch(dir: tempfile::TempDir, config: RunConfig) -> TestServer {
        let prepared = regent::run::prepare(&config).unwrap();
        let state = regent::run::start_background(&config, prepared).unwrap();
        let tls = config
            .tls
            .clone()
            .map(|settings| regent::tls::ServerTls::load(settings).unwrap());
        if let Some(tls) = &tls {
            tls.spawn_reloader().unwrap();
        }
        let server = Server::bind(&config.addrs, state, tls)
            .await
            .unwrap()
            .with_h2c(config.h2c);
        let addr = server.local_addrs()[0];
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(
            async move {
                let _ = rx.await;
            },
            config.shutdown_grace,
        ));
        TestServer {
            addr,
            _dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        request(self.addr, "POST", path, &[], Bytes::from(body.to_string())).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], Bytes::new()).await
    }

    /// Stops accepting and waits for the drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

pub fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One connection that can carry several requests (keep-alive).
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        Conn::over(stream).await.unwrap()
    }

    /// A connection over `io` (a TLS stream, say).
    pub async fn over<I>(io: I) -> hyper::Result<Conn>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        self.try_send(method, path, headers, body).await.unwrap()
    }

    /// [`Conn::send`], with the connection's failure as an error.
    pub async fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> hyper::Result<Reply> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(body)).unwrap();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        })
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Reply {
    Conn::open(addr)
        .await
        .send(method, path, headers, body)
        .await
}

pub fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    Bytes::from(enc.finish().unwrap())
}

/// `GET path` over a fresh connection; the raw response.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `POST path` with a JSON body over a fresh connection; the raw response
/// (status line, headers, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The path of the built `regent` binary.
pub fn regent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_regent"))
}

/// Serves HTTP/1 (over TLS with `tls`) on a fresh 127.0.0.1:0 port from its
/// own thread and runtime, answering every request with `handler`; for the
/// test services that stand in for a bundle or a decision log server.
pub fn spawn_test_server<H, F>(tls: Option<tokio_rustls::TlsAcceptor>, handler: H) -> SocketAddr
where
    H: Fn(Request<hyper::body::Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = hyper::Response<Full<Bytes>>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, tls) = (handler.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let answer = handler(req);
                        async move { Ok::<_, std::convert::Infallible>(answer.await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
    });
    addr
}
