//! The query API (`GET /v1/query?q=`, `POST /v1/query`) over HTTP: ad-hoc
//! queries answered with OPA's result sets, its errors for queries that do
//! not parse or compile, the live snapshot, and `--eval-timeout`.

use hyper::StatusCode;
use serde_json::json;

use crate::support::{request, TestServer};

const POLICY: &str = "package app
import rego.v1

roles := {\"alice\": \"admin\", \"bob\": \"viewer\"}

allow if roles[input.user] == \"admin\"

conflict := input.c[_]

# n * n iterations.
slow(n) := count([1 | some i in numbers.range(1, n); some j in numbers.range(1, n)])

medium := slow(input.n)
";

/// `q` as a URL query parameter.
fn q(query: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("/v1/query?q={encoded}")
}

#[tokio::test]
async fn queries_are_answered_with_their_bindings() {
    let server = TestServer::start(&[("app.rego", POLICY)]).await;

    let reply = server.get(&q("data.app.roles[user] == \"admin\"")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "{\"result\":[{\"user\":\"alice\"}]}\n");
    assert_eq!(reply.headers["content-type"], "application/json");

    // One object per way the query succeeds, in order; `_` is no binding.
    let reply = server.get(&q("some user, role in data.app.roles")).await;
    assert_eq!(
        reply.json(),
        json!({"result": [{"role": "admin", "user": "alice"}, {"role": "viewer", "user": "bob"}]})
    );
    let reply = server.get(&q("data.app.roles[_]")).await;
    assert_eq!(reply.json(), json!({"result": [{}, {}]}));

    // A query that fails has no result, as OPA answers it: `not`, `every`
    // and a lone `false` included.
    for failing in [
        "false",
        "data.app.allow",
        "not data.app.roles.alice",
        "every r in data.app.roles { r == \"admin\" }",
        "x := 1; not x",
    ] {
        let reply = server.get(&q(failing)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::OK, "{}\n"),
            "{failing}"
        );
    }

    // POST: the query and an input; Go's decoder reads field names in any case.
    let reply = server
        .post(
            "/v1/query",
            r#"{"Query": "data.app.allow; x := input.user", "input": {"user": "alice"}}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), json!({"result": [{"x": "alice"}]}));

    // Options: the last `q` wins; pretty; metrics.
    let reply = server
        .get("/v1/query?q=x%20:=%201&q=x%20:=%202&pretty&metrics")
        .await;
    let body = reply.json();
    assert_eq!(body["result"], json!([{"x": 2}]));
    assert!(
        body["metrics"]["timer_rego_query_eval_ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        reply.body.starts_with("{\n  \"metrics\": {"),
        "{}",
        reply.body
    );

    // The live snapshot: a policy written through the API is queried next.
    let reply = request(
        server.addr,
        "PUT",
        "/v1/policies/extra.rego",
        &[],
        "package extra\nanswer := 42\n".into(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = server.get(&q("v := data.extra.answer")).await;
    assert_eq!(reply.json(), json!({"result": [{"v": 42}]}));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_queries_get_opas_errors() {
    let server = TestServer::start(&[("app.rego", POLICY)]).await;

    let reply = server.get("/v1/query").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json(),
        json!({"code": "invalid_parameter", "message": "missing parameter 'q'"})
    );

    let reply = server.get(&q("x := 1 +")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["message"], "error(s) occurred while parsing query");
    assert_eq!(body["errors"][0]["code"], "rego_parse_error");
    assert_eq!(body["errors"][0]["location"]["file"], "");
    assert_eq!(body["errors"][0]["location"]["row"], 1);

    // A chain of 20,000 operators: regorus's tree as deep, whose recursive
    // walks (its drop included) overflowed the stack and aborted the process.
    let chain = vec!["1"; 20_000].join(" +\n");
    let body = json!({ "query": format!("x := {chain}") }).to_string();
    let reply = server.post("/v1/query", &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(
        reply.json()["errors"][0]["message"],
        "expression nested too deeply: more than 1000 levels"
    );
    let reply = server.get(&q("x := 1 + 1")).await;
    assert_eq!(reply.json(), json!({"result": [{"x": 2}]}));

    // Brackets nested too deeply: refused before regorus's parser, whose
    // time doubles per level (these 45 bytes took it hours of one core).
    let reply = server.get(&q(&format!("x := {}", "[".repeat(40)))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["message"], "error(s) occurred while parsing query");
    assert_eq!(body["errors"][0]["code"], "rego_parse_error");
    assert_eq!(
        body["errors"][0]["message"],
        "brackets nested too deeply: the text would take too long to parse"
    );

    // An unsafe variable, on the query's own second line.
    let reply = server.get(&q("x := 1\ny")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["message"], "error(s) occurred while compiling query");
    assert_eq!(body["errors"][0]["code"], "rego_unsafe_var_error");
    assert_eq!(body["errors"][0]["message"], "var y is unsafe");
    assert_eq!(
        body["errors"][0]["location"],
        json!({"file": "", "row": 2, "col": 1})
    );

    // A built-in a client may not call, as OPA refuses `http.send` (and
    // one regorus would allocate whole).
    for (query, name) in [
        (
            "http.send({\"method\": \"get\", \"url\": \"http://x\"})",
            "http.send",
        ),
        (
            "x := count(numbers.range(1, 1000000000000))",
            "numbers.range",
        ),
        // Named, not called: `with` makes `upper` call it.
        (
            "x := upper(\"0.0.0.0/0\") with upper as net.cidr_expand",
            "net.cidr_expand",
        ),
    ] {
        let reply = server.get(&q(query)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["errors"][0]["code"], "rego_compile_error");
        assert_eq!(
            body["errors"][0]["message"],
            format!("unsafe built-in function calls in expression: {name}")
        );
    }

    let reply = server.get(&q("data.app.nope(1)")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["errors"][0]["code"], "rego_type_error");
    assert_eq!(
        body["errors"][0]["message"],
        "undefined function data.app.nope"
    );

    // An evaluation error: OPA's 500 with the topdown error.
    let reply = server
        .post(
            "/v1/query",
            r#"{"query": "x := data.app.conflict", "input": {"c": [1, 2]}}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = reply.json();
    assert_eq!(body["code"], "internal_error");
    assert_eq!(body["errors"][0]["code"], "eval_conflict_error");
    let file = body["errors"][0]["location"]["file"].as_str().unwrap();
    assert!(file.ends_with("app.rego"), "{body}");

    // An empty query reaches OPA's evaluator, which refuses it. The body is
    // read as Go's decoder reads OPA's struct: `null` leaves it empty, and
    // so does a `null` query.
    for empty in [
        r#"{"query": "  "}"#,
        r#"{"input": {}}"#,
        "null",
        r#"{"query": null}"#,
    ] {
        let reply = server.post("/v1/query", empty).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            reply.json(),
            json!({"code": "internal_error", "message": "cannot evaluate empty query"})
        );
    }

    // Go's decoder reads the first value only; the last of duplicate
    // fields wins, unless it is `null` (a Go string keeps its value).
    for body in [
        r#"{"query": "x := 1"} trailing"#,
        r#"{"QUERY": "x := 2", "query": "x := 1", "Query": null}"#,
    ] {
        let reply = server.post("/v1/query", body).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}");
        assert_eq!(reply.json(), json!({"result": [{"x": 1}]}), "{body}");
    }

    for (body, wrong) in [
        ("{\"query\": ", "EOF"),
        (r#"{"query": 7}"#, "invalid type"),
        (r#"{"query": "true", "input": {"a": }}"#, "expected value"),
    ] {
        let reply = server.post("/v1/query", body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("error(s) occurred while decoding request: ")
                && message.contains(wrong),
            "{body}: {message}"
        );
    }

    let reply = request(server.addr, "PUT", "/v1/query", &[], "".into()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.headers["allow"], "GET, POST");
    server.stop().await.unwrap();
}

/// A query runs off the request workers, within `--eval-timeout`.
#[tokio::test]
async fn a_slow_query_stops_at_the_eval_timeout() {
    let server = TestServer::start_configured(&[("app.rego", POLICY)], |c| {
        c.eval_timeout = Some(std::time::Duration::from_millis(300));
    })
    .await;
    // Through a policy's function: its author may call `numbers.range`.
    let slow = "n := data.app.slow(100000)";
    let started = std::time::Instant::now();
    let reply = server.get(&q(slow)).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert_eq!(reply.json()["errors"][0]["code"], "eval_cancel_error");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The server answers on.
    let reply = server.get(&q("x := 1")).await;
    assert_eq!(reply.json(), json!({"result": [{"x": 1}]}));
    server.stop().await.unwrap();
}

/// Queries take their own turn on the blocking pool: however many slow
/// queries run (here one per core, each until `--eval-timeout`), a slow
/// decision still gets a turn of its own, and is answered.
#[tokio::test]
async fn slow_queries_hold_no_decision_turn() {
    let server = TestServer::start_configured(&[("app.rego", POLICY)], |c| {
        c.eval_timeout = Some(std::time::Duration::from_secs(2));
    })
    .await;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let queries: Vec<_> = (0..cores)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                request(
                    addr,
                    "GET",
                    &q("n := data.app.slow(100000)"),
                    &[],
                    "".into(),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Over the 5 ms inline budget: this decision needs a turn.
    let started = std::time::Instant::now();
    let reply = server
        .post("/v1/data/app/medium", r#"{"input": {"n": 300}}"#)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), json!({"result": 90000}));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // It did need a turn: it overran the inline budget.
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("regent_slow_decisions_total 1"),
        "{metrics}"
    );
    for query in queries {
        let reply = query.await.unwrap();
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.json()["errors"][0]["code"], "eval_cancel_error");
    }
    server.stop().await.unwrap();
}
