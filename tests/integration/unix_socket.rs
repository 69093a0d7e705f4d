//! `--addr unix://PATH`: the API over a unix socket, its file made with
//! `--unix-socket-perm` and removed at shutdown, as OPA's listener does.

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use hyper::StatusCode;
use regent::api::Limits;
use regent::server::Server;
use tokio::net::UnixStream;

use crate::support::{config, path_string, write_tree, Conn};

#[tokio::test]
async fn the_api_answers_over_a_unix_socket() {
    let dir = write_tree(&[(
        "app.rego",
        "package app\n\nallow := input.user == \"alice\"\n",
    )]);
    let socket = dir.path().join("regent.sock");
    // A socket file left by an earlier run is replaced.
    std::fs::write(&socket, "stale").unwrap();
    let mut config = config(vec![path_string(dir.path())], Limits::default());
    config.addrs = vec![format!("unix://{}", socket.display())];
    let prepared = regent::run::prepare(&config).unwrap();
    let state = regent::run::start_background(&config, prepared).unwrap();
    let server = Server::bind_with(&config.addrs, state, None, 0o660)
        .await
        .unwrap();
    assert_eq!(
        server.shown_addrs(),
        vec![format!("unix://{}", socket.display())]
    );
    assert!(server.local_addrs().is_empty());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(
        async move {
            let _ = rx.await;
        },
        std::time::Duration::from_secs(5),
    ));
    let mut conn = Conn::over(UnixStream::connect(&socket).await.unwrap())
        .await
        .unwrap();
    let body = Bytes::from_static(br#"{"input": {"user": "alice"}}"#);
    let reply = conn.send("POST", "/v1/data/app/allow", &[], body).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "{\"result\":true}\n")
    );
    let reply = conn.send("GET", "/health", &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    drop(conn);

    let _ = tx.send(());
    task.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file outlived the server");
}
