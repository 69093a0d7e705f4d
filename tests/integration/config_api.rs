//! `GET /v1/config` over HTTP: the configuration the server runs with, as
//! OPA shows it, secrets removed.

use hyper::StatusCode;
use serde_json::json;

use crate::support::{request, TestServer};

#[tokio::test]
async fn the_config_api_shows_the_configuration_without_secrets() {
    let server = TestServer::start_configured(&[("p.rego", "package p\n")], |c| {
        c.opa = regent::opa_config::from_parts(
            Some(
                "services:\n  logs:\n    url: http://127.0.0.1:9\n    credentials:\n      bearer:\n        token: s3cret\n\
                 keys:\n  k:\n    algorithm: HS256\n    key: hmac-s3cret\n\
                 labels:\n  region: eu\n",
            ),
            &[],
            &[],
        )
        .unwrap();
    })
    .await;
    let reply = server.get("/v1/config").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let result = &body["result"];
    assert_eq!(
        result["services"],
        json!({"logs": {"url": "http://127.0.0.1:9"}})
    );
    assert_eq!(result["keys"], json!({"k": {"algorithm": "HS256"}}));
    assert_eq!(result["default_decision"], "/system/main");
    assert_eq!(result["labels"]["region"], "eu");
    assert_eq!(result["labels"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!reply.body.contains("s3cret"), "{}", reply.body);

    let reply = request(server.addr, "POST", "/v1/config", &[], "{}".into()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET");
    server.stop().await.unwrap();
}
