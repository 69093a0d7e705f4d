//! The decision cache over real HTTP: hits after misses, byte-identical
//! answers, what is never cached, bounds under a flood of distinct inputs.

use bytes::Bytes;
use regent::rego_test::{Plan, Suite};

use crate::support::{Conn, Reply, TestServer};

const PURE: &str = r#"package app
import rego.v1

default allow := false
allow if input.user == "alice"
"#;

const POLICY: &str = r#"package app
import rego.v1

default allow := false
allow if input.user == "alice"

stamp := time.now_ns()
"#;

// Reaches the clock through another package: not cacheable either.
const CLOCK_USER: &str = r#"package uses_clock
import rego.v1
import data.app

fresh if app.stamp > 0
"#;

fn cache_header(reply: &Reply) -> &str {
    reply
        .headers
        .get("x-regent-decision-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads one metric's value from `/metrics`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200);
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{}", reply.body))
}

#[tokio::test]
async fn a_repeated_decision_is_a_hit_with_the_same_bytes() {
    let server = TestServer::start(&[("app.rego", PURE)]).await;
    let body = r#"{"input": {"user": "alice"}}"#;
    let first = server.post("/v1/data/app/allow", body).await;
    let second = server.post("/v1/data/app/allow", body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "{\"result\":true}\n");
    assert_eq!(cache_header(&first), "miss");
    assert_eq!(cache_header(&second), "hit");
    assert_eq!(first.body, second.body);
    assert_eq!(
        first.headers.get("content-type"),
        second.headers.get("content-type")
    );

    // Another input, another entry; a different key order is its own entry.
    let bob = server
        .post("/v1/data/app/allow", r#"{"input": {"user": "bob"}}"#)
        .await;
    assert_eq!(
        (bob.body.as_str(), cache_header(&bob)),
        ("{\"result\":false}\n", "miss")
    );
    // ?pretty changes the bytes, so it is a separate entry.
    let pretty = server.post("/v1/data/app/allow?pretty", body).await;
    assert_eq!(cache_header(&pretty), "miss");
    assert_eq!(pretty.body, "{\n  \"result\": true\n}\n");
    let pretty = server.post("/v1/data/app/allow?pretty", body).await;
    assert_eq!(cache_header(&pretty), "hit");
    assert_eq!(pretty.body, "{\n  \"result\": true\n}\n");

    // GET with ?input= is cached too, and undefined answers are cached.
    let get = "/v1/data/app/nothing?input=%7B%22user%22%3A%22alice%22%7D";
    let a = server.get(get).await;
    let b = server.get(get).await;
    assert_eq!((a.body.as_str(), cache_header(&a)), ("{}\n", "miss"));
    assert_eq!((b.body.as_str(), cache_header(&b)), ("{}\n", "hit"));

    assert_eq!(
        metric(&server, "regent_decision_cache_hits_total").await,
        3.0
    );
    assert_eq!(
        metric(&server, "regent_decision_cache_misses_total").await,
        4.0
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn clock_dependent_documents_and_observability_requests_bypass_the_cache() {
    let server = TestServer::start(&[("app.rego", POLICY), ("uses.rego", CLOCK_USER)]).await;
    for path in [
        "/v1/data/app/stamp",
        "/v1/data/uses_clock/fresh",
        "/v1/data/app",
        "/v1/data",
    ] {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let reply = server.post(path, "{}").await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.body);
            assert_eq!(cache_header(&reply), "bypass", "{path}");
            seen.push(reply.body);
        }
        if path == "/v1/data/app/stamp" {
            assert_ne!(seen[0], seen[1], "the clock moved, the answer must too");
        }
    }
    // `allow` lives in the same package as `stamp`: the analysis is per
    // package, so it is not cached either (when in doubt, do not cache).
    let allow = server.post("/v1/data/app/allow", "{}").await;
    assert_eq!(cache_header(&allow), "bypass");
    for query in ["metrics", "provenance", "instrument"] {
        let reply = server
            .post(&format!("/v1/data/uses_clock?{query}"), "{}")
            .await;
        assert_eq!(cache_header(&reply), "bypass", "{query}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_and_provenance_requests_are_never_served_from_the_cache() {
    let server = TestServer::start(&[("p.rego", "package p\nx := input.a\n")]).await;
    let body = r#"{"input": {"a": 1}}"#;
    assert_eq!(
        cache_header(&server.post("/v1/data/p/x", body).await),
        "miss"
    );
    for query in ["metrics", "provenance"] {
        let reply = server.post(&format!("/v1/data/p/x?{query}"), body).await;
        assert_eq!(cache_header(&reply), "bypass");
        assert!(reply.json().get(query).is_some(), "{}", reply.body);
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_and_bad_input_are_not_cached() {
    let policy = "package p\nimport rego.v1\nx := 1 if input.a\nx := 2 if input.b\n";
    let server = TestServer::start(&[("p.rego", policy)]).await;
    let conflict = r#"{"input": {"a": true, "b": true}}"#;
    for _ in 0..2 {
        let reply = server.post("/v1/data/p/x", conflict).await;
        assert_eq!(reply.status, 500, "{}", reply.body);
        let reply = server.post("/v1/data/p/x", "{bad").await;
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    assert_eq!(metric(&server, "regent_decision_cache_entries").await, 0.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let server = TestServer::start_configured(&[("app.rego", PURE)], |c| {
        c.cache.enabled = false;
    })
    .await;
    let body = r#"{"input": {"user": "alice"}}"#;
    for _ in 0..2 {
        let reply = server.post("/v1/data/app/allow", body).await;
        assert_eq!(reply.body, "{\"result\":true}\n");
        assert_eq!(cache_header(&reply), "bypass");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let server = TestServer::start_configured(&[("p.rego", "package p\nx := input.a\n")], |c| {
        c.cache.ttl = Some(std::time::Duration::from_millis(300));
    })
    .await;
    let body = r#"{"input": {"a": 1}}"#;
    assert_eq!(
        cache_header(&server.post("/v1/data/p/x", body).await),
        "miss"
    );
    assert_eq!(
        cache_header(&server.post("/v1/data/p/x", body).await),
        "hit"
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        cache_header(&server.post("/v1/data/p/x", body).await),
        "miss"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bounds_hold_under_a_flood_of_distinct_inputs() {
    for (max_entries, max_bytes) in [(100u64, 64u64 << 20), (100_000, 20_000)] {
        let server =
            TestServer::start_configured(&[("p.rego", "package p\nx := input.a\n")], |c| {
                c.cache.max_entries = max_entries;
                c.cache.max_size_bytes = max_bytes;
            })
            .await;
        let mut conn = Conn::open(server.addr).await;
        for i in 0..2_000 {
            let body = format!(r#"{{"input": {{"a": {i}}}}}"#);
            let reply = conn
                .send("POST", "/v1/data/p/x", &[], Bytes::from(body))
                .await;
            assert_eq!(reply.body, format!("{{\"result\":{i}}}\n"));
        }
        let entries = metric(&server, "regent_decision_cache_entries").await;
        let bytes = metric(&server, "regent_decision_cache_weighted_bytes").await;
        assert!(entries > 0.0, "nothing cached");
        assert!(
            entries <= max_entries as f64,
            "{entries} entries > {max_entries}"
        );
        assert!(bytes <= max_bytes as f64, "{bytes} bytes > {max_bytes}");
        server.stop().await.unwrap();
    }
}

/// Every generated test input of the default policies, as `allow` and as
/// `filter`: the cached answer is byte for byte the evaluated one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_uncached_answers_are_identical_on_every_generated_input() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let suite = Suite::load(&[dir]).unwrap();
    let mut requests: Vec<(String, String)> = Vec::new();
    for case in &suite.cases {
        let Plan::Direct { path, input, .. } = &case.plan else {
            continue;
        };
        let body = format!(r#"{{"input": {}}}"#, serde_json::to_string(input).unwrap());
        let mut filter = path.segments().to_vec();
        filter.pop();
        filter.push("filter".into());
        for p in [path.segments().to_vec(), filter] {
            requests.push((format!("/v1/data/{}", p.join("/")), body.clone()));
        }
    }
    assert!(requests.len() > 40_000, "only {} requests", requests.len());
    // Inputs repeat across tests; only the first sight of each is a miss.
    let server = TestServer::start_paths(Vec::new()).await;
    let requests = std::sync::Arc::new(requests);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let requests = requests.clone();
            let addr = server.addr;
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                let mut compared = 0;
                for (path, body) in requests.iter().skip(w).step_by(4) {
                    let first = conn
                        .send("POST", path, &[], Bytes::from(body.clone()))
                        .await;
                    let second = conn
                        .send("POST", path, &[], Bytes::from(body.clone()))
                        .await;
                    assert_eq!(first.status, 200, "{path} {body}: {}", first.body);
                    assert_eq!(cache_header(&second), "hit", "{path} {body}");
                    assert_eq!(first.body, second.body, "{path} {body}");
                    compared += 1;
                }
                compared
            })
        })
        .collect();
    let mut compared = 0;
    for worker in workers {
        compared += worker.await.unwrap();
    }
    assert_eq!(compared, requests.len());
    server.stop().await.unwrap();
}
