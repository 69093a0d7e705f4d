//! `decision_logs.console=true` on the real binary: every decision becomes
//! one OPA-shaped JSON line on stderr, filed under the `decision_id` its
//! answer carries, cached or not.

use serde_json::{json, Value};

use crate::process::Daemon;
use crate::support::{http_post, path_string, write_tree};

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

    // A batch: one decision (and one line) per item, duplicates included.
    let reply = http_post(
        daemon.addr,
        "/v1/batch/data/t/allow",
        r#"{"inputs": {"a": {"user": "alice"}, "b": {"user": "alice"}}}"#,
    );
    let (_, body) = split(&reply);
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
