//! End-to-end tests of [`super::from_parts`]: file, overrides, typing and
//! validation together.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn set(flags: &[&str]) -> Result<OpaConfig> {
    from_parts_with_env(None, &strings(flags), &[], &no_env)
}

fn yaml(text: &str) -> Result<OpaConfig> {
    from_parts_with_env(Some(text), &[], &[], &no_env)
}

fn err(result: Result<OpaConfig>) -> String {
    format!("{:#}", result.unwrap_err())
}

fn assert_err(result: Result<OpaConfig>, needle: &str) {
    let message = err(result);
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

const CVAT_FLAGS: &[&str] = &[
    "services.cvat.url=http://cvat-server:8080",
    "bundles.cvat.service=cvat",
    "bundles.cvat.resource=/api/auth/rules",
    "bundles.cvat.polling.min_delay_seconds=5",
    "bundles.cvat.polling.max_delay_seconds=15",
    "decision_logs.console=true",
];

#[test]
fn cvat_flag_set() {
    let config = set(CVAT_FLAGS).unwrap();
    assert_eq!(config.services["cvat"].url, "http://cvat-server:8080");
    let bundle = &config.bundles["cvat"];
    assert_eq!(bundle.service.as_deref(), Some("cvat"));
    assert_eq!(bundle.resource.as_deref(), Some("/api/auth/rules"));
    assert_eq!(bundle.min_delay(), Duration::from_secs(5));
    assert_eq!(bundle.max_delay(), Duration::from_secs(15));
    assert_eq!(bundle.signing, None);
    assert_eq!(bundle.size_limit(), DEFAULT_SIZE_LIMIT_BYTES);
    assert!(config.decision_logs.as_ref().unwrap().console);
    assert_eq!(config.default_decision_path(), "system/main");
}

const FULL_YAML: &str = r#"
services:
  cvat:
    url: https://cvat.example.com/api/
    headers:
      X-Tenant: acme
    credentials:
      bearer:
        token_path: /run/secrets/token
        scheme: Token
    response_header_timeout_seconds: 0
    tls:
      ca_cert: /etc/ca.pem
      system_ca_required: true
    allow_insecure_tls: false
bundles:
  authz:
    service: cvat
    resource: bundles/authz.tar.gz
    polling:
      min_delay_seconds: 10
      max_delay_seconds: 20
      long_polling_timeout_seconds: 30
    persist: true
    signing:
      keyid: global
      scope: read
      exclude_files: [".manifest"]
    size_limit_bytes: 1000
    trigger: periodic
keys:
  global:
    key: secret
    algorithm: HS256
    scope: read
persistence_directory: /var/lib/regent
labels:
  region: eu
default_decision: /cvat/main
default_authorization_decision: /system/authz/allow
decision_logs:
  console: true
decision_cache:
  enabled: true
  max_entries: 100
  max_size_bytes: 4096
  ttl_seconds: 60
"#;

#[test]
fn file_with_every_supported_key() {
    let config = yaml(FULL_YAML).unwrap();
    let service = &config.services["cvat"];
    assert_eq!(service.url, "https://cvat.example.com/api");
    assert_eq!(service.headers["X-Tenant"], "acme");
    let bearer = service.bearer().unwrap();
    assert_eq!(bearer.token_path, Some(PathBuf::from("/run/secrets/token")));
    assert_eq!(bearer.auth_scheme(), "Token");
    assert_eq!(service.response_header_timeout(), None);
    let tls = service.tls.as_ref().unwrap();
    assert_eq!(tls.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
    assert_eq!(tls.system_ca_required, Some(true));
    assert_eq!(service.allow_insecure_tls, Some(false));

    let bundle = &config.bundles["authz"];
    assert_eq!(bundle.resource.as_deref(), Some("bundles/authz.tar.gz"));
    assert_eq!(bundle.min_delay(), Duration::from_secs(10));
    assert_eq!(bundle.max_delay(), Duration::from_secs(20));
    assert_eq!(bundle.long_polling_timeout(), Some(Duration::from_secs(30)));
    assert!(bundle.persist);
    let signing = bundle.signing.as_ref().unwrap();
    assert_eq!(signing.keyid.as_deref(), Some("global"));
    assert_eq!(signing.scope.as_deref(), Some("read"));
    assert_eq!(signing.exclude_files, [".manifest"]);
    assert_eq!(bundle.size_limit(), 1000);

    let key = &config.keys["global"];
    assert_eq!(key.key.as_deref(), Some("secret"));
    assert_eq!(key.algorithm.as_deref(), Some("HS256"));
    assert_eq!(config.persistence_dir(), PathBuf::from("/var/lib/regent"));
    assert_eq!(config.labels["region"], "eu");
    assert_eq!(config.default_decision_path(), "cvat/main");
    assert!(config.default_authorization_decision.is_some());
    assert!(config.decision_logs.as_ref().unwrap().console);
    let cache = &config.decision_cache;
    assert_eq!(cache.enabled, Some(true));
    assert_eq!(cache.max_entries, Some(100));
    assert_eq!(cache.max_size_bytes, Some(4096));
    assert_eq!(cache.ttl_seconds, Some(60));
}

#[test]
fn json_file_and_defaults() {
    let config = yaml(
        r#"{"services": {"s": {"url": "http://s"}}, "bundles": {"b": {}}, "keys": {"k": {"key": "pem"}}}"#,
    )
    .unwrap();
    let bundle = &config.bundles["b"];
    assert_eq!(bundle.service.as_deref(), Some("s"));
    assert_eq!(bundle.resource.as_deref(), Some("bundles/b"));
    assert_eq!(bundle.min_delay(), Duration::from_secs(60));
    assert_eq!(bundle.max_delay(), Duration::from_secs(120));
    assert_eq!(bundle.polling.min_delay_seconds, Some(60));
    // OPA verifies every bundle once keys are configured.
    assert_eq!(bundle.signing, Some(Signing::default()));
    assert_eq!(config.keys["k"].algorithm.as_deref(), Some("RS256"));
    let service = &config.services["s"];
    assert_eq!(
        service.response_header_timeout(),
        Some(Duration::from_secs(10))
    );
    assert!(config.persistence_dir().ends_with(".opa"));
}

#[test]
fn empty_input_is_the_default_config() {
    assert_eq!(yaml("").unwrap(), OpaConfig::default());
    assert_eq!(set(&[]).unwrap(), OpaConfig::default());
}

/// OPA reads its configuration with goyaml v2: YAML 1.1 booleans.
#[test]
fn yaml_1_1_booleans_are_booleans() {
    let config = yaml(
        "services:\n  s:\n    url: http://x\nbundles:\n  b:\n    service: s\n    persist: yes\n\
         decision_logs:\n  console: on\n",
    )
    .unwrap();
    assert!(config.bundles["b"].persist);
    assert!(config.decision_logs.unwrap().console);
    let config = yaml(
        "services:\n  s:\n    url: http://x\nbundles:\n  b:\n    service: s\n    persist: No\n",
    )
    .unwrap();
    assert!(!config.bundles["b"].persist);
}

/// Anchors and merge keys, as goyaml v2 reads them: a common way to share
/// settings between bundles.
#[test]
fn merge_keys_share_settings() {
    let config = yaml(
        "services:\n  s:\n    url: http://x\n\
         bundles:\n  a: &defaults\n    service: s\n    persist: true\n    resource: a.tar.gz\n\
         \x20   polling: {min_delay_seconds: 7, max_delay_seconds: 9}\n\
         \x20 b:\n    <<: *defaults\n    resource: b.tar.gz\n    persist: false\n",
    );
    let config = config.unwrap();
    let (a, b) = (&config.bundles["a"], &config.bundles["b"]);
    assert!(a.persist);
    assert_eq!(b.service.as_deref(), Some("s"));
    assert_eq!(b.resource.as_deref(), Some("b.tar.gz"));
    assert!(!b.persist);
    assert_eq!(b.min_delay(), std::time::Duration::from_secs(7));
    assert_err(
        yaml("services:\n  <<: [1]\n"),
        "map merge requires map or sequence of maps",
    );
}

#[test]
fn set_overrides_the_file() {
    let file = "services:\n  cvat:\n    url: http://old\n    headers: {A: a}\nbundles:\n  b:\n    persist: true\n";
    let flags = strings(&["services.cvat.url=http://new", "bundles.b.resource=r"]);
    let config = from_parts_with_env(Some(file), &flags, &[], &no_env).unwrap();
    assert_eq!(config.services["cvat"].url, "http://new");
    assert_eq!(config.services["cvat"].headers["A"], "a");
    assert!(config.bundles["b"].persist);
    assert_eq!(config.bundles["b"].resource.as_deref(), Some("r"));
}

#[test]
fn later_set_wins_and_null_unsets() {
    let config = set(&[
        "services.s.url=http://a",
        "services.s.url=http://b",
        "decision_logs.console=true",
        "decision_logs.console=null",
    ])
    .unwrap();
    assert_eq!(config.services["s"].url, "http://b");
    assert!(!config.decision_logs.as_ref().unwrap().console);
}

#[test]
fn env_in_file_and_set_but_not_set_file() {
    let env = |name: &str| (name == "REGENT_TEST_HOST").then(|| "cvat-server".to_owned());
    let file = "services:\n  a:\n    url: http://${REGENT_TEST_HOST}:8080\n";
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "  ${REGENT_TEST_HOST}\n").unwrap();
    let config = from_parts_with_env(
        Some(file),
        &strings(&[
            "services.b.url=https://${REGENT_TEST_HOST}",
            "labels.x=${UNSET_VAR}",
        ]),
        &[format!(
            "services.a.credentials.bearer.token={}",
            token.display()
        )],
        &env,
    )
    .unwrap();
    assert_eq!(config.services["a"].url, "http://cvat-server:8080");
    assert_eq!(config.services["b"].url, "https://cvat-server");
    assert_eq!(config.labels["x"], "${UNSET_VAR}");
    let bearer = config.services["a"].bearer().unwrap();
    assert_eq!(bearer.token.as_deref(), Some("${REGENT_TEST_HOST}"));
}

#[test]
fn set_file_is_trimmed_and_always_a_string() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n");
    std::fs::write(&path, "\n 42 \n").unwrap();
    let config = from_parts_with_env(
        None,
        &[],
        &[format!("labels.n={}", path.display())],
        &no_env,
    )
    .unwrap();
    assert_eq!(config.labels["n"], "42");
    let missing = format!("labels.n={}", dir.path().join("missing").display());
    assert_err(
        from_parts_with_env(None, &[], &[missing], &no_env),
        "cannot read file",
    );
}

#[test]
fn value_typing_reaches_the_model() {
    // `007` and `1.5` stay strings, so they fit string fields.
    let config = set(&["labels.a=007,labels.b=1.5,labels.c=text"]).unwrap();
    assert_eq!(config.labels["a"], "007");
    assert_eq!(config.labels["b"], "1.5");
    // An integer does not fit a string field, a bool does not fit a number.
    assert_err(
        set(&["labels.a=7"]),
        "config: labels.a: invalid type: integer `7`, expected a string",
    );
    assert_err(
        set(&["decision_cache.max_entries=true"]),
        "config: decision_cache.max_entries: invalid type: boolean `true`, expected u64",
    );
    let config = set(&["decision_cache.enabled=FALSE,decision_cache.ttl_seconds=0"]).unwrap();
    assert_eq!(config.decision_cache.enabled, Some(false));
    assert_eq!(config.decision_cache.ttl_seconds, Some(0));
}

#[test]
fn lists_by_index_and_braces() {
    let config = set(&[
        "services.s.url=http://s",
        "bundles.b.signing.exclude_files={a.json,b.json}",
        "bundles.c.signing.exclude_files[1]=y,bundles.c.signing.exclude_files[0]=x",
        "keys.k.key=pem",
    ])
    .unwrap();
    let exclude = |name: &str| config.bundles[name].signing.clone().unwrap().exclude_files;
    assert_eq!(exclude("b"), ["a.json", "b.json"]);
    assert_eq!(exclude("c"), ["x", "y"]);
}

#[test]
fn service_list_form() {
    let config = set(&[
        "services[0].name=cvat,services[0].url=http://cvat:8080",
        "services[1].name=other,services[1].url=https://other",
        "bundles.b.service=other",
    ])
    .unwrap();
    assert_eq!(config.services["cvat"].url, "http://cvat:8080");
    assert_eq!(config.services["other"].url, "https://other");
    let config = yaml("services:\n  - name: a\n    url: http://a\n").unwrap();
    assert_eq!(config.services["a"].url, "http://a");
    assert_err(
        yaml("services:\n  - url: http://a\n"),
        "services[0]: missing `name`",
    );
    assert_err(
        yaml("services:\n  - name: a\n    url: http://a\n    foo: 1\n"),
        "unknown key services.a.foo",
    );
}

#[test]
fn unknown_keys_are_named() {
    assert_err(
        set(&["services.cvat.url=http://x,services.cvat.foo=1"]),
        "config: unknown key services.cvat.foo (expected one of `url`, `headers`",
    );
    assert_err(set(&["bogus=1"]), "config: unknown key bogus");
    assert_err(
        set(&["services.s.url=http://s", "bundles.b.polling.min_delay=1"]),
        "config: unknown key bundles.b.polling.min_delay",
    );
}

#[test]
fn wrong_types_are_named() {
    assert_err(
        set(&["services.s.url=http://s", "bundles.cvat.polling.min_delay_seconds=abc"]),
        "config: bundles.cvat.polling.min_delay_seconds: invalid type: string \"abc\", expected u64",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "bundles.b.polling.max_delay_seconds=-1",
        ]),
        "config: bundles.b.polling.max_delay_seconds: invalid value: integer `-1`, expected u64",
    );
    assert_err(
        set(&["services=x"]),
        "config: services: invalid type: string \"x\"",
    );
    assert_err(
        set(&["services.s.headers.a=x"]),
        "config: missing required key services.s.url",
    );
    assert_err(
        set(&["services.s.url=http://s", "bundles.b.polling={5,15}"]),
        "config: bundles.b.polling: invalid type: sequence, expected a map",
    );
    assert_err(yaml("- a\n"), "expected a mapping at the top level");
    assert_err(yaml("a: [\n"), "failed to parse config");
}

#[test]
fn unsupported_opa_options() {
    assert_err(
        set(&["discovery.resource=x"]),
        "config key \"discovery\" is an OPA option Regent does not support",
    );
    for key in [
        "status",
        "plugins",
        "server",
        "distributed_tracing",
        "caching",
        "storage",
    ] {
        assert_err(
            set(&[&format!("{key}.x=1")]),
            &format!("config key \"{key}\" is an OPA option Regent does not support"),
        );
    }
    assert_err(
        set(&["services.s.url=http://s,services.s.credentials.oauth2.token_url=x"]),
        "config key \"services.s.credentials.oauth2\" is an OPA option",
    );
    assert_err(
        set(&["decision_logs.reporting.max_decisions_per_second=5"]),
        "config key \"decision_logs.reporting.max_decisions_per_second\" is an OPA option",
    );
    assert_err(
        set(&["decision_logs.mask_decision=/system/mask"]),
        "config key \"decision_logs.mask_decision\" is an OPA option",
    );
    assert_err(
        set(&["services.s.url=http://s", "bundles.b.trigger=manual"]),
        "\"bundles.b.trigger\" set to \"manual\" is an OPA option Regent does not support",
    );
    assert_err(
        set(&["services.s.url=http://s", "bundles.b.trigger=sometimes"]),
        "invalid trigger mode \"sometimes\"",
    );
}

#[test]
fn service_url_must_be_http() {
    for bad in ["cvat-server:8080", "ftp://x", "http://", "not a url"] {
        assert_err(
            set(&[&format!("services.s.url={bad}")]),
            "config: services.s.url: invalid URL",
        );
    }
}

#[test]
fn bearer_token_and_token_path_exclude_each_other() {
    assert_err(
        set(&[
            "services.s.url=http://s",
            "services.s.credentials.bearer.token=t,services.s.credentials.bearer.token_path=/p",
        ]),
        "services.s.credentials.bearer: specify either",
    );
}

#[test]
fn bundle_service_resolution() {
    assert_err(
        set(&["services.s.url=http://s", "bundles.x.service=y"]),
        "config: bundles.x.service: invalid configuration for bundle \"x\": unknown service \"y\"",
    );
    assert_err(
        set(&["bundles.x.persist=true"]),
        "invalid configuration for bundle \"x\": no service",
    );
    assert_err(
        set(&[
            "services.a.url=http://a,services.b.url=http://b",
            "bundles.x.persist=true",
        ]),
        "several services are configured",
    );
}

#[test]
fn polling_bounds() {
    let base = "services.s.url=http://s";
    assert_err(
        set(&[base, "bundles.x.polling.min_delay_seconds=5"]),
        "bundles.x.polling: missing 'max_delay_seconds'",
    );
    assert_err(
        set(&[base, "bundles.x.polling.max_delay_seconds=5"]),
        "bundles.x.polling: missing 'min_delay_seconds'",
    );
    assert_err(
        set(&[
            base,
            "bundles.x.polling.min_delay_seconds=10,bundles.x.polling.max_delay_seconds=5",
        ]),
        "bundles.x.polling: max_delay_seconds (5) must be >= min_delay_seconds (10)",
    );
    assert_err(
        set(&[base, "bundles.x.polling.long_polling_timeout_seconds=0"]),
        "long_polling_timeout_seconds: must be at least 1",
    );
}

#[test]
fn signing_and_keys() {
    let base = "services.s.url=http://s";
    assert_err(
        set(&[base, "bundles.x.signing.keyid=k"]),
        "config: bundles.x.signing.keyid: invalid configuration for bundle \"x\": key id k not found",
    );
    assert_err(
        set(&["keys.k.key=pem,keys.k.algorithm=XS256"]),
        "config: keys.k.algorithm: unsupported algorithm 'XS256'",
    );
    assert_err(
        set(&["keys.k.scope=read"]),
        "config: keys.k: no key provided",
    );
    let config = set(&[
        base,
        "bundles.x.signing.keyid=k",
        "keys.k.private_key=pem,keys.k.algorithm=ES384",
    ])
    .unwrap();
    assert_eq!(
        config.bundles["x"]
            .signing
            .as_ref()
            .unwrap()
            .keyid
            .as_deref(),
        Some("k")
    );
}

#[test]
fn malformed_set_lines_name_the_flag() {
    assert_err(
        set(&["services.cvat.url"]),
        "invalid `--set` value `services.cvat.url`: key `url` has no value",
    );
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "decision_logs:\n  console: true\n").unwrap();
    assert!(
        load(Some(&path), &[], &[])
            .unwrap()
            .decision_logs
            .unwrap()
            .console
    );
    std::fs::write(&path, "decision_logs: [\n").unwrap();
    let message = format!("{:#}", load(Some(&path), &[], &[]).unwrap_err());
    assert!(message.contains("failed to parse config file"), "{message}");
    let missing = dir.path().join("missing.yaml");
    assert!(load(Some(&missing), &[], &[]).is_err());
}

/// OPA's `plugins/logs` defaults and checks.
#[test]
fn decision_log_uploads_get_opas_defaults_and_checks() {
    // No section: no decision logs, whatever the services.
    let config = set(&["services.s.url=http://s"]).unwrap();
    assert_eq!(config.decision_logs, None);
    // A section without a service: the first service, unless the console is on.
    let config = set(&[
        "services.b.url=http://b",
        "services.a.url=http://a",
        "decision_logs.partition_name=p1",
    ])
    .unwrap();
    let logs = config.decision_logs.unwrap();
    assert_eq!(logs.service.as_deref(), Some("a"));
    assert_eq!(logs.resource.as_deref(), Some("/logs/p1"));
    assert_eq!(logs.reporting.min_delay_seconds, Some(300));
    assert_eq!(logs.reporting.max_delay_seconds, Some(600));
    assert_eq!(logs.reporting.upload_size_limit_bytes, Some(32768));
    assert_eq!(logs.reporting.buffer_type.as_deref(), Some("size"));
    assert_eq!(logs.reporting.buffer_size_limit_bytes, None);
    let config = set(&["services.s.url=http://s", "decision_logs.console=true"]).unwrap();
    let logs = config.decision_logs.unwrap();
    assert_eq!(
        (logs.service, logs.resource.as_deref()),
        (None, Some("/logs"))
    );
    // The event buffer's default, and the upload limit clamped, not refused.
    let config = set(&[
        "services.s.url=http://s",
        "decision_logs.reporting.buffer_type=event",
        "decision_logs.reporting.upload_size_limit_bytes=10",
    ])
    .unwrap();
    let reporting = config.decision_logs.unwrap().reporting;
    assert_eq!(reporting.buffer_size_limit_events, Some(10000));
    assert_eq!(reporting.upload_size_limit_bytes, Some(90));

    assert_err(
        set(&["services.s.url=http://s", "decision_logs.service=t"]),
        "config: decision_logs.service: invalid service name \"t\" in decision_logs",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.min_delay_seconds=10",
            "decision_logs.reporting.max_delay_seconds=5",
        ]),
        "max reporting delay must be >= min reporting delay in decision_logs",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.min_delay_seconds=10",
        ]),
        "reporting configuration missing 'max_delay_seconds' in decision_logs",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.buffer_type=ring",
        ]),
        "invalid buffer type \"ring\", expected \"event\" or \"size\"",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.buffer_type=event",
            "decision_logs.reporting.buffer_size_limit_bytes=100",
        ]),
        "'buffer_size_limit_bytes' isn't supported for the event buffer type",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.buffer_size_limit_bytes=0",
        ]),
        "'buffer_size_limit_bytes' must be higher than 0",
    );
    assert_err(
        set(&["services.s.url=http://s", "decision_logs.reporting.trigger=manual"]),
        "\"decision_logs.reporting.trigger\" set to \"manual\" is an OPA option Regent does not support",
    );
    assert_err(
        set(&[
            "services.s.url=http://s",
            "decision_logs.reporting.trigger=often",
        ]),
        "invalid trigger mode \"often\"",
    );
}

#[test]
fn file_bundles_need_no_service_and_are_not_downloaded() {
    let config = set(&[
        "services.s.url=http://x",
        "bundles.a.resource=file:///srv/a.tar.gz",
        "bundles.b.resource=FILE:/srv/b?x=1#y",
        "bundles.c.resource=file://host/srv/c%20d",
        "bundles.d.resource=/bundles/d",
    ])
    .unwrap();
    let path = |name: &str| config.bundles[name].file_path();
    assert_eq!(path("a"), Some(PathBuf::from("/srv/a.tar.gz")));
    assert_eq!(path("b"), Some(PathBuf::from("/srv/b")));
    assert_eq!(path("c"), Some(PathBuf::from("/srv/c d")));
    assert_eq!(path("d"), None);
    // Only `d` gets a downloader; the others are read from disk.
    let sources = crate::bundle::configured::bundle_sources(&config).unwrap();
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["d"]);
    let files = crate::bundle::configured::file_sources(&config).unwrap();
    assert_eq!(files.len(), 3);
    // Without any service configured, a file bundle is still fine.
    set(&["bundles.a.resource=file:///srv/a.tar.gz"]).unwrap();
}

/// `GET /v1/config` shows the configuration as given, as OPA's
/// `ActiveConfig` does: services in their written form without
/// `credentials`, keys without their material, OPA's injected defaults, the
/// instance's labels, nulls dropped.
#[test]
fn the_active_config_leaves_out_secrets() {
    let config = yaml(
        "services:\n  - name: cvat\n    url: http://cvat\n    credentials:\n      bearer:\n        token: s3cret\n\
         keys:\n  k:\n    algorithm: HS256\n    key: hmac-secret\n\
         default_decision: app/main\nlabels:\n  team: a\n\
         bundles:\n  b:\n    service: cvat\n    resource: /b.tar.gz\n    signing:\n      keyid: k\n",
    )
    .unwrap();
    let labels = BTreeMap::from([
        ("id".to_string(), "i".to_string()),
        ("team".to_string(), "a".to_string()),
    ]);
    let active = config.active_config(&labels);
    assert_eq!(
        active,
        serde_json::json!({
            "services": [{"name": "cvat", "url": "http://cvat"}],
            "keys": {"k": {"algorithm": "HS256"}},
            "default_decision": "app/main",
            "default_authorization_decision": "/system/authz/allow",
            "labels": {"id": "i", "team": "a"},
            "bundles": {"b": {"service": "cvat", "resource": "/b.tar.gz", "signing": {"keyid": "k"}}},
        })
    );
    assert!(!active.to_string().contains("secret"), "{active}");
    // The map form of `services`, and a null that unsets a key.
    let config = set(&[
        "services.s.url=http://s",
        "services.s.credentials.bearer.token=t0ken",
        "labels=null",
    ])
    .unwrap();
    let active = config.active_config(&BTreeMap::new());
    assert_eq!(
        active["services"],
        serde_json::json!({"s": {"url": "http://s"}})
    );
    assert_eq!(active["default_decision"], "/system/main");
    assert_eq!(active["labels"], serde_json::json!({}));
}
