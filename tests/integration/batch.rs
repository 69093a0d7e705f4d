//! `POST /v1/batch/data`: mixed outcomes, status codes, deduplication, the
//! cache per item, the size limit, and large batches agreeing with singles.

use crate::support::TestServer;

const POLICY: &str = r#"package p
import rego.v1

default allow := false
allow if input.user == "alice"

x := 1 if input.a
x := 2 if input.b

only_for_bob := true if input.user == "bob"

n := to_number(input.s)
"#;

#[tokio::test]
async fn all_good_items_answer_200_with_one_result_each() {
    let server = TestServer::start(&[("p.rego", POLICY)]).await;
    let reply = server
        .post(
            "/v1/batch/data/p/allow",
            r#"{"inputs": {"a": {"user": "alice"}, "b": {"user": "bob"}, "c": {}}}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        "{\"responses\":{\"a\":{\"result\":true},\"b\":{\"result\":false},\"c\":{\"result\":false}}}\n"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn mixed_valid_failing_and_undefined_items_answer_207() {
    let server = TestServer::start(&[("p.rego", POLICY)]).await;
    let reply = server
        .post(
            "/v1/batch/data/p/x",
            r#"{"inputs": {"ok": {"a": true}, "conflict": {"a": true, "b": true}, "undefined": {}}}"#,
        )
        .await;
    assert_eq!(reply.status, 207, "{}", reply.body);
    let body = reply.json();
    let responses = &body["responses"];
    assert_eq!(
        responses["ok"],
        serde_json::json!({"http_status_code": "200", "result": 1})
    );
    assert_eq!(
        responses["undefined"],
        serde_json::json!({"http_status_code": "200"})
    );
    let failed = &responses["conflict"];
    assert_eq!(failed["http_status_code"], "500");
    assert_eq!(failed["code"], "internal_error");
    assert_eq!(failed["errors"][0]["code"], "eval_conflict_error");

    // Built-in errors fail an item only under strict-builtin-errors.
    let body = r#"{"inputs": {"good": {"s": "12"}, "bad": {"s": "twelve"}}}"#;
    let lenient = server.post("/v1/batch/data/p/n", body).await;
    assert_eq!(lenient.status, 200, "{}", lenient.body);
    assert_eq!(lenient.json()["responses"]["bad"], serde_json::json!({}));
    let strict = server
        .post("/v1/batch/data/p/n?strict-builtin-errors", body)
        .await;
    assert_eq!(strict.status, 207, "{}", strict.body);
    assert_eq!(strict.json()["responses"]["good"]["result"], 12);
    let bad = &strict.json()["responses"]["bad"];
    assert_eq!(bad["http_status_code"], "500");
    assert_eq!(bad["errors"][0]["code"], "eval_builtin_error", "{bad}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn identical_inputs_are_evaluated_once_and_items_use_the_cache() {
    let server = TestServer::start(&[("p.rego", POLICY)]).await;
    let body = r#"{"inputs": {"1": {"user": "alice"}, "2": {"user": "alice"}, "3": {"user": "alice"}, "4": {"user": "bob"}}}"#;
    let first = server.post("/v1/batch/data/p/allow", body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("regent_decision_cache_misses_total 2"),
        "{metrics}"
    );
    let second = server.post("/v1/batch/data/p/allow", body).await;
    assert_eq!(first.body, second.body);
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("regent_decision_cache_hits_total 2"),
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn common_input_is_merged_under_each_item() {
    let server = TestServer::start(&[("p.rego", POLICY)]).await;
    let reply = server
        .post(
            "/v1/batch/data/p/only_for_bob",
            r#"{"common_input": {"user": "bob", "x": 1}, "inputs": {"inherits": {"x": 2}, "overrides": {"user": "eve"}}}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"responses": {"inherits": {"result": true}, "overrides": {}}})
    );
    // Fields are read as Go's decoder reads them: any case, the last of
    // duplicates wins.
    let reply = server
        .post(
            "/v1/batch/data/p/only_for_bob",
            r#"{"common_input": {"user": "eve"}, "Common_Input": {"user": "bob"}, "INPUTS": {"a": {}}}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["responses"]["a"]["result"], true);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_and_oversized_batches_are_rejected() {
    let server =
        TestServer::start_configured(&[("p.rego", POLICY)], |c| c.max_batch_inputs = 3).await;
    for (body, needle) in [
        ("{bad", "malformed batch request"),
        (r#"{"input": {}}"#, "missing `inputs`"),
        // Read as Go reads a struct: `null` is an empty request.
        ("null", "missing `inputs`"),
        (r#"{"inputs": {}} trailing"#, "trailing characters"),
        (r#"{"inputs": [1, 2]}"#, "malformed batch request"),
        (
            r#"{"inputs": {"a": {}, "b": {}, "c": {}, "d": {}}}"#,
            "batch of more than 3 inputs is over the limit of 3",
        ),
        (r#"{"inputs": "abc"}"#, "`inputs`: invalid type"),
    ] {
        let reply = server.post("/v1/batch/data/p/allow", body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.json()["code"], "invalid_parameter");
        assert!(
            reply.json()["message"].as_str().unwrap().contains(needle),
            "{}",
            reply.body
        );
    }
    let reply = server.get("/v1/batch/data/p/allow").await;
    assert_eq!(reply.status, 405);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_agrees_with_single_decisions() {
    let server =
        TestServer::start_configured(&[("p.rego", POLICY)], |c| c.cache.enabled = false).await;
    let users = ["alice", "bob", "carol"];
    let mut inputs = serde_json::Map::new();
    for i in 0..600 {
        inputs.insert(
            format!("item-{i:03}"),
            serde_json::json!({"user": users[i % 3], "seq": i}),
        );
    }
    let body = serde_json::json!({ "inputs": inputs }).to_string();
    let reply = server.post("/v1/batch/data/p/allow", &body).await;
    assert_eq!(reply.status, 200);
    let responses = reply.json()["responses"].clone();
    assert_eq!(responses.as_object().unwrap().len(), 600);
    for (id, input) in &inputs {
        let single = server
            .post(
                "/v1/data/p/allow",
                &serde_json::json!({ "input": input }).to_string(),
            )
            .await;
        assert_eq!(responses[id], single.json(), "{id}");
    }
    server.stop().await.unwrap();
}
