//! `--watch`: real files in a temp dir changed under a running server.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{path_string, TestServer};

const V1: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"alice\"\n";
const V2: &str =
    "package app\nimport rego.v1\ndefault allow := false\nallow if input.user == \"bob\"\n";

async fn alice(server: &TestServer) -> String {
    server
        .post("/v1/data/app/allow", r#"{"input": {"user": "alice"}}"#)
        .await
        .body
}

/// Polls until `alice` answers `want` (5 s at most; the reload takes
/// milliseconds, the margin is for a loaded machine).
async fn eventually(server: &TestServer, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = alice(server).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn watched(dir: &Path) -> TestServer {
    let dir = path_string(dir);
    TestServer::start_configured(&[], move |c| {
        c.paths = vec![dir];
        c.watch = true;
    })
    .await
}

const TRUE: &str = "{\"result\":true}\n";
const FALSE: &str = "{\"result\":false}\n";

#[tokio::test]
async fn edits_new_files_and_deletions_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.rego"), V1).unwrap();
    let server = watched(dir.path()).await;
    assert_eq!(alice(&server).await, TRUE);

    // Truncate-then-write.
    std::fs::write(dir.path().join("app.rego"), V2).unwrap();
    eventually(&server, FALSE).await;

    // Rename-over write.
    std::fs::write(dir.path().join("tmp.swp"), V1).unwrap();
    std::fs::rename(dir.path().join("tmp.swp"), dir.path().join("app.rego")).unwrap();
    eventually(&server, TRUE).await;

    // A new subdirectory with a new module.
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/extra.rego"),
        "package extra\nimport rego.v1\nx := 1\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get("/v1/data/extra/x").await.body != "{\"result\":1}\n" {
        assert!(
            Instant::now() < deadline,
            "new module never loaded: {}",
            server.get("/v1/status").await.body
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A deleted file's rules disappear.
    std::fs::remove_file(dir.path().join("app.rego")).unwrap();
    eventually(&server, "{}\n").await;
    server.stop().await.unwrap();
}

/// How many `--watch` reloads have succeeded, from `/metrics`.
async fn watch_reloads(server: &TestServer) -> u64 {
    let metrics = server.get("/metrics").await.body;
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("regent_policy_reloads_total{result=\"success\",source=\"watch\"} ")
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// A reload opens every watched file; those opens (and any other reads or
/// metadata-only changes) must not start the next reload.
#[tokio::test]
async fn a_change_reloads_once_and_reading_the_files_does_not_reload() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.rego");
    std::fs::write(&file, V1).unwrap();
    let server = watched(dir.path()).await;
    std::fs::write(&file, V2).unwrap();
    eventually(&server, FALSE).await;
    // Let the write's burst settle, then nothing more may happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = watch_reloads(&server).await;
    assert!(settled >= 1, "no reload counted");
    std::fs::read_to_string(&file).unwrap();
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&file, perms).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(watch_reloads(&server).await, settled, "reloads went on");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_change_keeps_the_old_answers_until_it_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.rego"), V1).unwrap();
    let server = watched(dir.path()).await;

    std::fs::write(dir.path().join("app.rego"), "package app\nallow := \n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = server.get("/v1/status").await.json();
        if let Some(message) = status["result"]["last_error"]["message"].as_str() {
            assert!(message.contains("app.rego:3"), "{message}");
            assert_eq!(status["result"]["last_error"]["source"], "watch");
            break;
        }
        assert!(Instant::now() < deadline, "no error reported: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(alice(&server).await, TRUE);
    let metrics = server.get("/metrics").await.body;
    assert!(
        metrics.contains("regent_policy_reloads_total{result=\"failure\",source=\"watch\"}"),
        "{metrics}"
    );

    std::fs::write(dir.path().join("app.rego"), V2).unwrap();
    eventually(&server, FALSE).await;
    server.stop().await.unwrap();
}

/// Kubernetes mounts a ConfigMap as `file -> ..data/file` with
/// `..data -> ..<timestamp>/`, and updates it by swapping `..data`.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_symlink_swap_reloads() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..2026_11_23_a")).unwrap();
    std::fs::write(root.join("..2026_11_23_a/app.rego"), V1).unwrap();
    symlink("..2026_11_23_a", root.join("..data")).unwrap();
    symlink("..data/app.rego", root.join("app.rego")).unwrap();
    let server = watched(root).await;
    assert_eq!(alice(&server).await, TRUE);

    std::fs::create_dir(root.join("..2026_11_23_b")).unwrap();
    std::fs::write(root.join("..2026_11_23_b/app.rego"), V2).unwrap();
    symlink("..2026_11_23_b", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_11_23_a")).unwrap();
    eventually(&server, FALSE).await;
    server.stop().await.unwrap();
}

/// `-w -b` with two bundles: a change to both where one does not compile
/// activates neither (as OPA, the bundles load in one transaction); once
/// it is fixed, both are new together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_bundles_activate_together_or_not_at_all() {
    let write = |dir: &Path, name: &str, version: &str| {
        std::fs::write(
            dir.join(".manifest"),
            format!(r#"{{"revision": "{version}", "roots": ["{name}"]}}"#),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}.rego")),
            format!("package {name}\n\nv := \"{version}\"\n"),
        )
        .unwrap();
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(one.path(), "one", "1a");
    write(two.path(), "two", "2a");
    let mut cfg = crate::support::config(
        vec![path_string(one.path()), path_string(two.path())],
        regent::api::Limits::default(),
    );
    cfg.bundle = true;
    cfg.watch = true;
    let server = TestServer::start_config(cfg).await;
    let both = async || {
        let get = async |name: &str| {
            let reply = server.get(&format!("/v1/data/{name}/v")).await;
            reply.json()["result"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        (get("one").await, get("two").await)
    };
    assert_eq!(both().await, ("1a".to_string(), "2a".to_string()));

    write(one.path(), "one", "1b");
    std::fs::write(two.path().join("two.rego"), "package two\n\nv := {\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = server.get("/v1/status").await.json();
        let message = status["result"]["last_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if message.contains("two.rego") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken bundle was never reported: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(both().await, ("1a".to_string(), "2a".to_string()));
    // The compile error is on the bundle that has it; the other says why
    // it was not activated.
    let bundles = server.get("/v1/status").await.json()["result"]["bundles"].clone();
    let status = |dir: &tempfile::TempDir| bundles[path_string(dir.path())].clone();
    let file = status(&two)["errors"][0]["location"]["file"].clone();
    assert!(file.as_str().unwrap().ends_with("two.rego"), "{bundles}");
    let message = status(&one)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.starts_with("not activated: bundle "), "{bundles}");
    assert!(message.contains(&path_string(two.path())), "{bundles}");
    assert_eq!(status(&one)["active_revision"], "1a", "{bundles}");

    write(two.path(), "two", "2b");
    let deadline = Instant::now() + Duration::from_secs(5);
    while both().await != ("1b".to_string(), "2b".to_string()) {
        assert!(
            Instant::now() < deadline,
            "never both new: {:?}",
            both().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.unwrap();
}
