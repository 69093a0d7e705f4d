//! OPA-shaped errors with OPA's status codes, and the request limits.

use bytes::Bytes;
use regent::api::Limits;

use crate::support::{gzip, request, TestServer};

async fn server() -> TestServer {
    TestServer::start(&[(
        "p.rego",
        "package p\nimport rego.v1\nallow if input.x == 1\nc := 1\nc := 2 if input.conflict\n",
    )])
    .await
}

#[tokio::test]
async fn conflicting_complete_rules_are_an_eval_conflict_error() {
    let s = server().await;
    let r = s
        .post("/v1/data/p/c", r#"{"input": {"conflict": true}}"#)
        .await;
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(v["code"], "internal_error");
    assert_eq!(v["message"], "error(s) occurred while evaluating query");
    let e = &v["errors"][0];
    assert_eq!(e["code"], "eval_conflict_error");
    assert_eq!(
        e["message"],
        "complete rules must not produce multiple outputs"
    );
    assert!(e["location"]["file"].as_str().unwrap().ends_with("p.rego"));
    assert_eq!(e["location"]["row"], 5);
    // Without the conflict the same rule answers.
    assert_eq!(
        s.post("/v1/data/p/c", r#"{"input": {}}"#).await.body,
        "{\"result\":1}\n"
    );
}

#[tokio::test]
async fn malformed_and_non_object_bodies_are_invalid_parameter() {
    let s = server().await;
    for (body, message) in [
        ("{\"input\": ", "body contains malformed input document: "),
        ("@", "body contains malformed input document: "),
        ("[1]", "body contains malformed input document: json: cannot unmarshal array into Go value of type types.DataRequestV1"),
        ("\"x\"", "body contains malformed input document: json: cannot unmarshal string into Go value of type types.DataRequestV1"),
        ("12", "body contains malformed input document: json: cannot unmarshal number into Go value of type types.DataRequestV1"),
    ] {
        let r = s.post("/v1/data/p/allow", body).await;
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["code"], "invalid_parameter");
        assert!(v["message"].as_str().unwrap().starts_with(message), "{body}: {v}");
        // OPA indents error bodies.
        assert!(r.body.starts_with("{\n  \"code\""));
    }
}

#[tokio::test]
async fn too_deep_bodies_are_rejected() {
    let limits = Limits {
        max_json_depth: 8,
        ..Limits::default()
    };
    let s = TestServer::start_with(&[("p.rego", "package p\nallow := true\n")], limits).await;
    let deep = format!("{{\"input\": {}1{}}}", "[".repeat(8), "]".repeat(8));
    let r = s.post("/v1/data/p/allow", &deep).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_parameter");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("max depth of 8"));
    let ok = format!("{{\"input\": {}1{}}}", "[".repeat(7), "]".repeat(7));
    assert_eq!(s.post("/v1/data/p/allow", &ok).await.status, 200);
}

#[tokio::test]
async fn too_large_bodies_are_413_and_gzip_bombs_stop_at_the_limit() {
    let limits = Limits {
        max_body_bytes: 1024,
        max_decompressed_bytes: 4096,
        max_json_depth: 64,
    };
    let s = TestServer::start_with(&[("p.rego", "package p\nallow := true\n")], limits).await;
    let big = format!("{{\"input\": \"{}\"}}", "a".repeat(2000));
    let r = s.post("/v1/data/p/allow", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json(),
        serde_json::json!({"code": "invalid_parameter", "message": "request body too large"})
    );
    // Small on the wire, large once inflated.
    let bomb = gzip(format!("{{\"input\": \"{}\"}}", "a".repeat(1_000_000)).as_bytes());
    assert!(bomb.len() < 1024);
    let r = request(
        s.addr,
        "POST",
        "/v1/data/p/allow",
        &[("content-encoding", "gzip")],
        bomb,
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["message"],
        "could not decompress the body: gzip payload too large"
    );
    let r = request(
        s.addr,
        "POST",
        "/v1/data/p/allow",
        &[("content-encoding", "gzip")],
        Bytes::from_static(b"not gzip"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("could not decompress the body"));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let s = server().await;
    let r = s.get("/v2/nothing").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "resource_not_found");
    for (method, path, allow) in [
        ("DELETE", "/health", "GET"),
        ("PUT", "/", "POST"),
        ("GET", "/v0/data/p", "POST"),
        ("POST", "/v1/policies", "GET"),
        (
            "OPTIONS",
            "/v1/data/p/allow",
            "GET, POST, PUT, PATCH, DELETE",
        ),
    ] {
        let r = request(s.addr, method, path, &[], Bytes::new()).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.headers["allow"], allow);
        assert_eq!(r.json()["code"], "invalid_operation");
    }
    // GET routes answer HEAD (as Go's do): the GET's status and headers,
    // no body; a HEAD where no GET is allowed is still 405.
    let head = request(s.addr, "HEAD", "/health", &[], Bytes::new()).await;
    assert_eq!((head.status.as_u16(), head.body.as_str()), (200, ""));
    assert_eq!(head.headers["content-length"], "3");
    let head = request(s.addr, "HEAD", "/v0/data/p", &[], Bytes::new()).await;
    assert_eq!(head.status, 405);
}

/// regorus panics on some inputs it did not foresee (here a `sprintf`
/// precision beyond what Rust's formatting takes). The decision is a 500
/// with the panic's message, on every API, and the server goes on answering:
/// the fast path's VM that stopped mid-run is replaced.
#[tokio::test]
async fn a_panic_in_regorus_is_a_500_and_the_server_goes_on() {
    let s = TestServer::start(&[(
        "p.rego",
        "package p\nimport rego.v1\nx := sprintf(input.f, [1.5])\n",
    )])
    .await;
    let panics = r#"{"input": {"f": "%.100000f"}}"#;
    // More than one per worker thread: none is left unusable.
    for _ in 0..4 {
        let r = s.post("/v1/data/p/x", panics).await;
        assert_eq!(r.status, 500, "{}", r.body);
        let e = &r.json()["errors"][0];
        assert_eq!(e["code"], "eval_internal_error");
        assert_eq!(
            e["message"],
            "evaluation failed: regorus panicked: Formatting argument out of range"
        );
    }
    let fine = r#"{"input": {"f": "%.2f"}}"#;
    for _ in 0..4 {
        assert_eq!(
            s.post("/v1/data/p/x", fine).await.body,
            "{\"result\":\"1.50\"}\n"
        );
    }

    let r = s
        .post(
            "/v1/batch/data/p/x",
            r#"{"inputs": {"a": {"f": "%.100000f"}, "b": {"f": "%.1f"}}}"#,
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.body);
    let v = r.json();
    assert_eq!(v["responses"]["a"]["http_status_code"], "500");
    assert_eq!(v["responses"]["b"]["result"], "1.5");

    let r = s
        .post(
            "/v1/query",
            r#"{"query": "y := sprintf(\"%.100000f\", [1.5])"}"#,
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    let message = r.json()["errors"][0]["message"].clone();
    assert_eq!(
        message,
        "evaluation failed: regorus panicked: Formatting argument out of range"
    );
    s.stop().await.unwrap();
}

/// Bytes that are not UTF-8 in a JSON string are U+FFFD, as Go's decoder
/// (and so OPA) reads them, on the data, batch and query APIs, and so are
/// escaped lone surrogates; outside a string they are a malformed body.
#[tokio::test]
async fn invalid_utf8_in_strings_is_read_as_go_reads_it() {
    let s = TestServer::start(&[(
        "p.rego",
        "package p\nimport rego.v1\nallow if input.s == \"\\uFFFD\"\n",
    )])
    .await;
    let post = |path: &'static str, body: &'static [u8]| {
        request(s.addr, "POST", path, &[], Bytes::from_static(body))
    };
    let r = post("/v1/data/p/allow", b"{\"input\": {\"s\": \"\xff\"}}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "{\"result\":true}\n");
    let r = post(
        "/v1/batch/data/p/allow",
        b"{\"inputs\": {\"a\": {\"s\": \"\xc3\"}}}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["responses"]["a"]["result"], true);
    let r = post(
        "/v1/query",
        b"{\"query\": \"x := input.s\", \"input\": {\"s\": \"a\xff\"}}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"][0]["x"], "a\u{fffd}");
    // So is an escaped lone surrogate, which serde_json refuses; in data
    // written through the API too.
    let r = post("/v1/data/p/allow", br#"{"input": {"s": "\ud800"}}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "{\"result\":true}\n");
    let put =
        |body: &'static [u8]| request(s.addr, "PUT", "/v1/data/d", &[], Bytes::from_static(body));
    assert_eq!(
        put(b"{\"s\": \"\\udc00\", \"t\": \"\xff\"}").await.status,
        204
    );
    let r = request(s.addr, "GET", "/v1/data/d", &[], Bytes::new()).await;
    assert_eq!(
        r.json()["result"],
        serde_json::json!({"s": "\u{fffd}", "t": "\u{fffd}"})
    );
    // A backslash ending the body: malformed, answered.
    let r = post("/v1/data/p/allow", b"{\"input\": \"\\").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post("/v1/data/p/allow", b"{\"input\": \xff}").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "invalid_parameter");
    s.stop().await.unwrap();
}
