//! Decision logs on the real binary. `decision_logs.console=true`: every
//! decision becomes one OPA-shaped JSON line on stderr, filed under the
//! `decision_id` its answer carries, cached or not. `decision_logs.service`:
//! the same events reach a real log service in gzip'd uploads, survive the
//! service's failures, and are flushed on SIGTERM.

use serde_json::{json, Value};

use crate::log_service::LogService;
use crate::process::Daemon;
use crate::support::{http_get, http_post, path_string, write_tree};

const POLICY: &str = "package t
import rego.v1

default allow := false

allow if input.user == \"alice\"

conflict := 1 if input.c
conflict := 2 if input.c
";

fn split(reply: &str) -> (&str, Value) {
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    (head, serde_json::from_str(body).unwrap())
}

fn is_uuid(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

#[test]
fn every_decision_is_logged_under_the_id_its_answer_carries() {
    let dir = write_tree(&[("t.rego", POLICY)]);
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--set",
            "decision_logs.console=true",
            "--set",
            "labels.region=eu",
            &path_string(dir.path()),
        ],
    );

    // A miss, then the same question from the cache: two decisions, two ids.
    let mut ids = Vec::new();
    for cache in ["miss", "hit"] {
        let reply = http_post(
            daemon.addr,
            "/v1/data/t/allow",
            r#"{"input": {"user": "alice"}}"#,
        );
        let (head, body) = split(&reply);
        assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            head.contains(&format!("x-regent-decision-cache: {cache}")),
            "{head}"
        );
        assert!(is_uuid(&body["decision_id"]), "{body}");
        assert_eq!(body["result"], true);
        let line = daemon.next_log("Decision Log");
        assert_eq!(line["decision_id"], body["decision_id"], "{line}");
        assert_eq!(line["type"], "openpolicyagent.org/decision_logs");
        assert_eq!(line["level"], "info");
        assert_eq!(line["path"], "t/allow");
        assert!(line.get("batch_decision_id").is_none(), "{line}");
        assert_eq!(line["input"], json!({"user": "alice"}));
        assert_eq!(line["result"], true);
        assert_eq!(line["labels"]["region"], "eu");
        assert_eq!(line["labels"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(is_uuid(&line["labels"]["id"]), "{line}");
        assert!(line["requested_by"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"));
        assert!(line["req_id"].as_u64().unwrap() > 0);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(line["metrics"]["timer_server_handler_ns"]
            .as_u64()
            .is_some());
        ids.push(body["decision_id"].clone());
    }
    assert_ne!(ids[0], ids[1]);

    // Undefined: an answer with only its id, a line without `result`.
    let (_, body) = split(&http_post(
        daemon.addr,
        "/v1/data/t/nothing",
        r#"{"input": {}}"#,
    ));
    let line = daemon.next_log("Decision Log");
    assert_eq!(body, json!({"decision_id": line["decision_id"]}));
    assert!(line.get("result").is_none(), "{line}");

    // A key holding `/` (sent as `%2F`) is logged as sent, as OPA logs it.
    http_post(daemon.addr, "/v1/data/t/a%2Fb", r#"{"input": {}}"#);
    let line = daemon.next_log("Decision Log");
    assert_eq!(line["path"], "t/a%2Fb", "{line}");

    // `?input=` with an escaped lone surrogate: logged as it was read.
    let reply = http_get(
        daemon.addr,
        "/v1/data/t/allow?input=%7B%22user%22%3A%22%5Cud800%22%7D",
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let line = daemon.next_log("Decision Log");
    assert_eq!(line["input"], json!({"user": "\u{fffd}"}), "{line}");

    // A malformed input is not a decision; an evaluation error is, with its error.
    let reply = http_post(daemon.addr, "/v1/data/t/allow", r#"{"input": "#);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = http_post(
        daemon.addr,
        "/v1/data/t/conflict",
        r#"{"input": {"c": true}}"#,
    );
    let (head, body) = split(&reply);
    assert!(head.starts_with("HTTP/1.1 500"), "{reply}");
    assert!(body.get("decision_id").is_none(), "{body}");
    let line = daemon.next_log("Decision Log");
    assert_eq!(line["path"], "t/conflict", "{line}");
    assert_eq!(line["error"]["code"], "eval_conflict_error", "{line}");
    assert!(line.get("result").is_none(), "{line}");

    // The v0 API: the body is the input; the answer stays the bare document.
    let (_, body) = split(&http_post(
        daemon.addr,
        "/v0/data/t/allow",
        r#"{"user": "bob"}"#,
    ));
    assert_eq!(body, json!(false));
    let line = daemon.next_log("Decision Log");
    assert_eq!(line["input"], json!({"user": "bob"}), "{line}");
    assert_eq!(line["result"], false);

    // An ad-hoc query: logged as OPA logs it, with `query` and no `path`;
    // the answer carries no id (OPA's `QueryResponseV1` has none).
    let (_, body) = split(&http_post(
        daemon.addr,
        "/v1/query",
        r#"{"query": "data.t.allow; u := input.user", "input": {"user": "alice"}}"#,
    ));
    assert_eq!(body, json!({"result": [{"u": "alice"}]}));
    let line = daemon.next_log("Decision Log");
    assert_eq!(line["query"], "data.t.allow; u := input.user", "{line}");
    assert!(line.get("path").is_none(), "{line}");
    assert!(is_uuid(&line["decision_id"]), "{line}");
    assert_eq!(line["input"], json!({"user": "alice"}));
    assert_eq!(line["result"], json!([{"u": "alice"}]));

    // A batch: one decision (and one line) per item, duplicates included.
    let reply = http_post(
        daemon.addr,
        "/v1/batch/data/t/allow",
        r#"{"inputs": {"a": {"user": "alice"}, "b": {"user": "alice"}}}"#,
    );
    let (_, body) = split(&reply);
    // As Enterprise OPA's: the batch has an id of its own.
    let batch_id = body["batch_decision_id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(batch_id).unwrap().get_version_num(),
        4
    );
    let mut logged = [
        daemon.next_log("Decision Log"),
        daemon.next_log("Decision Log"),
    ];
    logged.sort_by_key(|l| l["decision_id"].as_str().unwrap().to_string());
    let mut answered = [&body["responses"]["a"], &body["responses"]["b"]];
    answered.sort_by_key(|a| a["decision_id"].as_str().unwrap().to_string());
    for (line, answer) in logged.iter().zip(answered) {
        assert_eq!(
            line["decision_id"], answer["decision_id"],
            "{line} {answer}"
        );
        assert_eq!(answer["result"], true);
        assert_eq!(line["input"], json!({"user": "alice"}));
        assert_eq!(line["result"], true);
        assert_eq!(line["batch_decision_id"], batch_id, "{line}");
        assert_ne!(line["decision_id"], batch_id, "{line}");
    }
}

#[test]
fn without_the_decision_log_answers_have_no_decision_id() {
    let dir = write_tree(&[("t.rego", POLICY)]);
    let daemon = Daemon::start(dir.path(), &[&path_string(dir.path())]);
    let ask = || {
        http_post(
            daemon.addr,
            "/v1/data/t/allow",
            r#"{"input": {"user": "alice"}}"#,
        )
    };
    let (miss, hit) = (ask(), ask());
    let (miss_head, miss_body) = miss.split_once("\r\n\r\n").unwrap();
    let (hit_head, hit_body) = hit.split_once("\r\n\r\n").unwrap();
    assert!(
        miss_head.contains("x-regent-decision-cache: miss"),
        "{miss_head}"
    );
    assert!(
        hit_head.contains("x-regent-decision-cache: hit"),
        "{hit_head}"
    );
    assert_eq!(miss_body, "{\"result\":true}\n");
    assert_eq!(hit_body, miss_body);
}

/// Flags for uploads to `service` every second (OPA's reporting bounds).
fn upload_flags(service: &LogService, dir: &std::path::Path) -> Vec<String> {
    vec![
        format!("--set=services.logs.url={}", service.url()),
        "--set=services.logs.credentials.bearer.token=secret".into(),
        "--set=decision_logs.service=logs".into(),
        "--set=decision_logs.reporting.min_delay_seconds=1".into(),
        "--set=decision_logs.reporting.max_delay_seconds=1".into(),
        path_string(dir),
    ]
}

fn ask(daemon: &Daemon, user: &str) -> Value {
    let reply = http_post(
        daemon.addr,
        "/v1/data/t/allow",
        &format!(r#"{{"input": {{"user": "{user}"}}}}"#),
    );
    let (head, body) = split(&reply);
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    body
}

#[test]
fn decisions_are_uploaded_to_the_service_as_gzipped_event_arrays() {
    let service = LogService::start();
    let dir = write_tree(&[("t.rego", POLICY)]);
    let flags = upload_flags(&service, dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = Daemon::start(dir.path(), &flags);

    let answers: Vec<Value> = ["alice", "bob", "alice"]
        .iter()
        .map(|user| ask(&daemon, user))
        .collect();
    service.wait_for("three events", |uploads| {
        uploads
            .iter()
            .filter_map(|u| u.events.as_array())
            .map(Vec::len)
            .sum::<usize>()
            == 3
    });
    for upload in service.uploads() {
        assert_eq!(upload.method, "POST");
        assert_eq!(upload.path, "/logs");
        assert_eq!(upload.content_type.as_deref(), Some("application/json"));
        assert_eq!(upload.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(upload.authorization.as_deref(), Some("Bearer secret"));
    }
    let events = service.accepted_events();
    for (event, (answer, user)) in events
        .iter()
        .zip(answers.iter().zip(["alice", "bob", "alice"]))
    {
        assert!(is_uuid(&event["decision_id"]), "{event}");
        assert_eq!(event["decision_id"], answer["decision_id"], "{event}");
        assert_eq!(event["path"], "t/allow");
        assert_eq!(event["input"], json!({"user": user}));
        assert_eq!(event["result"], answer["result"]);
        assert!(is_uuid(&event["labels"]["id"]), "{event}");
        // The bare EventV1: no console (logrus) fields.
        for key in ["level", "msg", "time", "type"] {
            assert!(event.get(key).is_none(), "{key} in {event}");
        }
    }
    let reply = http_get(daemon.addr, "/v1/status");
    let (_, status) = split(&reply);
    assert_eq!(status["result"]["decision_logs"], json!({}), "{status}");
}

#[test]
fn a_failed_upload_is_reported_and_retried_without_losing_events() {
    let service = LogService::start();
    service.set_failing(true);
    let dir = write_tree(&[("t.rego", POLICY)]);
    let flags = upload_flags(&service, dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let daemon = Daemon::start(dir.path(), &flags);

    let first = ask(&daemon, "alice");
    service.wait_for("a refused upload", |uploads| !uploads.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let (_, status) = split(&http_get(daemon.addr, "/v1/status"));
        if status["result"]["decision_logs"]["code"] == "decision_log_error" {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let logs = &status["result"]["decision_logs"];
    assert_eq!(logs["http_code"], 500, "{status}");
    assert!(
        logs["message"]
            .as_str()
            .unwrap()
            .contains("log upload failed, server replied with HTTP 500"),
        "{status}"
    );

    // Decided while the service is down, then the service comes back.
    let second = ask(&daemon, "bob");
    service.set_failing(false);
    service.wait_for("both events accepted", |uploads| {
        uploads
            .iter()
            .filter(|u| u.status == 200)
            .filter_map(|u| u.events.as_array())
            .map(Vec::len)
            .sum::<usize>()
            >= 2
    });
    let ids: Vec<Value> = service
        .accepted_events()
        .iter()
        .map(|e| e["decision_id"].clone())
        .collect();
    assert_eq!(
        ids,
        [first["decision_id"].clone(), second["decision_id"].clone()]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, status) = split(&http_get(daemon.addr, "/v1/status"));
        if status["result"]["decision_logs"] == json!({}) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sigterm_uploads_what_is_buffered_before_exiting() {
    let service = LogService::start();
    let dir = write_tree(&[("t.rego", POLICY)]);
    // OPA's default delays: nothing would be uploaded for five minutes.
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            &format!("--set=services.logs.url={}", service.url()),
            "--set=decision_logs.service=logs",
            &path_string(dir.path()),
        ],
    );
    let answer = ask(&daemon, "alice");
    // Nothing is sent before the first delay (five minutes at least).
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(service.uploads().is_empty());
    daemon.signal("TERM");
    assert!(daemon
        .wait_exit(std::time::Duration::from_secs(10))
        .success());
    let events = service.accepted_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["decision_id"], answer["decision_id"]);
}
