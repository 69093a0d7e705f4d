//! The embedded default policy set: its generated test suite passes at full
//! size, it answers the contract's examples exactly, and every package the
//! CVAT contract names gives a definite answer.

use std::process::Command;

use crate::support::{regent_bin, Conn};

const PACKAGES: &[&str] = &[
    "server",
    "users",
    "cloudstorages",
    "projects",
    "tasks",
    "jobs",
    "comments",
    "issues",
    "labels",
    "annotationguides",
    "organizations",
    "invitations",
    "memberships",
    "webhooks",
    "events",
    "lambda",
    "lambda_requests",
    "analytics",
    "access_tokens",
    "quality_reports",
    "conflicts",
    "quality_settings",
    "consensus_merges",
    "consensus_settings",
    "requests",
];

fn policies_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/policies").to_string()
}

#[test]
fn the_generated_suite_passes_in_full() {
    let out = Command::new(regent_bin())
        .args(["test", &policies_dir()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(
        out.status.success(),
        "regent test policies/ failed:\n{}",
        &text[text.len().saturating_sub(4000)..]
    );
    let (pass, total) = last.trim_start_matches("PASS: ").split_once('/').unwrap();
    assert_eq!(pass, total, "{last}");
    assert!(
        total.parse::<usize>().unwrap() > 10_000,
        "suspiciously few tests: {last}"
    );
}

/// A server on the embedded default set (no paths given).
async fn default_server() -> std::net::SocketAddr {
    let config = crate::support::config(Vec::new(), regent::api::Limits::default());
    let state = regent::run::prepare(&config).unwrap().state;
    let server = regent::server::Server::bind(&config.addrs, state, None)
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    tokio::spawn(server.serve(std::future::pending(), config.shutdown_grace));
    addr
}

async fn decide(conn: &mut Conn, path: &str, input: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({ "input": input }).to_string();
    let r = conn.send("POST", path, &[], body.into()).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

#[tokio::test]
async fn contract_examples_give_the_contract_filters() {
    let addr = default_server().await;
    let mut conn = Conn::open(addr).await;
    let users = serde_json::json!({"scope": "list", "auth": {"user": {"id": 66, "privilege": "admin"}, "organization": {"id": 183, "owner": {"id": 66}, "user": {"role": "owner"}}}, "resource": null});
    assert_eq!(
        decide(&mut conn, "/v1/data/users/filter", users).await["result"],
        serde_json::json!(["&", {}, ["|", {"memberships__organization": 183}], "org_filter_proof"])
    );
    let tasks = serde_json::json!({"scope": "list", "auth": {"user": {"id": 42, "privilege": "user"}, "organization": {"id": 7, "owner": {"id": 1}, "user": {"role": "worker"}}, "organization_specified": true}, "resource": null});
    assert_eq!(
        decide(&mut conn, "/v1/data/tasks/filter", tasks).await["result"],
        serde_json::json!(["&", ["|", {"owner_id": 42}, {"assignee_id": 42}, {"project__owner_id": 42}, {"project__assignee_id": 42}], ["|", {"organization": 7}, {"project__organization": 7}], "org_filter_proof"])
    );
    let admin = serde_json::json!({"scope": "list", "auth": {"user": {"id": 1, "privilege": "admin"}, "organization": null}, "resource": null});
    assert_eq!(
        decide(&mut conn, "/v1/data/tasks/filter", admin).await["result"],
        serde_json::json!(["&", {}, "org_filter_proof"])
    );
}

#[tokio::test]
async fn every_contract_package_answers_allow_definitely() {
    let addr = default_server().await;
    let mut conn = Conn::open(addr).await;
    let inputs = [
        serde_json::json!({}),
        serde_json::json!({"scope": "view", "auth": {"user": {"id": 1, "privilege": "admin"}, "organization": null}, "resource": null}),
        serde_json::json!({"scope": "view", "auth": {"user": {"id": 1, "privilege": null}, "organization": {"id": 2, "owner": {"id": 3}, "user": {"role": null}}}, "resource": {"id": 5}}),
    ];
    for package in PACKAGES {
        for prefix in ["", "access_token_plugin/"] {
            for input in &inputs {
                let path = format!("/v1/data/{prefix}{package}/allow");
                let v = decide(&mut conn, &path, input.clone()).await;
                assert!(v["result"].is_boolean(), "{path} with {input}: {v}");
            }
        }
    }
}
