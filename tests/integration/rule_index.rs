//! The rule index over HTTP: definitions guarded by `input.scope` are left
//! out of per-value copies of their rules; answers are those of the rules
//! as written, for every kind of value.

use regent::policy::{Snapshot, Sources};
use serde_json::{json, Value};

use crate::support::TestServer;

const POLICY: &str = r#"package app

import rego.v1

default allow := false

allow if {
	input.scope == "read"
	input.user.role in {"viewer", "editor"}
}

allow if {
	input.scope in {"update", "delete"}
	input.user.role == "editor"
}

allow if {
	input.scope in {"read", "update"} | {"list"}
	input.user.admin
}

allow if input.user.root

reasons contains "read" if "read" = input.scope

reasons contains "write" if {
	input.scope in ["update", "delete"]
}

reasons contains "any" if input.user
"#;

/// The policy's answers, written out.
fn expected(scope: &Value, user: &Value) -> (Value, Value) {
    let scope = scope.as_str().unwrap_or("");
    let role = user.get("role").and_then(Value::as_str).unwrap_or("");
    let flag = |name: &str| user.get(name) == Some(&json!(true));
    let allow = (scope == "read" && (role == "viewer" || role == "editor"))
        || (matches!(scope, "update" | "delete") && role == "editor")
        || (matches!(scope, "read" | "update" | "list") && flag("admin"))
        || flag("root");
    let mut reasons = vec!["any"];
    if scope == "read" {
        reasons.push("read");
    }
    if matches!(scope, "update" | "delete") {
        reasons.push("write");
    }
    reasons.sort();
    (json!(allow), json!(reasons))
}

async fn gauge(server: &TestServer, name: &str) -> u64 {
    let body = server.get("/metrics").await.body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

/// Every scope kind (named by a guard, named by none, missing, not a
/// string) with every kind of user, checked against [`expected`].
async fn check_all(server: &TestServer) {
    let scopes = [
        json!("read"),
        json!("update"),
        json!("delete"),
        json!("list"),
        json!("other"),
        json!(5),
        json!(null),
        json!(["read"]),
    ];
    let users = [
        json!({"role": "viewer"}),
        json!({"role": "editor"}),
        json!({"admin": true}),
        json!({"root": true}),
        json!({}),
    ];
    for user in &users {
        for scope in &scopes {
            let (allow, reasons) = expected(scope, user);
            let body = json!({"input": {"scope": scope, "user": user}}).to_string();
            let reply = server.post("/v1/data/app/allow", &body).await;
            assert_eq!(reply.json()["result"], allow, "allow for {body}");
            let reply = server.post("/v1/data/app/reasons", &body).await;
            assert_eq!(reply.json()["result"], reasons, "reasons for {body}");
        }
        // No scope at all.
        let body = json!({"input": {"user": user}}).to_string();
        let (allow, reasons) = expected(&Value::Null, user);
        assert_eq!(
            server.post("/v1/data/app/allow", &body).await.json()["result"],
            allow
        );
        assert_eq!(
            server.post("/v1/data/app/reasons", &body).await.json()["result"],
            reasons
        );
    }
}

#[tokio::test]
async fn indexed_rules_answer_the_same_for_every_kind_of_value() {
    let server =
        TestServer::start_configured(&[("app.rego", POLICY)], |c| c.cache.enabled = false).await;
    // `allow`: read, update, delete, list and any other value each leave
    // out different definitions; `reasons`: read, update or delete, other.
    assert_eq!(gauge(&server, "regent_indexed_copies_planned").await, 8);
    assert_eq!(gauge(&server, "regent_indexed_copies").await, 8);
    check_all(&server).await;
    // The copies are no documents of their own.
    let package = server.get("/v1/data/app").await.json();
    let keys: Vec<&String> = package["result"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["allow", "reasons"]);
    let copy = server
        .post("/v1/data/app/__regent_ix0_allow", r#"{"input": {}}"#)
        .await;
    assert_eq!(copy.json(), json!({}));
    server.stop().await.unwrap();
}

/// A rule using `with` (which the VM refuses: the interpreter answers it,
/// over the policy as written) beside indexed rules.
#[tokio::test]
async fn a_rule_with_with_answers_right_beside_indexed_rules() {
    let with = format!("{POLICY}\nas_admin if allow with input.user as {{\"admin\": true}}\n");
    let server =
        TestServer::start_configured(&[("app.rego", &with)], |c| c.cache.enabled = false).await;
    assert_eq!(gauge(&server, "regent_indexed_copies").await, 8);
    for scope in ["read", "update", "delete", "list", "other"] {
        let body = json!({"input": {"scope": scope, "user": {}}}).to_string();
        let reply = server.post("/v1/data/app/as_admin", &body).await;
        // `true`, or undefined (no `result`).
        let want = matches!(scope, "read" | "update" | "list").then_some(json!(true));
        assert_eq!(reply.json().get("result"), want.as_ref(), "{body}");
    }
    check_all(&server).await;
    server.stop().await.unwrap();
}

/// A package that some rule reads whole would see the copies: its rules
/// are not indexed, and the answers stay right.
#[tokio::test]
async fn a_package_read_whole_is_not_indexed() {
    let reader = "package reader\n\nimport rego.v1\n\nrules := object.keys(data.app)\n";
    let server =
        TestServer::start_configured(&[("app.rego", POLICY), ("reader.rego", reader)], |c| {
            c.cache.enabled = false
        })
        .await;
    assert_eq!(gauge(&server, "regent_indexed_copies_planned").await, 0);
    let reply = server.post("/v1/data/reader/rules", "{}").await;
    assert_eq!(reply.json()["result"], json!(["allow", "reasons"]));
    check_all(&server).await;
    server.stop().await.unwrap();
}

/// A rule defined in two modules of its package, with a `default`: its
/// copies keep the definitions of both, and one holds the `default` alone.
#[tokio::test]
async fn a_rule_across_modules_and_a_copy_of_its_default_alone() {
    let first = "package app\n\nimport rego.v1\n\ndefault allow := false\n\n\
        allow if {\n\tinput.scope == \"read\"\n\tinput.user.role == \"viewer\"\n}\n";
    let second = "package app\n\nimport rego.v1\n\n\
        allow if {\n\tinput.scope == \"update\"\n\tinput.user.role == \"editor\"\n}\n";
    let server = TestServer::start_configured(&[("a.rego", first), ("b.rego", second)], |c| {
        c.cache.enabled = false
    })
    .await;
    // read, update, and any other value (the `default` alone).
    assert_eq!(gauge(&server, "regent_indexed_copies").await, 3);
    for scope in ["read", "update", "delete"] {
        for role in ["viewer", "editor"] {
            let body = json!({"input": {"scope": scope, "user": {"role": role}}}).to_string();
            let want = (scope, role) == ("read", "viewer") || (scope, role) == ("update", "editor");
            let reply = server.post("/v1/data/app/allow", &body).await;
            assert_eq!(reply.json()["result"], json!(want), "{body}");
        }
    }
    server.stop().await.unwrap();
}

/// Data with a key a copy could be named: the rules of that package are
/// not indexed (the data would not load beside them), and still answer.
#[tokio::test]
async fn data_beside_a_copy_name_leaves_the_package_unindexed() {
    let data = r#"{"__regent_ix0_allow": 1}"#;
    let server =
        TestServer::start_configured(&[("app.rego", POLICY), ("app/data.json", data)], |c| {
            c.cache.enabled = false
        })
        .await;
    assert_eq!(gauge(&server, "regent_indexed_copies_planned").await, 0);
    check_all(&server).await;
    let reply = server
        .post("/v1/data/app/__regent_ix0_allow", r#"{"input": {}}"#)
        .await;
    assert_eq!(reply.json()["result"], json!(1));
    server.stop().await.unwrap();
    // The fast path still answers them (not the whole set lost to the
    // data).
    let dir = crate::support::write_tree(&[("app.rego", POLICY), ("app/data.json", data)]);
    let path = crate::support::path_string(dir.path());
    let snapshot = Snapshot::build(Sources::load_paths(&[path]).unwrap()).unwrap();
    assert_eq!(snapshot.evaluator().fast_entries(), 2);
    assert_eq!(snapshot.evaluator().indexed_copies(), (0, 0));
}
