//! Change-to-active latency of `--watch`: a real server (in-process, on
//! 127.0.0.1:0) watches a temp dir; the policy file is rewritten 20 times,
//! alternating two versions, and each time the client polls until the
//! answer flips. Prints the median and the max.
//!
//! Run: `cargo run --release --example reload_latency`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use regent::config::RunConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V1: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"alice\"\n";
const V2: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"bob\"\n";

/// One POST over a fresh connection; returns the body.
async fn ask(addr: std::net::SocketAddr) -> String {
    let body = r#"{"input": {"user": "alice"}}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /v1/data/app/allow HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.rego");
    std::fs::write(&file, V1).unwrap();
    let path = dir.path().to_string_lossy().into_owned();
    let config = RunConfig::from_command_line(&[
        "--addr=127.0.0.1:0",
        "--log-level=error",
        "--log-format=text",
        "--shutdown-grace-period=1",
        "--eval-timeout=0",
        "--watch",
        &path,
    ])
    .unwrap();
    let state =
        regent::run::start_background(&config, regent::run::prepare(&config).unwrap()).unwrap();
    let server = regent::server::Server::bind(&config.addrs, state, None)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.serve(std::future::pending::<()>(), config.shutdown_grace));

    let mut latencies = Vec::new();
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (text, want) = if i % 2 == 0 {
            (V2, "false")
        } else {
            (V1, "true")
        };
        let want = format!("{{\"result\":{want}}}\n");
        let started = Instant::now();
        std::fs::write(&file, text).unwrap();
        while ask(addr).await != want {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "change {i} never activated"
            );
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "change to active over {} changes: median {:.1} ms, max {:.1} ms (debounce {} ms)",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
        regent::policy::watch::DEBOUNCE.as_millis()
    );
}
