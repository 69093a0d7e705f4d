//! The data API: v1 POST/GET, v0, the root document, the default decision,
//! query options and input handling.

use bytes::Bytes;

use crate::support::{gzip, request, Conn, TestServer};

const AUTHZ: &str = r#"package authz
import rego.v1

default allow := false

allow if input.user == "alice"

allow if input.user in data.admins

greeting := sprintf("hello <%s> & welcome", [input.user])

maybe if input.user == "carol"
"#;

async fn authz() -> TestServer {
    TestServer::start(&[
        ("authz.rego", AUTHZ),
        ("authz/data.json", r#"{"ignored_key": 1}"#),
        ("data.json", r#"{"admins": ["root"]}"#),
    ])
    .await
}

#[tokio::test]
async fn allow_true_and_false() {
    let s = authz().await;
    let r = s
        .post("/v1/data/authz/allow", r#"{"input": {"user": "alice"}}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "{\"result\":true}\n");
    assert_eq!(r.headers["content-type"], "application/json");
    let r = s
        .post("/v1/data/authz/allow", r#"{"input": {"user": "bob"}}"#)
        .await;
    assert_eq!(r.body, "{\"result\":false}\n");
    // Data from a data.json at the root applies.
    let r = s
        .post("/v1/data/authz/allow", r#"{"input": {"user": "root"}}"#)
        .await;
    assert_eq!(r.body, "{\"result\":true}\n");
}

#[tokio::test]
async fn undefined_has_no_result_key() {
    let s = authz().await;
    let r = s
        .post("/v1/data/authz/maybe", r#"{"input": {"user": "bob"}}"#)
        .await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "{}\n"));
    let r = s.post("/v1/data/no/such/rule", r#"{"input": {}}"#).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "{}\n"));
}

#[tokio::test]
async fn missing_input_warns_like_opa() {
    let s = authz().await;
    for body in ["", "{}", "null", r#"{"input": null}"#] {
        let r = s.post("/v1/data/authz/allow", body).await;
        assert_eq!(r.status, 200, "{body}");
        assert_eq!(
            r.json(),
            serde_json::json!({"result": false, "warning": {"code": "api_usage_warning", "message": "'input' key missing from the request"}})
        );
    }
}

#[tokio::test]
async fn get_with_and_without_input() {
    let s = authz().await;
    let r = s.get("/v1/data/authz/allow").await;
    assert_eq!(r.body, "{\"result\":false}\n");
    let q = "/v1/data/authz/allow?input=%7B%22user%22%3A%22alice%22%7D";
    assert_eq!(s.get(q).await.body, "{\"result\":true}\n");
    let r = s.get("/v1/data/authz/allow?input=%7B").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_parameter");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("parameter contains malformed input document"));
}

#[tokio::test]
async fn data_files_load_at_their_directory_path() {
    let s = authz().await;
    let r = s.get("/v1/data/authz/ignored_key").await;
    assert_eq!(r.body, "{\"result\":1}\n");
    let r = s.get("/v1/data/admins/0").await;
    assert_eq!(r.body, "{\"result\":\"root\"}\n");
}

#[tokio::test]
async fn root_document_holds_rules_and_data() {
    let s = authz().await;
    let r = s.post("/v1/data", r#"{"input": {"user": "alice"}}"#).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["result"]["authz"]["allow"], true);
    assert_eq!(v["result"]["authz"]["ignored_key"], 1);
    assert_eq!(v["result"]["admins"], serde_json::json!(["root"]));
    // A package path returns the package's documents.
    let v = s
        .post("/v1/data/authz", r#"{"input": {"user": "bob"}}"#)
        .await
        .json();
    assert_eq!(v["result"]["allow"], false);
    assert!(v["result"].get("maybe").is_none());
}

#[tokio::test]
async fn v0_body_is_the_input_and_undefined_is_404() {
    let s = authz().await;
    let r = s.post("/v0/data/authz/allow", r#"{"user": "alice"}"#).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "true\n"));
    let r = s.post("/v0/data/authz/maybe", r#"{"user": "bob"}"#).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body,
        "{\n  \"code\": \"undefined_document\",\n  \"message\": \"document undefined: data.authz.maybe\"\n}\n"
    );
    let r = s.post("/v0/data/nothing/here", "{}").await;
    assert_eq!(r.json()["message"], "document missing: data.nothing.here");
    let r = s.post("/v0/data/authz/allow", "[1").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("unexpected parse error for input"));
}

#[tokio::test]
async fn default_decision_is_system_main() {
    let s = TestServer::start(&[(
        "main.rego",
        "package system\nimport rego.v1\nmain := {\"user\": input.user, \"ok\": true}\n",
    )])
    .await;
    let r = s.post("/", r#"{"user": "alice"}"#).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "{\"ok\":true,\"user\":\"alice\"}\n")
    );
    let s = authz().await;
    let r = s.post("/", "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "document missing: data.system.main");
}

#[tokio::test]
async fn pretty_metrics_and_provenance() {
    let s = authz().await;
    let r = s
        .post(
            "/v1/data/authz/allow?pretty",
            r#"{"input": {"user": "alice"}}"#,
        )
        .await;
    assert_eq!(r.body, "{\n  \"result\": true\n}\n");
    let r = s
        .post(
            "/v1/data/authz/allow?metrics&provenance",
            r#"{"input": {"user": "alice"}}"#,
        )
        .await;
    let v = r.json();
    for key in [
        "timer_rego_input_parse_ns",
        "timer_rego_query_eval_ns",
        "timer_server_handler_ns",
    ] {
        assert!(v["metrics"][key].as_u64().is_some(), "{key} missing in {v}");
    }
    let revision = v["provenance"]["revision"].as_str().unwrap();
    assert_eq!(revision.len(), 16);
    assert_eq!(v["provenance"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["provenance"].get("bundles").is_none(), "no bundles: {v}");
    // `instrument` is accepted; a value other than true turns an option off.
    let v = s
        .post(
            "/v1/data/authz/allow?instrument&provenance=false",
            "{\"input\": {}}",
        )
        .await
        .json();
    assert!(v.get("provenance").is_none() && v.get("metrics").is_some());
}

#[tokio::test]
async fn strings_are_escaped_as_go_escapes_them() {
    let s = authz().await;
    let r = s
        .post("/v1/data/authz/greeting", r#"{"input": {"user": "x"}}"#)
        .await;
    assert_eq!(
        r.body,
        "{\"result\":\"hello \\u003cx\\u003e \\u0026 welcome\"}\n"
    );
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let s = authz().await;
    let body = gzip(br#"{"input": {"user": "alice"}}"#);
    let r = request(
        s.addr,
        "POST",
        "/v1/data/authz/allow",
        &[("content-encoding", "gzip")],
        body,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "{\"result\":true}\n")
    );
}

/// OPA reads a decision body as YAML when the content type says so.
#[tokio::test]
async fn yaml_bodies_are_read_as_yaml_within_the_limits() {
    let s = authz().await;
    let yaml = |path: &'static str, body: &'static str| {
        request(
            s.addr,
            "POST",
            path,
            &[("content-type", "application/x-yaml")],
            Bytes::from_static(body.as_bytes()),
        )
    };
    let r = yaml("/v1/data/authz/allow", "input:\n  user: alice\n").await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (200, "{\"result\":true}\n")
    );
    let r = yaml("/v0/data/authz/allow", "user: alice\n").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "true\n"));
    let r = yaml(
        "/v1/batch/data/authz/allow",
        "inputs:\n  a: {user: alice}\n  b: {user: bob}\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["responses"]["a"]["result"], true);
    // Anchors and merge keys, as goyaml v2 merges them (a later key wins).
    let r = yaml(
        "/v1/batch/data/authz/allow",
        "common: &c {user: alice, role: x}\ninputs:\n  a: {<<: *c}\n  b: {<<: *c, user: bob}\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["responses"]["a"]["result"], true);
    assert_eq!(r.json()["responses"]["b"]["result"], false);
    // Not YAML: OPA's 400 with the parser's complaint.
    let r = yaml("/v1/data/authz/allow", "input: [alice\n").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "invalid_parameter");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("body contains malformed input document: "),
        "{message}"
    );
    // The same YAML text without the YAML content type is read as JSON.
    let r = s
        .post("/v1/data/authz/allow", "input:\n  user: alice\n")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Aliases cannot make a small YAML body stand for more JSON than the
/// decompressed-body limit allows: the conversion stops at the limit.
#[tokio::test]
async fn a_yaml_alias_bomb_is_refused_at_the_size_limit() {
    let limits = regent::api::Limits {
        max_decompressed_bytes: 64 << 10,
        ..regent::api::Limits::default()
    };
    let s = TestServer::start_with(&[("authz.rego", AUTHZ)], limits).await;
    let mut bomb = String::from("input:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d")] {
        bomb.push_str(&format!(
            "  {name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    // 8^5 = 32768 strings (~200 KB of JSON) from under 500 bytes.
    assert!(bomb.len() < 500);
    let r = request(
        s.addr,
        "POST",
        "/v1/data/authz/allow",
        &[("content-type", "application/yaml")],
        Bytes::from(bomb),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["code"], "invalid_parameter");
    // The server is unharmed.
    let r = s
        .post("/v1/data/authz/allow", r#"{"input": {"user": "alice"}}"#)
        .await;
    assert_eq!(r.body, "{\"result\":true}\n");
}

#[tokio::test]
async fn builtin_errors_are_undefined_unless_strict() {
    let rego = "package b\nimport rego.v1\nx if startswith(input.name, \"a\")\n";
    let s = TestServer::start(&[("b.rego", rego)]).await;
    let r = s.post("/v1/data/b/x", r#"{"input": {"name": null}}"#).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "{}\n"));
    let r = s
        .post(
            "/v1/data/b/x?strict-builtin-errors",
            r#"{"input": {"name": null}}"#,
        )
        .await;
    assert_eq!(r.status, 500);
    let v = r.json();
    assert_eq!(v["code"], "internal_error");
    assert!(v["errors"][0]["location"]["file"]
        .as_str()
        .unwrap()
        .ends_with("b.rego"));
}

#[tokio::test]
async fn failing_builtins_are_eval_builtin_errors_under_strict() {
    let rego = "package b\nimport rego.v1\nn := to_number(input.s)\nq := 1 / input.d\n";
    let s = TestServer::start(&[("b.rego", rego)]).await;
    let strict = "?strict-builtin-errors";
    let r = s
        .post(
            &format!("/v1/data/b/n{strict}"),
            r#"{"input": {"s": "twelve"}}"#,
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    let error = &r.json()["errors"][0];
    assert_eq!(error["code"], "eval_builtin_error", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("to_number: "),
        "{error}"
    );
    assert_eq!(error["location"]["row"], 3, "{error}");
    let r = s
        .post(&format!("/v1/data/b/q{strict}"), r#"{"input": {"d": 0}}"#)
        .await;
    let error = &r.json()["errors"][0];
    assert_eq!(
        (&error["code"], &error["message"]),
        (
            &serde_json::json!("eval_builtin_error"),
            &serde_json::json!("div: divide by zero")
        ),
        "{error}"
    );
    // Without strict, both are undefined.
    let r = s
        .post("/v1/data/b/n", r#"{"input": {"s": "twelve"}}"#)
        .await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "{}\n"));
}

#[tokio::test]
async fn connections_are_kept_alive() {
    let s = authz().await;
    let mut conn = Conn::open(s.addr).await;
    for user in ["alice", "bob", "alice"] {
        let body = Bytes::from(format!(r#"{{"input": {{"user": "{user}"}}}}"#));
        let r = conn.send("POST", "/v1/data/authz/allow", &[], body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["result"], user == "alice");
    }
    // An idle keep-alive connection does not hold up a graceful stop.
    tokio::time::timeout(std::time::Duration::from_secs(5), s.stop())
        .await
        .expect("stop hung on an idle connection")
        .unwrap();
}

/// As OPA: the path is split on its slashes as sent, then each segment
/// decoded, so an encoded slash stays inside one key.
#[tokio::test]
async fn an_encoded_slash_stays_inside_one_key() {
    let server = TestServer::start(&[(
        "x/data.json",
        r#"{"a/b": "one key", "a": {"b": "nested", "c d": "space"}}"#,
    )])
    .await;
    for (path, want) in [
        ("/v1/data/x/a%2Fb", "{\"result\":\"one key\"}\n"),
        ("/v1/data/x/a/b", "{\"result\":\"nested\"}\n"),
        ("/v1/data/x/a/c%20d", "{\"result\":\"space\"}\n"),
    ] {
        assert_eq!(server.get(path).await.body, want, "{path}");
    }
    let reply = server.post("/v1/data/x/a%2Fb", r#"{"input": {}}"#).await;
    assert_eq!(reply.body, "{\"result\":\"one key\"}\n");
}
