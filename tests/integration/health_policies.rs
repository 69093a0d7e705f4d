//! `/health` and its policy checks, and the policies listing.

use crate::support::TestServer;

#[tokio::test]
async fn health_is_ok_once_loaded_with_any_options() {
    let s = TestServer::start(&[("p.rego", "package p\nx := 1\n")]).await;
    for path in [
        "/health",
        "/health?bundles",
        "/health?plugins",
        "/health?bundles&plugins&exclude-plugin=x",
    ] {
        let r = s.get(path).await;
        assert_eq!(
            (r.status.as_u16(), r.body.as_str()),
            (200, "{}\n"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn health_live_and_ready_evaluate_system_health() {
    let policy = "package system.health\nimport rego.v1\nlive := true\nready := input.plugins_ready == false\n";
    let s = TestServer::start(&[("h.rego", policy)]).await;
    let r = s.get("/health/live").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "{}\n"));
    let r = s.get("/health/ready").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["error"],
        "health check (data.system.health.ready) returned unexpected value"
    );
    let r = s.get("/health/other").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["error"],
        "health check (data.system.health.other) was undefined"
    );
}

#[tokio::test]
async fn policies_are_listed_with_their_raw_text() {
    let a = "package a\nx := 1\n";
    let b = "package b\ny := 2\n";
    let s = TestServer::start(&[("a.rego", a), ("sub/b.rego", b)]).await;
    let v = s.get("/v1/policies").await.json();
    let list = v["result"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let id_a = list[0]["id"].as_str().unwrap().to_string();
    assert!(id_a.ends_with("a.rego") && !id_a.starts_with('/'), "{id_a}");
    assert_eq!(list[0]["raw"], a);
    assert!(list[1]["id"].as_str().unwrap().ends_with("sub/b.rego"));
    let r = s.get(&format!("/v1/policies/{id_a}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["raw"], a);
    let r = s.get("/v1/policies/nope.rego").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        serde_json::json!({"code": "resource_not_found", "message": "storage_not_found_error: policy id \"nope.rego\""})
    );
}
