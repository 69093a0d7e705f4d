//! Bundles end to end: CVAT's exact command against a real bundle service,
//! ETag/304, broken bundles kept out, persistence across a service outage,
//! signed bundles built by `regent build`, `-b` bundles with roots, and the
//! configuration errors.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::bundle_service::{cvat_bundle, raw_tarball, BundleService};
use crate::process::Daemon;
use crate::support::{
    config, http_get, http_post, path_string, regent_bin, write_tree, TestServer,
};

const PROBE_V1: &str = "package cvat_probe\n\nallow if input.user == \"alice\"\n";
const PROBE_V2: &str = "package cvat_probe\n\nallow if input.user == \"bob\"\n";

/// The default policies' rule files, in CVAT's bundle shape, plus `probe`.
fn cvat_rules(probe: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rego"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    assert!(files.len() > 10, "default rules not found");
    files.push(("probe.rego".into(), probe.into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    cvat_bundle(&refs)
}

/// A bundle tarball of the directory `dir`, written in it (`b.tar.gz`).
fn tarball_of(dir: &std::path::Path) -> std::path::PathBuf {
    let files = regent::bundle::archive::read_dir(dir).unwrap();
    let tarball = dir.join("b.tar.gz");
    std::fs::write(
        &tarball,
        regent::bundle::archive::write_tarball(&files).unwrap(),
    )
    .unwrap();
    tarball
}

fn status_code(reply: &str) -> u16 {
    reply[9..12].parse().unwrap()
}

fn body_json(reply: &str) -> Value {
    serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cvat_exact_command_polls_activates_and_follows_changes() {
    let service = BundleService::start("/api/auth/rules", cvat_rules(PROBE_V1), "\"v1\"");
    service.set_available(false);
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("--set=services.cvat.url={}", service.url());
    let daemon = Daemon::start(
        cwd.path(),
        &[
            &url,
            "--set=bundles.cvat.service=cvat",
            "--set=bundles.cvat.resource=/api/auth/rules",
            "--set=bundles.cvat.polling.min_delay_seconds=5",
            "--set=bundles.cvat.polling.max_delay_seconds=15",
            "--set=decision_logs.console=true",
        ],
    );
    // Not activated yet: OPA answers 500 with this body.
    let reply = http_get(daemon.addr, "/health?bundles");
    assert_eq!(status_code(&reply), 500, "{reply}");
    assert!(
        reply.contains("one or more bundles are not activated"),
        "{reply}"
    );
    assert_eq!(status_code(&http_get(daemon.addr, "/health")), 200);

    service.set_available(true);
    eventually("bundle activated", Duration::from_secs(30), || {
        status_code(&http_get(daemon.addr, "/health?bundles")) == 200
    });
    // With `decision_logs.console=true` every answer carries its decision
    // id, as OPA's do; `allow` checks it is there and returns the rest.
    let allow = |user: &str| {
        let mut answer = body_json(&http_post(
            daemon.addr,
            "/v1/data/cvat_probe/allow",
            &format!(r#"{{"input": {{"user": "{user}"}}}}"#),
        ));
        let id = answer.as_object_mut().unwrap().remove("decision_id");
        assert!(id.is_some_and(|id| id.is_string()), "{answer}");
        answer
    };
    assert_eq!(allow("alice"), json!({"result": true}));
    let line = daemon.next_log("Decision Log");
    assert_eq!(
        line["bundles"],
        json!({"cvat": {"revision": "v1"}}),
        "{line}"
    );
    assert_eq!(line["result"], true, "{line}");
    assert_eq!(allow("bob"), json!({}));
    // The served default rules answer too (no embedded policies are loaded:
    // every module comes from the bundle).
    let policies = body_json(&http_get(daemon.addr, "/v1/policies"));
    let ids: Vec<&str> = policies["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| id.starts_with("cvat/rules/")),
        "{ids:?}"
    );
    assert!(ids.contains(&"cvat/rules/tasks.rego"), "{ids:?}");

    // The next poll carries the ETag and gets 304: nothing changes.
    service.wait_for("a 304", |seen| {
        seen.iter()
            .any(|s| s.status == 304 && s.if_none_match.as_deref() == Some("\"v1\""))
    });
    assert_eq!(allow("alice"), json!({"result": true}));

    service.set(cvat_rules(PROBE_V2), "\"v2\"");
    eventually("v2 activated", Duration::from_secs(30), || {
        allow("bob") == json!({"result": true})
    });
    assert_eq!(allow("alice"), json!({}));
    // The bundle's status is updated just after the new snapshot is swapped
    // in, so a request can see v2's answers a moment before its status.
    eventually("v2 in the status", Duration::from_secs(5), || {
        let status = body_json(&http_get(daemon.addr, "/v1/status"));
        status["result"]["bundles"]["cvat"]["active_revision"] == "v2"
    });
    let status = body_json(&http_get(daemon.addr, "/v1/status"));
    assert_eq!(status["result"]["revision"], "v2");
    assert_eq!(status_code(&http_get(daemon.addr, "/health?bundles")), 200);
}

/// A configuration for one bundle `b` from `service`, polled every 0-1 s.
pub(crate) fn polled_config(
    service: &BundleService,
    extra: &[String],
) -> regent::config::RunConfig {
    polled_config_files(service, extra, &[])
}

pub(crate) fn polled_config_files(
    service: &BundleService,
    extra: &[String],
    set_file: &[String],
) -> regent::config::RunConfig {
    let mut set = vec![
        format!("services.s.url={}", service.url()),
        "bundles.b.service=s".to_string(),
        "bundles.b.resource=/b.tar.gz".to_string(),
        "bundles.b.polling.min_delay_seconds=0".to_string(),
        "bundles.b.polling.max_delay_seconds=1".to_string(),
    ];
    set.extend(extra.iter().cloned());
    let mut config = config(Vec::new(), regent::api::Limits::default());
    config.opa = regent::opa_config::from_parts(None, &set, set_file)
        .unwrap_or_else(|e| panic!("{set:?} {set_file:?}: {e:#}"));
    config
}

async fn allow(server: &TestServer, user: &str) -> Value {
    server
        .post(
            "/v1/data/cvat_probe/allow",
            &format!(r#"{{"input": {{"user": "{user}"}}}}"#),
        )
        .await
        .json()
}

pub(crate) async fn bundle_status(server: &TestServer) -> Value {
    server.get("/v1/status").await.json()["result"]["bundles"]["b"].clone()
}

pub(crate) async fn wait_async(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bundles_are_reported_and_never_replace_the_active_one() {
    let good = cvat_bundle(&[("probe.rego", PROBE_V1)]);
    let service = BundleService::start("/b.tar.gz", good, "\"good\"");
    let server = TestServer::start_config(polled_config(
        &service,
        &[
            "bundles.b.size_limit_bytes=20000".to_string(),
            "labels.region=eu".to_string(),
            "services.s.credentials.bearer.token=t0k".to_string(),
            "bundles.b.polling.long_polling_timeout_seconds=7".to_string(),
        ],
    ))
    .await;
    wait_async("activation", async || {
        allow(&server, "alice").await == json!({"result": true})
    })
    .await;
    let first = service.seen()[0].clone();
    assert_eq!(first.authorization.as_deref(), Some("Bearer t0k"));
    let labels = server.get("/v1/status").await.json()["result"]["labels"].clone();
    assert_eq!(labels["region"], "eu");
    // Long polling configured; as OPA, `wait` is only asked for once the
    // service has confirmed it, which this one does not, so polling stays
    // periodic (see `long_polling_is_kept_while_the_service_confirms_it`).
    assert_eq!(first.prefer.as_deref(), Some("modes=snapshot,delta"));

    let oversized = "# padding\n".repeat(4000);
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "syntax",
            cvat_bundle(&[("probe.rego", "package cvat_probe\nallow if {\n")]),
            "error(s) occurred while compiling module(s)",
        ),
        ("gzip", b"this is not gzip".to_vec(), "archive"),
        (
            "dotdot",
            raw_tarball(&[("../probe.rego", PROBE_V2.as_bytes())]),
            "`..`",
        ),
        (
            "oversized",
            cvat_bundle(&[("probe.rego", &format!("{PROBE_V2}{oversized}"))]),
            "exceeded max size (20000 bytes)",
        ),
    ];
    for (etag, bytes, want) in broken {
        service.set(bytes, &format!("\"{etag}\""));
        wait_async(etag, async || {
            bundle_status(&server).await["message"]
                .as_str()
                .is_some_and(|m| m.contains(want))
        })
        .await;
        assert_eq!(
            allow(&server, "alice").await,
            json!({"result": true}),
            "{etag}"
        );
        let status = bundle_status(&server).await;
        assert_eq!(status["active_revision"], "good");
        assert_eq!(status["code"], "bundle_error");
        if etag == "syntax" {
            let error = &status["errors"][0];
            assert_eq!(error["code"], "rego_parse_error", "{status}");
            assert_eq!(error["location"]["file"], "b/rules/probe.rego", "{status}");
        }
        assert_eq!(server.get("/health?bundles").await.status, 200);
    }

    service.set(cvat_bundle(&[("probe.rego", PROBE_V2)]), "\"fixed\"");
    wait_async("fixed bundle", async || {
        allow(&server, "bob").await == json!({"result": true})
    })
    .await;
    // The status follows the swap by a moment (see the CVAT test).
    wait_async("fixed in the status", async || {
        bundle_status(&server).await["active_revision"] == "fixed"
    })
    .await;
    let status = bundle_status(&server).await;
    assert_eq!(status["active_revision"], "fixed");
    assert!(status.get("message").is_none(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_is_kept_while_the_service_confirms_it() {
    let service = BundleService::start(
        "/b.tar.gz",
        cvat_bundle(&[("probe.rego", PROBE_V1)]),
        "\"lp\"",
    );
    service.set_content_type("application/vnd.openpolicyagent.bundles");
    let token = write_tree(&[("token", "from-a-file\n")]);
    let token_path = path_string(&token.path().join("token"));
    // Periodic polling would wait 60 s between requests; a confirmed long
    // poll asks again at once (this service answers at once, not holding),
    // also after a 304, which carries no Content-Type to confirm it again.
    let server = TestServer::start_config(polled_config_files(
        &service,
        &[
            "bundles.b.polling.min_delay_seconds=60".to_string(),
            "bundles.b.polling.max_delay_seconds=60".to_string(),
            "bundles.b.polling.long_polling_timeout_seconds=5".to_string(),
            format!("services.s.credentials.bearer.token_path={token_path}"),
            "services.s.credentials.bearer.scheme=Token".to_string(),
        ],
        &[],
    ))
    .await;
    service.wait_for("three long polls, two of them 304", |seen| {
        seen.iter().filter(|s| s.status == 304).count() >= 2
    });
    assert_eq!(
        service.seen()[0].authorization.as_deref(),
        Some("Token from-a-file")
    );
    // The first request cannot know yet; every one after the confirming
    // answer asks to wait.
    let seen = service.seen();
    assert_eq!(seen[0].prefer.as_deref(), Some("modes=snapshot,delta"));
    assert!(seen[1..]
        .iter()
        .all(|s| s.prefer.as_deref() == Some("modes=snapshot,delta;wait=5")));
    assert_eq!(allow(&server, "alice").await, json!({"result": true}));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_services_are_trusted_through_their_ca() {
    let service = BundleService::start_tls(
        "/b.tar.gz",
        cvat_bundle(&[("probe.rego", PROBE_V1)]),
        "\"t\"",
    );
    let ca = path_string(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem"),
    );
    let mut config = polled_config(&service, &[format!("services.s.tls.ca_cert={ca}")]);
    config.opa.services.get_mut("s").unwrap().url = service.https_url();
    let server = TestServer::start_config(config).await;
    wait_async("activation over https", async || {
        allow(&server, "alice").await == json!({"result": true})
    })
    .await;

    // Without the CA the certificate is not trusted: never activated.
    let mut config = polled_config(&service, &[]);
    config.opa.services.get_mut("s").unwrap().url = service.https_url();
    let untrusted = TestServer::start_config(config).await;
    wait_async("the TLS failure is reported", async || {
        bundle_status(&untrusted).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("certificate"))
    })
    .await;
    assert_eq!(untrusted.get("/health?bundles").await.status, 500);
}

/// `--set` values persisting bundle `b` under `dir`.
pub(crate) fn persist_settings(dir: &std::path::Path) -> [String; 2] {
    [
        "bundles.b.persist=true".to_string(),
        format!("persistence_directory={}", path_string(dir)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_bundle_serves_while_the_service_is_down() {
    let persistence = tempfile::tempdir().unwrap();
    let persist = persist_settings(persistence.path());
    let service = BundleService::start(
        "/b.tar.gz",
        cvat_bundle(&[("probe.rego", PROBE_V1)]),
        "\"p1\"",
    );
    let first = TestServer::start_config(polled_config(&service, &persist)).await;
    wait_async("activation", async || {
        first.get("/health?bundles").await.status == 200
    })
    .await;
    first.stop().await.unwrap();
    assert!(persistence.path().join("bundles/b/bundle.tar.gz").is_file());

    // Port 1 on loopback: nothing listens, every download fails.
    let mut config = polled_config(&service, &persist);
    config.opa.services.get_mut("s").unwrap().url = "http://127.0.0.1:1".into();
    let second = TestServer::start_config(config).await;
    assert_eq!(second.get("/health?bundles").await.status, 200);
    assert_eq!(allow(&second, "alice").await, json!({"result": true}));
    wait_async("the download error is reported", async || {
        bundle_status(&second).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.1:1"))
    })
    .await;
    assert_eq!(allow(&second, "alice").await, json!({"result": true}));
}

fn fixture(name: &str) -> String {
    path_string(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/keys")
            .join(name),
    )
}

/// `regent build` over a bundle directory, signed with `key`/`alg`.
pub(crate) fn build_signed(dir: &std::path::Path, out: &std::path::Path, key: &str, alg: &str) {
    let status = Command::new(regent_bin())
        .args(["build", "-b", &path_string(dir), "-o", &path_string(out)])
        .args([
            "--revision",
            "r7",
            "--signing-key",
            key,
            "--signing-alg",
            alg,
        ])
        .args(["--verification-key-id", "k"])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_activate_only_with_the_right_key_and_untouched_files() {
    let src = write_tree(&[
        ("probe.rego", PROBE_V1),
        ("cvat_probe/data.json", r#"{"level": 3}"#),
    ]);
    let out = tempfile::tempdir().unwrap();
    let cases = [
        (
            "rsa",
            fixture("rsa_private.pem"),
            "RS256",
            fixture("rsa_public.pem"),
        ),
        (
            "ps",
            fixture("rsa_private.pem"),
            "PS256",
            fixture("rsa_public.pem"),
        ),
        (
            "ec",
            fixture("ec_private.pem"),
            "ES256",
            fixture("ec_public.pem"),
        ),
        ("hmac", "s3cret".to_string(), "HS256", "s3cret".to_string()),
    ];
    for (name, private, alg, public) in &cases {
        let tarball = out.path().join(format!("{name}.tar.gz"));
        build_signed(src.path(), &tarball, private, alg);
        let bytes = std::fs::read(&tarball).unwrap();
        let service = BundleService::start("/b.tar.gz", bytes.clone(), "\"e\"");
        let public = if std::path::Path::new(public).is_file() {
            public.clone()
        } else {
            let secret = out.path().join("secret");
            std::fs::write(&secret, public).unwrap();
            path_string(&secret)
        };
        let keys = vec![
            format!("keys.k.algorithm={alg}"),
            "bundles.b.signing.keyid=k".to_string(),
        ];
        let config = polled_config_files(&service, &keys, &[format!("keys.k.key={public}")]);
        let server = TestServer::start_config(config).await;
        wait_async(name, async || {
            server.get("/health?bundles").await.status == 200
        })
        .await;
        assert_eq!(allow(&server, "alice").await, json!({"result": true}));
        let level = server.get("/v1/data/cvat_probe/level").await.json();
        assert_eq!(level, json!({"result": 3}));
        assert_eq!(bundle_status(&server).await["active_revision"], "r7");

        // Tampered: the same signature over a changed module.
        let files = regent::bundle::archive::read_tarball(&bytes, 1 << 20).unwrap();
        let tampered: Vec<_> = files
            .into_iter()
            .map(|mut f| {
                if f.name.ends_with("probe.rego") {
                    f.bytes = PROBE_V2.as_bytes().to_vec();
                }
                f
            })
            .collect();
        service.set(
            regent::bundle::archive::write_tarball(&tampered).unwrap(),
            "\"tampered\"",
        );
        wait_async("tampered refused", async || {
            bundle_status(&server).await["message"]
                .as_str()
                .is_some_and(|m| m.contains("probe.rego: digest mismatch"))
        })
        .await;
        // Unsigned while a signature is required.
        service.set(cvat_bundle(&[("probe.rego", PROBE_V2)]), "\"unsigned\"");
        wait_async("unsigned refused", async || {
            bundle_status(&server).await["message"]
                .as_str()
                .is_some_and(|m| m.contains("bundle missing .signatures.json file"))
        })
        .await;
        assert_eq!(allow(&server, "alice").await, json!({"result": true}));
        assert_eq!(allow(&server, "bob").await, json!({}));
    }

    // The wrong key: never activated.
    let tarball = out.path().join("hmac.tar.gz");
    let service = BundleService::start("/b.tar.gz", std::fs::read(&tarball).unwrap(), "\"e\"");
    let config = polled_config(
        &service,
        &[
            "keys.k.algorithm=HS256".into(),
            "keys.k.key=not-the-secret".into(),
            "bundles.b.signing.keyid=k".into(),
        ],
    );
    let server = TestServer::start_config(config).await;
    wait_async("wrong key refused", async || {
        bundle_status(&server).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed to verify"))
    })
    .await;
    assert_eq!(server.get("/health?bundles").await.status, 500);
}

#[tokio::test]
async fn local_bundles_own_their_roots() {
    let a = write_tree(&[
        (".manifest", r#"{"revision": "ra", "roots": ["a"]}"#),
        ("a/p.rego", "package a.p\n\nx := data.a.v\n"),
        ("a/data.json", r#"{"v": 1}"#),
    ]);
    let b_dir = write_tree(&[
        (".manifest", r#"{"revision": "rb", "roots": ["b"]}"#),
        ("q.rego", "package b\n\ny := 2\n"),
    ]);
    let b_tarball = tarball_of(b_dir.path());

    let mut cfg = config(
        vec![path_string(a.path()), path_string(&b_tarball)],
        regent::api::Limits::default(),
    );
    cfg.bundle = true;
    let server = TestServer::start_config(cfg.clone()).await;
    assert_eq!(
        server.get("/v1/data/a/p/x").await.json(),
        json!({"result": 1})
    );
    assert_eq!(
        server.get("/v1/data/b/y").await.json(),
        json!({"result": 2})
    );

    let reply = crate::support::request(server.addr, "PUT", "/v1/data/a/v", &[], "2".into()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["code"], "invalid_parameter");
    assert!(reply.body.contains("owned by bundle"), "{}", reply.body);
    let reply = crate::support::request(
        server.addr,
        "PUT",
        "/v1/policies/x",
        &[],
        "package b.z\n\nw := 1\n".into(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("owned by bundle"), "{}", reply.body);
    let reply = crate::support::request(server.addr, "PUT", "/v1/data/c", &[], "3".into()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);

    // Overlapping roots across bundles: a start-up error.
    let overlap = write_tree(&[(".manifest", r#"{"roots": ["a/p"]}"#)]);
    cfg.paths.push(path_string(overlap.path()));
    let err = regent::run::prepare(&cfg).err().unwrap();
    assert!(format!("{err:#}").contains("overlapping roots"), "{err:#}");
}

#[test]
fn configuration_errors_name_the_key() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--set=bundles.b.resource=file:///srv/bundle.tar.gz",
                "--set=bundles.b.polling.min_delay_seconds=9",
            ],
            "bundles.b.polling: missing 'max_delay_seconds'",
        ),
        (
            &["--set=bundles.b.polling.min_delay_seconds=abc"],
            "bundles.b.polling.min_delay_seconds",
        ),
        (
            &["--set=services.s.url=http://x", "--set=services.s.bogus=1"],
            "services.s.bogus",
        ),
        (&["--set=discovery.name=x"], "discovery"),
        (
            &[
                "--set=services.s.url=http://x",
                "--set=bundles.b.service=nope",
            ],
            "unknown service",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(regent_bin())
            .args(["run", "--server", "--addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // A config file with `${ENV}`, overridden by --set.
    let dir = write_tree(&[(
        "config.yaml",
        "services:\n  s:\n    url: ${REGENT_TEST_URL}\nbundles:\n  b:\n    service: s\n    polling:\n      min_delay_seconds: x\n",
    )]);
    let out = Command::new(regent_bin())
        .args(["run", "--server", "--addr", "127.0.0.1:0", "-c"])
        .arg(dir.path().join("config.yaml"))
        .env("REGENT_TEST_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bundles.b.polling.min_delay_seconds"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_bundle_directories_reload_and_keep_the_last_good_bundle() {
    let dir = write_tree(&[
        (
            ".manifest",
            r#"{"revision": "w1", "roots": ["cvat_probe"]}"#,
        ),
        ("probe.rego", PROBE_V1),
    ]);
    let mut cfg = config(
        vec![path_string(dir.path())],
        regent::api::Limits::default(),
    );
    cfg.bundle = true;
    cfg.watch = true;
    let server = TestServer::start_config(cfg).await;
    assert_eq!(allow(&server, "alice").await, json!({"result": true}));

    std::fs::write(
        dir.path().join("probe.rego"),
        "package cvat_probe\n\nallow if {\n",
    )
    .unwrap();
    wait_async("the broken bundle is reported", async || {
        server.get("/v1/status").await.json()["result"]["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("probe.rego"))
    })
    .await;
    assert_eq!(allow(&server, "alice").await, json!({"result": true}));

    std::fs::write(
        dir.path().join(".manifest"),
        r#"{"revision": "w2", "roots": ["cvat_probe"]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("probe.rego"), PROBE_V2).unwrap();
    wait_async("the fixed bundle is active", async || {
        allow(&server, "bob").await == json!({"result": true})
    })
    .await;
    let status = server.get("/v1/status").await.json();
    assert_eq!(status["result"]["revision"], "w2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_policies_under_new_roots_are_replaced() {
    let service = BundleService::start(
        "/b.tar.gz",
        cvat_bundle(&[("probe.rego", PROBE_V1)]),
        "\"r\"",
    );
    service.set_redirect("/old", "/b.tar.gz");
    service.set_available(false);
    let server = TestServer::start_config(polled_config(
        &service,
        &["bundles.b.resource=/old".to_string()],
    ))
    .await;
    // Before the first download, a policy written through the API under
    // what will be the bundle's root ("": everything).
    let reply = crate::support::request(
        server.addr,
        "PUT",
        "/v1/policies/mine",
        &[],
        "package cvat_probe\n\nallow := \"api\"\n".into(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(allow(&server, "alice").await, json!({"result": "api"}));

    service.set_available(true);
    wait_async("activation through the redirect", async || {
        allow(&server, "alice").await == json!({"result": true})
    })
    .await;
    assert!(service.seen().iter().any(|s| s.status == 302));
    let policies = server.get("/v1/policies").await.json();
    assert!(!policies.to_string().contains("\"mine\""), "{policies}");
}

/// A redirect to another host (a presigned object store URL, say) gets no
/// credentials: neither the bearer token nor a configured `Authorization`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_stay_behind_on_a_redirect_to_another_host() {
    for credential in [
        "services.s.credentials.bearer.token=t0k",
        "services.s.headers.Authorization=Basic c2VjcmV0",
    ] {
        let store = BundleService::start(
            "/b.tar.gz",
            cvat_bundle(&[("probe.rego", PROBE_V1)]),
            "\"x\"",
        );
        let front = BundleService::start("/unused", Vec::new(), "\"f\"");
        front.set_redirect("/old", &format!("{}/b.tar.gz", store.url()));
        let server = TestServer::start_config(polled_config(
            &front,
            &[
                "bundles.b.resource=/old".to_string(),
                credential.to_string(),
                "services.s.headers.X-Tenant=t1".to_string(),
            ],
        ))
        .await;
        wait_async("activation through the redirect", async || {
            allow(&server, "alice").await == json!({"result": true})
        })
        .await;
        assert!(front.seen()[0].authorization.is_some(), "{credential}");
        assert!(
            store.seen().iter().all(|s| s.authorization.is_none()),
            "{credential}: {:?}",
            store.seen()
        );
    }
}

#[tokio::test]
async fn skip_verify_loads_a_signed_local_bundle_without_a_key() {
    let src = write_tree(&[("probe.rego", PROBE_V1)]);
    let out = tempfile::tempdir().unwrap();
    let tarball = out.path().join("signed.tar.gz");
    build_signed(src.path(), &tarball, "s3cret", "HS256");
    let mut cfg = config(vec![path_string(&tarball)], regent::api::Limits::default());
    cfg.bundle = true;
    let err = regent::run::prepare(&cfg).err().unwrap();
    assert!(
        format!("{err:#}").contains("verification key not provided"),
        "{err:#}"
    );
    cfg.skip_verify = true;
    let server = TestServer::start_config(cfg).await;
    assert_eq!(allow(&server, "alice").await, json!({"result": true}));
}

/// `/health` options and the health policies' input follow the bundle
/// plugin: not ready until the bundle is activated, ready from then on.
#[tokio::test]
async fn health_checks_follow_the_bundle_plugin() {
    let bundle = raw_tarball(&[
        (".manifest", br#"{"revision": "r1", "roots": ["app"]}"#),
        ("app/p.rego", b"package app\n\nx := 1\n"),
    ]);
    let service = BundleService::start("/b.tar.gz", bundle, "\"r1\"");
    service.set_available(false);
    let health = write_tree(&[(
        "health.rego",
        "package system.health\n\nready if input.plugins_ready\n\nwaiting if input.plugin_state == {\"bundle\": \"NOT_READY\"}\n\nup if input.plugin_state == {\"bundle\": \"OK\"}\n",
    )]);
    let mut config = polled_config(&service, &[]);
    config.paths = vec![path_string(health.path())];
    let server = TestServer::start_config(config).await;
    let code = async |path: &str| server.get(path).await.status.as_u16();
    for (path, want) in [
        ("/health", 200),
        ("/health?bundle=true", 500),
        ("/health?bundles", 500),
        ("/health?bundles=false", 200),
        ("/health?bundle&bundle=false", 200),
        ("/health?plugins", 500),
        ("/health?plugins&exclude-plugin=bundle", 200),
        ("/health?plugins&exclude-plugin=decision_logs", 500),
        ("/health/ready", 500),
        ("/health/waiting", 200),
        ("/health/up", 500),
    ] {
        assert_eq!(code(path).await, want, "{path}");
    }

    service.set_available(true);
    wait_async("bundle activated", async || {
        server.get("/health?bundle=true").await.status == 200
    })
    .await;
    for (path, want) in [
        ("/health?bundles", 200),
        ("/health?plugins", 200),
        ("/health/ready", 200),
        ("/health/waiting", 500),
        ("/health/up", 200),
    ] {
        assert_eq!(code(path).await, want, "{path}");
    }
    assert_eq!(
        server.get("/v1/data/app/x").await.json(),
        json!({"result": 1})
    );
    // OPA's provenance names each active bundle's revision.
    let provenance = server.get("/v1/data/app/x?provenance").await.json()["provenance"].clone();
    assert_eq!(provenance["bundles"], json!({"b": {"revision": "r1"}}));
}

#[tokio::test]
async fn file_bundles_are_read_from_disk_once_without_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("fb.tar.gz");
    std::fs::write(
        &tarball,
        raw_tarball(&[
            (".manifest", br#"{"revision": "r1", "roots": ["fb"]}"#),
            ("fb/p.rego", b"package fb\n\nallow := true\n"),
        ]),
    )
    .unwrap();
    let tree = write_tree(&[
        (".manifest", r#"{"roots": ["fd"]}"#),
        ("rules/d.rego", "package fd\n\nallow := 7\n"),
    ]);
    let set = |name: &str, path: &std::path::Path| {
        format!("bundles.{name}.resource=file://{}", path.display())
    };
    let opa = regent::opa_config::load(None, &[set("fb", &tarball), set("fd", tree.path())], &[])
        .unwrap();
    let mut config = crate::support::config(Vec::new(), regent::api::Limits::default());
    config.opa = opa;
    let server = TestServer::start_config(config).await;
    assert_eq!(
        server.get("/v1/data/fb/allow").await.json(),
        json!({"result": true})
    );
    assert_eq!(
        server.get("/v1/data/fd/allow").await.json(),
        json!({"result": 7})
    );
    assert_eq!(server.get("/health?bundles").await.status, 200);
    let status = server.get("/v1/status").await.json();
    assert_eq!(
        status["result"]["bundles"]["fb"]["active_revision"], "r1",
        "{status}"
    );
    // Read once, as OPA's file loader: nothing polls it afterwards
    // (`bundle_sources` leaves it out; see the configuration tests).
    server.stop().await.unwrap();

    // A file that is not there: the server runs, never ready, the status says why.
    let missing = dir.path().join("missing.tar.gz");
    let opa = regent::opa_config::load(None, &[set("gone", &missing)], &[]).unwrap();
    let mut config = crate::support::config(Vec::new(), regent::api::Limits::default());
    config.opa = opa;
    let server = TestServer::start_config(config).await;
    assert_eq!(server.get("/health?bundles").await.status, 500);
    let status = server.get("/v1/status").await.json();
    let gone = &status["result"]["bundles"]["gone"];
    assert_eq!(gone["code"], "bundle_error", "{status}");
    assert!(
        gone["message"].to_string().contains("missing.tar.gz"),
        "{status}"
    );
    server.stop().await.unwrap();
}

#[test]
fn ready_timeout_holds_the_listeners_until_the_bundle_is_active() {
    // A bundle that does not load at first; the good one comes 1.5 s later.
    let service = BundleService::start("/b", b"not a bundle".to_vec(), "\"1\"");
    let good = cvat_bundle(&[("probe.rego", PROBE_V1)]);
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("--set=services.s.url={}", service.url());
    let started = Instant::now();
    let daemon = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            service.set(good, "\"2\"");
        });
        Daemon::start(
            cwd.path(),
            &[
                &url,
                "--set=bundles.b.service=s",
                "--set=bundles.b.resource=/b",
                "--set=bundles.b.polling.min_delay_seconds=1",
                "--set=bundles.b.polling.max_delay_seconds=1",
                "--ready-timeout=15",
            ],
        )
    });
    // Not listening before the bundle was active; ready at once after.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(http_get(daemon.addr, "/health?bundles").starts_with("HTTP/1.1 200"));
    let reply = http_post(
        daemon.addr,
        "/v1/data/cvat_probe/allow",
        r#"{"input": {"user": "alice"}}"#,
    );
    assert!(reply.ends_with("{\"result\":true}\n"), "{reply}");
}

/// Data files, in a directory and in a bundle, are read as OPA's loader
/// (Go's decoder) reads them: an escaped lone surrogate, and in a bundle a
/// byte that is not UTF-8, are U+FFFD where serde_json refused the file.
#[tokio::test]
async fn data_files_are_read_as_go_reads_them() {
    let dir = write_tree(&[("d/data.json", r#"{"s": "\ud800x"}"#)]);
    let server = TestServer::start_paths(vec![path_string(dir.path())]).await;
    assert_eq!(
        server.get("/v1/data/d/s").await.json(),
        json!({"result": "\u{fffd}x"})
    );
    server.stop().await.unwrap();

    let b_dir = write_tree(&[(".manifest", r#"{"revision": "r", "roots": ["b"]}"#)]);
    std::fs::create_dir(b_dir.path().join("b")).unwrap();
    std::fs::write(
        b_dir.path().join("b/data.json"),
        b"{\"s\": \"\\udc00\", \"t\": \"\xff\"}",
    )
    .unwrap();
    let tarball = tarball_of(b_dir.path());
    let mut cfg = config(vec![path_string(&tarball)], regent::api::Limits::default());
    cfg.bundle = true;
    let server = TestServer::start_config(cfg).await;
    assert_eq!(
        server.get("/v1/data/b").await.json(),
        json!({"result": {"s": "\u{fffd}", "t": "\u{fffd}"}})
    );
    server.stop().await.unwrap();
}
