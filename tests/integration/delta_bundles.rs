//! Delta bundles end to end: a real bundle service answers first with a
//! snapshot, then with deltas built by `regent build`; each delta patches
//! the active data, and one that cannot apply (a missing document, other
//! roots, `persist: true`) changes nothing and is reported.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::bundle_service::BundleService;
use crate::bundles::{
    build_signed, bundle_status, persist_settings, polled_config, polled_config_files, wait_async,
};
use crate::support::{path_string, regent_bin, write_tree, TestServer};

const ACL: &str = "package acl\n\nallow if data.acl.users[input.user] == \"admin\"\n";

/// `regent build -b` over the given files, the tarball's bytes.
fn built(files: &[(&'static str, String)]) -> Vec<u8> {
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let src = write_tree(&files);
    let out = tempfile::tempdir().unwrap();
    let tarball = out.path().join("b.tar.gz");
    let status = Command::new(regent_bin())
        .args(["build", "-b", &path_string(src.path())])
        .args(["-o", &path_string(&tarball)])
        .status()
        .unwrap();
    assert!(status.success(), "{files:?}");
    std::fs::read(&tarball).unwrap()
}

fn snapshot(revision: &str, users: Value) -> Vec<u8> {
    built(&snapshot_files(revision, &users))
}

fn snapshot_files(revision: &str, users: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            ".manifest",
            json!({"revision": revision, "roots": ["acl"]}).to_string(),
        ),
        ("acl/policy.rego", ACL.to_string()),
        ("acl/data.json", json!({ "users": users }).to_string()),
    ]
}

fn delta(revision: &str, roots: &[&str], ops: Value) -> Vec<u8> {
    built(&delta_files(revision, roots, &ops))
}

fn delta_files(revision: &str, roots: &[&str], ops: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            ".manifest",
            json!({"revision": revision, "roots": roots}).to_string(),
        ),
        ("patch.json", json!({ "data": ops }).to_string()),
    ]
}

async fn allowed(server: &TestServer, user: &str) -> bool {
    let body = format!(r#"{{"input": {{"user": "{user}"}}}}"#);
    server.post("/v1/data/acl/allow", &body).await.json() == json!({"result": true})
}

async fn users(server: &TestServer) -> Value {
    server.get("/v1/data/acl/users").await.json()["result"].clone()
}

async fn reported(server: &TestServer, etag: &str, want: &str) {
    wait_async(etag, async || {
        bundle_status(server).await["message"]
            .as_str()
            .is_some_and(|m| m.contains(want))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_patch_the_active_data_or_change_nothing() {
    let service = BundleService::start(
        "/b.tar.gz",
        snapshot("s1", json!({"alice": "admin", "dan": "admin"})),
        "\"s1\"",
    );
    let server = TestServer::start_config(polled_config(&service, &[])).await;
    wait_async("snapshot", async || allowed(&server, "alice").await).await;
    assert_eq!(bundle_status(&server).await["type"], "snapshot");
    // As OPA's downloader: deltas are asked for on every request.
    assert_eq!(
        service.seen()[0].prefer.as_deref(),
        Some("modes=snapshot,delta")
    );

    let ops = json!([
        {"op": "upsert", "path": "/acl/users/bob", "value": "admin"},
        {"op": "remove", "path": "/acl/users/alice"},
        {"op": "replace", "path": "acl/users/dan", "value": "viewer"},
        {"op": "upsert", "path": "/acl/teams/t1/members", "value": ["bob"]},
    ]);
    service.set(delta("d1", &["acl"], ops), "\"d1\"");
    wait_async("delta", async || allowed(&server, "bob").await).await;
    assert!(!allowed(&server, "alice").await);
    assert_eq!(
        users(&server).await,
        json!({"bob": "admin", "dan": "viewer"})
    );
    assert_eq!(
        server.get("/v1/data/acl/teams").await.json()["result"],
        json!({"t1": {"members": ["bob"]}})
    );
    wait_async("delta in the status", async || {
        bundle_status(&server).await["active_revision"] == "d1"
    })
    .await;
    let status = bundle_status(&server).await;
    assert_eq!(status["type"], "delta", "{status}");
    // The policy stays: a delta changes data only.
    let policies = server.get("/v1/policies").await.json();
    assert_eq!(
        policies["result"][0]["id"], "b/acl/policy.rego",
        "{policies}"
    );

    // A list that fails half-way changes nothing: the upsert before the
    // failing remove is not applied either.
    let failing = json!([
        {"op": "upsert", "path": "/acl/users/eve", "value": "admin"},
        {"op": "remove", "path": "/acl/users/carol"},
    ]);
    service.set(delta("d2", &["acl"], failing), "\"d2\"");
    reported(
        &server,
        "d2",
        "storage_not_found_error: /acl/users/carol: document does not exist",
    )
    .await;
    let other_roots = json!([{"op": "upsert", "path": "/acl/users/eve", "value": "admin"}]);
    service.set(delta("d3", &["acl", "x"], other_roots), "\"d3\"");
    reported(
        &server,
        "d3",
        "delta bundle 'b' has wasm resolvers or manifest roots that are different from those in the store",
    )
    .await;
    assert!(!allowed(&server, "eve").await);
    assert_eq!(
        users(&server).await,
        json!({"bob": "admin", "dan": "viewer"})
    );
    let status = bundle_status(&server).await;
    assert_eq!(status["active_revision"], "d1", "{status}");
    assert_eq!(status["type"], "delta", "{status}");
    // The failed deltas' ETags are not kept: the next request still sends
    // the last activated one.
    let asked = service.seen().len();
    service.wait_for("another request", |seen| seen.len() > asked);
    let last = service.seen().last().unwrap().clone();
    assert_eq!(last.if_none_match.as_deref(), Some("\"d1\""));

    // A snapshot replaces everything under the roots again.
    service.set(snapshot("s2", json!({"carol": "admin"})), "\"s2\"");
    wait_async("second snapshot", async || allowed(&server, "carol").await).await;
    assert_eq!(users(&server).await, json!({"carol": "admin"}));
    assert!(server
        .get("/v1/data/acl/teams")
        .await
        .json()
        .get("result")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_bundle_refuses_deltas_as_opa_does() {
    let persistence = tempfile::tempdir().unwrap();
    let persist = persist_settings(persistence.path());
    let service = BundleService::start(
        "/b.tar.gz",
        snapshot("s1", json!({"alice": "admin"})),
        "\"s1\"",
    );
    let server = TestServer::start_config(polled_config(&service, &persist)).await;
    wait_async("snapshot", async || allowed(&server, "alice").await).await;
    let ops = json!([{"op": "upsert", "path": "/acl/users/bob", "value": "admin"}]);
    service.set(delta("d1", &["acl"], ops), "\"d1\"");
    reported(
        &server,
        "d1",
        "persisting delta bundle to disk is not supported",
    )
    .await;
    assert!(!allowed(&server, "bob").await);
    // Refused while reading, as OPA's reader does: the type stays the
    // active bundle's.
    let status = bundle_status(&server).await;
    assert_eq!(status["type"], "snapshot", "{status}");
    assert_eq!(status["active_revision"], "s1", "{status}");
    let saved = persistence.path().join("bundles/b/bundle.tar.gz");
    let files =
        regent::bundle::archive::read_tarball(&std::fs::read(&saved).unwrap(), 1 << 20).unwrap();
    assert!(files
        .iter()
        .any(|f| Path::new(&f.name).ends_with("data.json")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signing_configured_a_delta_must_be_signed() {
    // OPA skips verification for deltas; Regent verifies them as snapshots,
    // so that signing keeps unsigned data out.
    let signed = |files: Vec<(&'static str, String)>| {
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let src = write_tree(&refs);
        let out = tempfile::tempdir().unwrap();
        let tarball = out.path().join("b.tar.gz");
        build_signed(src.path(), &tarball, "s3cret", "HS256");
        std::fs::read(&tarball).unwrap()
    };
    let first = signed(snapshot_files("s1", &json!({"alice": "admin"})));
    let service = BundleService::start("/b.tar.gz", first, "\"s1\"");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "s3cret").unwrap();
    let keys = vec![
        "keys.k.algorithm=HS256".to_string(),
        "bundles.b.signing.keyid=k".to_string(),
    ];
    let key_file = [format!("keys.k.key={}", path_string(secret.path()))];
    let server = TestServer::start_config(polled_config_files(&service, &keys, &key_file)).await;
    wait_async("signed snapshot", async || allowed(&server, "alice").await).await;

    let add_bob = json!([{"op": "upsert", "path": "/acl/users/bob", "value": "admin"}]);
    service.set(delta("d1", &["acl"], add_bob.clone()), "\"d1\"");
    reported(&server, "d1", "bundle signature verification failed").await;
    assert!(!allowed(&server, "bob").await);

    service.set(signed(delta_files("d2", &["acl"], &add_bob)), "\"d2\"");
    wait_async("signed delta", async || allowed(&server, "bob").await).await;
    assert!(allowed(&server, "alice").await);
    assert_eq!(bundle_status(&server).await["type"], "delta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_with_no_snapshot_before_it_patches_the_data_in_place() {
    // As OPA: no snapshot is needed; the operations apply to the data there
    // is (here written through the API) and must all succeed. Until the PUT
    // lands, the `remove` fails and each retry changes nothing.
    let ops = json!([
        {"op": "upsert", "path": "/acl/users/b", "value": "admin"},
        {"op": "remove", "path": "/acl/users/a"},
    ]);
    let service = BundleService::start("/b.tar.gz", delta("d1", &["acl"], ops), "\"d1\"");
    let mut config = polled_config(&service, &[]);
    let policy = write_tree(&[("acl.rego", ACL)]);
    config.paths = vec![path_string(policy.path())];
    config.watch = true;
    let server = TestServer::start_config(config).await;
    let users_body = r#"{"a": "admin", "c": "admin"}"#;
    let put = crate::support::request(
        server.addr,
        "PUT",
        "/v1/data/acl/users",
        &[],
        users_body.into(),
    )
    .await;
    assert_eq!(put.status, 204, "{}", put.body);
    wait_async("delta", async || allowed(&server, "b").await).await;
    assert_eq!(users(&server).await, json!({"b": "admin", "c": "admin"}));
    // The file's policy was not erased by the delta's roots, and a file
    // reload keeps it too (and re-applies the patched data, not the patch).
    assert!(allowed(&server, "c").await);
    let extra = "package extra\n\nx := 1\n";
    std::fs::write(policy.path().join("extra.rego"), extra).unwrap();
    wait_async("reload", async || {
        server.get("/v1/data/extra/x").await.json() == json!({"result": 1})
    })
    .await;
    assert!(allowed(&server, "c").await);
    assert_eq!(users(&server).await, json!({"b": "admin", "c": "admin"}));
}

#[test]
fn a_local_delta_bundle_is_refused() {
    let dir = write_tree(&[(
        "patch.json",
        r#"{"data": [{"op": "upsert", "path": "/a", "value": 1}]}"#,
    )]);
    let out = Command::new(regent_bin())
        .args(["run", "--server", "--addr", "127.0.0.1:0", "-b"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a delta bundle (patch.json with operations) can only be downloaded"),
        "{stderr}"
    );
}
