//! `GET /metrics`: OPA's `http_request_duration_seconds` histogram, by
//! status code, OPA's handler label and the method in lower case, for the
//! routes OPA instruments (not `/metrics`, nor paths no route takes).

use bytes::Bytes;

use crate::support::{request, TestServer};

/// The `_count` of one label set, 0 when absent.
fn count(metrics: &str, code: &str, handler: &str, method: &str) -> u64 {
    let series = format!(
        "http_request_duration_seconds_count{{code=\"{code}\",handler=\"{handler}\",method=\"{method}\"}} "
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn request_durations_are_counted_by_code_handler_and_method() {
    let server = TestServer::start(&[(
        "app.rego",
        "package app\nallow if input.user == \"alice\"\n",
    )])
    .await;
    let decide = r#"{"input": {"user": "alice"}}"#;
    for _ in 0..3 {
        server.post("/v1/data/app/allow", decide).await;
    }
    server.post("/v1/data/app/allow", "{\"input\": ").await; // 400
    server.get("/v1/data").await;
    request(server.addr, "HEAD", "/health", &[], Bytes::new()).await;
    server.get("/v1/query?q=x%20:=%201").await;
    request(server.addr, "PUT", "/v1/query", &[], Bytes::new()).await; // 405
                                                                       // A path no route takes (404): not counted.
    server.get("/nowhere").await;
    // 405s outside the data, policy and query APIs: Go's router, not counted.
    request(server.addr, "POST", "/metrics", &[], Bytes::new()).await;
    request(server.addr, "POST", "/v1/config", &[], Bytes::new()).await;
    // A made-up method: `unknown`, as promhttp labels it.
    request(
        server.addr,
        "FOO123",
        "/v1/data/app/allow",
        &[],
        Bytes::new(),
    )
    .await;
    server.get("/metrics").await; // not counted

    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("# TYPE http_request_duration_seconds histogram"),
        "{metrics}"
    );
    assert_eq!(count(&metrics, "200", "v1/data", "post"), 3, "{metrics}");
    assert_eq!(count(&metrics, "400", "v1/data", "post"), 1, "{metrics}");
    assert_eq!(count(&metrics, "200", "v1/data", "get"), 1, "{metrics}");
    assert_eq!(count(&metrics, "200", "health", "head"), 1, "{metrics}");
    assert_eq!(count(&metrics, "200", "v1/query", "get"), 1, "{metrics}");
    assert_eq!(count(&metrics, "405", "catchall", "put"), 1, "{metrics}");
    assert_eq!(
        count(&metrics, "405", "catchall", "unknown"),
        1,
        "{metrics}"
    );
    assert_eq!(count(&metrics, "405", "catchall", "post"), 0, "{metrics}");
    assert!(!metrics.contains("code=\"404\""), "{metrics}");
    assert!(!metrics.contains("foo123"), "{metrics}");
    // OPA's buckets, from 1 us to 1 s.
    assert!(
        metrics.contains("le=\"0.01\"") && metrics.contains("le=\"1\""),
        "{metrics}"
    );
    let buckets = metrics
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_bucket{code=\"200\",handler=\"v1/data\",method=\"post\""))
        .count();
    assert_eq!(buckets, 11, "ten bounds and +Inf: {metrics}");
    server.stop().await.unwrap();
}
