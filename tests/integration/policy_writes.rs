//! OPA's policy write API (`PUT`/`DELETE /v1/policies/{id}`), each write
//! checked through a following decision, and the decision cache seeing the
//! new revision at once.

use crate::support::{request, Reply, TestServer};
use bytes::Bytes;

const V1: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"alice\"\n";
const TRUE: &str = "{\"result\":true}\n";
const FALSE: &str = "{\"result\":false}\n";
const V2: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"bob\"\n";

async fn put(server: &TestServer, id: &str, text: &str) -> Reply {
    request(
        server.addr,
        "PUT",
        &format!("/v1/policies/{id}"),
        &[],
        Bytes::from(text.to_string()),
    )
    .await
}

async fn delete(server: &TestServer, id: &str) -> Reply {
    let path = format!("/v1/policies/{id}");
    request(server.addr, "DELETE", &path, &[], Bytes::new()).await
}

async fn allow(server: &TestServer, user: &str) -> (String, String) {
    let reply = server
        .post(
            "/v1/data/app/allow",
            &format!(r#"{{"input": {{"user": "{user}"}}}}"#),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cache = reply.headers["x-regent-decision-cache"]
        .to_str()
        .unwrap()
        .to_string();
    (reply.body, cache)
}

#[tokio::test]
async fn a_put_policy_flips_the_answer_and_the_cache_never_serves_the_old_one() {
    let server = TestServer::start(&[("app.rego", V1)]).await;
    let revision =
        server.post("/v1/data?provenance", "{}").await.json()["provenance"]["revision"].clone();
    assert_eq!(
        allow(&server, "alice").await,
        ("{\"result\":true}\n".into(), "miss".into())
    );
    assert_eq!(
        allow(&server, "alice").await,
        ("{\"result\":true}\n".into(), "hit".into())
    );

    let reply = put(
        &server,
        "extra.rego",
        V2.replace("package app", "package app2").as_str(),
    )
    .await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "{}\n"));
    // A write to another package is still a new revision: no old entry is served.
    assert_eq!(allow(&server, "alice").await.1, "miss");

    // Replace the module that defines the answer (ids of loaded files are their paths).
    let id = server.get("/v1/policies").await.json()["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .find(|id| id.ends_with("app.rego"))
        .unwrap();
    let reply = put(&server, &id, V2).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        allow(&server, "alice").await,
        ("{\"result\":false}\n".into(), "miss".into())
    );
    assert_eq!(allow(&server, "bob").await.0, "{\"result\":true}\n");
    let now =
        server.post("/v1/data?provenance", "{}").await.json()["provenance"]["revision"].clone();
    assert_ne!(revision, now);
    let got = server.get(&format!("/v1/policies/{id}")).await.json();
    assert_eq!(got["result"]["raw"], V2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_puts_answer_400_with_opa_errors_and_change_nothing() {
    let server = TestServer::start(&[("app.rego", V1)]).await;
    let reply = put(&server, "bad.rego", "package bad\nx := \n").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(
        body["message"],
        "error(s) occurred while compiling module(s)"
    );
    assert_eq!(body["errors"][0]["code"], "rego_parse_error");
    assert_eq!(body["errors"][0]["location"]["file"], "bad.rego");
    assert_eq!(body["errors"][0]["location"]["row"], 3);

    // Parses, but does not compile (a variable declared twice).
    let clash = "package app\nimport rego.v1\nx if {\n\ty := 1\n\ty := 2\n}\n";
    let reply = put(&server, "clash.rego", clash).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["errors"][0]["code"], "rego_compile_error");

    // A second `default` for a document another module defaults: OPA
    // rejects it, so does Regent (regorus alone would accept it).
    let second_default = "package app\nimport rego.v1\ndefault allow := true\n";
    let reply = put(&server, "second.rego", second_default).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_compile_error");
    assert_eq!(
        error["message"],
        "multiple default rules data.app.allow found"
    );

    // A call to a function nothing defines: OPA's type checker refuses it
    // (regorus alone would accept it and fail every decision reaching it).
    let typo = "package app\nimport rego.v1\nimport data.lib\n\nextra if lib.is_admn(input.user)\n";
    let reply = put(&server, "typo.rego", typo).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_type_error");
    assert_eq!(error["message"], "undefined function data.lib.is_admn");
    assert_eq!(
        error["location"],
        serde_json::json!({"file": "typo.rego", "row": 5, "col": 10})
    );

    // regorus panics while compiling this module (constant folding
    // evaluates `X`, a `sprintf` precision beyond what Rust formats): the
    // write is refused like a compile error, and the policies stay.
    let panics = "package q\nimport rego.v1\nX := sprintf(\"%.100000f\", [1.5])\nallow if X\n";
    let reply = put(&server, "panics.rego", panics).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_compile_error");
    assert_eq!(
        error["message"],
        "regorus panicked while compiling the policies: Formatting argument out of range"
    );

    // Brackets nested too deeply for regorus's parser (exponential time).
    let deep = format!(
        "package app\nimport rego.v1\nx := {}1{}\n",
        "{\"a\": ".repeat(24),
        "}".repeat(24)
    );
    let reply = put(&server, "deep.rego", &deep).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_parse_error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("brackets nested too deeply"),
        "{message}"
    );
    assert_eq!(error["location"]["row"], 3);

    // A chain of 2,000 rules, each reading the next: regorus evaluates it
    // recursively, and the first decision overflowed the worker's stack.
    let rules: Vec<String> = (0..2000).map(|i| format!("r{i} if r{}", i + 1)).collect();
    let chain = format!(
        "package chain\nimport rego.v1\n{}\nr2000 if input.x\n",
        rules.join("\n")
    );
    let reply = put(&server, "chain.rego", &chain).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_compile_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("rule r0 nests too deeply"), "{message}");

    // A rule that depends on itself, here through another package: OPA
    // refuses it; regorus would recurse until the stack overflows and the
    // process aborts, on the first decision reaching it.
    let cycle = "package app\nimport rego.v1\nimport data.other\n\nallow if other.ok\n";
    let other = "package other\nimport rego.v1\n\nok if data.app.allow\n";
    assert_eq!(put(&server, "other.rego", other).await.status, 200);
    let reply = put(&server, "cycle.rego", cycle).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["errors"][0];
    assert_eq!(error["code"], "rego_recursion_error");
    assert_eq!(
        error["message"],
        "rule allow is recursive: allow -> ok -> allow"
    );

    assert_eq!(allow(&server, "alice").await.0, "{\"result\":true}\n");
    let ids = server.get("/v1/policies").await.body;
    assert!(
        !ids.contains("bad.rego")
            && !ids.contains("clash.rego")
            && !ids.contains("typo.rego")
            && !ids.contains("panics.rego")
            && !ids.contains("cycle.rego")
            && !ids.contains("deep.rego")
            && !ids.contains("chain.rego"),
        "{ids}"
    );
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("regent_policy_reloads_total{result=\"failure\",source=\"api\"} 8"),
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn delete_removes_a_module_and_its_rules() {
    let lib = "package lib\nimport rego.v1\nis_alice if input.user == \"alice\"\n";
    let user = "package app\nimport rego.v1\nimport data.lib\nallow if lib.is_alice\n";
    let server = TestServer::start(&[]).await;
    assert_eq!(put(&server, "lib.rego", lib).await.status, 200);
    assert_eq!(put(&server, "user.rego", user).await.status, 200);
    assert_eq!(allow(&server, "alice").await.0, "{\"result\":true}\n");

    let deleted = delete(&server, "user.rego").await;
    assert_eq!(
        (deleted.status.as_u16(), deleted.body.as_str()),
        (200, "{}\n")
    );
    assert_eq!(allow(&server, "alice").await.0, "{}\n");

    let missing = delete(&server, "user.rego").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["message"],
        "storage_not_found_error: policy id \"user.rego\""
    );
    let wrong = request(
        server.addr,
        "POST",
        "/v1/policies/user.rego",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET, PUT, DELETE");
    server.stop().await.unwrap();
}

/// Clients decide continuously while the module is swapped 50 times between
/// two versions: no request fails, every answer is one of the two versions',
/// and after each write returns, the next answer is the new version's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_never_fails_a_request_or_serves_a_stale_answer() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let server = TestServer::start(&[]).await;
    assert_eq!(put(&server, "app.rego", V1).await.status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (server.addr, stop.clone());
            tokio::spawn(async move {
                let mut conn = crate::support::Conn::open(addr).await;
                let mut answered = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let body = Bytes::from_static(br#"{"input": {"user": "alice"}}"#);
                    let reply = conn.send("POST", "/v1/data/app/allow", &[], body).await;
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    assert!(
                        reply.body == "{\"result\":true}\n" || reply.body == "{\"result\":false}\n",
                        "{}",
                        reply.body
                    );
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for swap in 0..50 {
        let (text, alice) = if swap % 2 == 0 {
            (V2, "false")
        } else {
            (V1, "true")
        };
        assert_eq!(put(&server, "app.rego", text).await.status, 200);
        assert_eq!(
            allow(&server, "alice").await.0,
            format!("{{\"result\":{alice}}}\n")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        assert!(client.await.unwrap() > 0);
    }
    server.stop().await.unwrap();
}

/// OPA's data write API, each write checked through a decision.
#[tokio::test]
async fn data_writes_change_decisions() {
    let policy = "package app\nimport rego.v1\ndefault allow := false\nallow if input.user in data.acl.admins\n";
    let server = TestServer::start(&[("app.rego", policy)]).await;
    let send = |method: &'static str,
                path: &'static str,
                headers: &'static [(&'static str, &'static str)],
                body: &'static str| {
        request(
            server.addr,
            method,
            path,
            headers,
            Bytes::from_static(body.as_bytes()),
        )
    };
    assert_eq!(allow(&server, "alice").await.0, FALSE);

    let put = send("PUT", "/v1/data/acl", &[], r#"{"admins": ["alice"]}"#).await;
    assert_eq!((put.status.as_u16(), put.body.as_str()), (204, ""));
    assert_eq!(allow(&server, "alice").await.0, TRUE);

    let again = send(
        "PUT",
        "/v1/data/acl",
        &[("if-none-match", "*")],
        r#"{"admins": []}"#,
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(allow(&server, "alice").await.0, TRUE);

    let patch = r#"[{"op": "replace", "path": "/admins/0", "value": "bob"}]"#;
    assert_eq!(send("PATCH", "/v1/data/acl", &[], patch).await.status, 204);
    assert_eq!(allow(&server, "alice").await.0, FALSE);
    assert_eq!(allow(&server, "bob").await.0, TRUE);

    let missing = send("PATCH", "/v1/data/nothing/here", &[], "[]").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.json()["code"], "resource_not_found");
    let bad = send("PATCH", "/v1/data/acl", &[], r#"{"op": "add"}"#).await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    assert_eq!(send("DELETE", "/v1/data/acl", &[], "").await.status, 204);
    assert_eq!(allow(&server, "bob").await.0, FALSE);
    let gone = send("DELETE", "/v1/data/acl", &[], "").await;
    assert_eq!(gone.status, 404);
    // The root document cannot be removed (nothing is). As OPA's router:
    // `/v1/data` has no DELETE route (405), `/v1/data/` reaches the store.
    send("PUT", "/v1/data/keep", &[], "1").await;
    let refused = send("DELETE", "/v1/data/", &[], "").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        refused.json(),
        serde_json::json!({"code": "invalid_parameter",
            "message": "storage_invalid_patch_error: root cannot be removed"})
    );
    let refused = send("DELETE", "/v1/data", &[], "").await;
    assert_eq!(refused.status, 405, "{}", refused.body);
    assert_eq!(refused.headers["allow"], "GET, POST, PUT, PATCH");
    assert_eq!(server.get("/v1/data/keep").await.body, "{\"result\":1}\n");
    // Paths that would nest documents without bound are refused.
    let deep = format!("/v1/data/{}", "x/".repeat(129));
    let refused = send("PUT", deep.leak(), &[], "1").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.json()["message"], "path has more than 128 segments");
    server.stop().await.unwrap();
}
