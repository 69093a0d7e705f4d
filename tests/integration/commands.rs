//! `regent test`, `regent eval` and `regent check`, run as the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::{path_string, regent_bin, write_tree};

const POLICY: &str = "package p\nimport rego.v1\nallow if input.user == \"alice\"\nallow if input.user in data.admins\nslow if count([x | some x in numbers.range(1, 5000); some y in numbers.range(1, 5000)]) > 0\n";

const TESTS: &str = r#"package p_test
import rego.v1

test_alice if {
	data.p.allow with input as {"user": "alice"}
}

test_bob_denied if {
	not data.p.allow with input as {"user": "bob"}
}

test_wrong_expectation if {
	data.p.allow with input as {"user": "bob"}
}

test_data_override if {
	data.p.allow with input as {"user": "carol"} with data.admins as ["carol"]
}

test_computed_input if {
	x := {"user": "root"}
	data.p.allow with input as x
}

todo_test_later if {
	false
}
"#;

fn regent(args: &[&str]) -> Output {
    Command::new(regent_bin()).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn suite() -> tempfile::TempDir {
    write_tree(&[
        ("p.rego", POLICY),
        ("data.json", r#"{"admins": ["root"]}"#),
        ("tests/p_test.rego", TESTS),
    ])
}

#[test]
fn test_reports_failures_with_file_and_line_and_exits_1() {
    let dir = suite();
    let out = regent(&["test", &path_string(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("p_test.rego:12: data.p_test.test_wrong_expectation: FAIL"),
        "{text}"
    );
    assert!(
        !text.contains("test_alice"),
        "passing tests are quiet without -v: {text}"
    );
    assert!(
        text.contains("PASS: 4/6\nFAIL: 1/6\nSKIPPED: 1/6\n"),
        "{text}"
    );
}

#[test]
fn test_run_filter_verbose_and_exit_0() {
    let dir = suite();
    let out = regent(&[
        "test",
        "-v",
        "--run",
        "alice|override|computed",
        &path_string(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    for name in ["test_alice", "test_data_override", "test_computed_input"] {
        assert!(
            text.contains(&format!("data.p_test.{name}: PASS")),
            "{text}"
        );
    }
    assert!(text.ends_with("PASS: 3/3\n"), "{text}");
}

#[test]
fn test_json_format() {
    let dir = suite();
    let out = regent(&[
        "test",
        "--format",
        "json",
        "-r",
        "wrong|todo",
        &path_string(dir.path()),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["name"], "test_wrong_expectation");
    assert_eq!(v[0]["package"], "data.p_test");
    assert_eq!(v[0]["fail"], true);
    assert_eq!(v[0]["location"]["row"], 12);
    assert_eq!(v[1]["skip"], true);
}

#[test]
fn test_timeout_is_an_error() {
    let dir = write_tree(&[
        ("p.rego", POLICY),
        (
            "p_test.rego",
            "package p_test\nimport rego.v1\ntest_slow if {\n\tdata.p.slow with input as {}\n}\n",
        ),
    ]);
    let started = std::time::Instant::now();
    let out = regent(&["test", "--timeout", "200ms", &path_string(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("ERROR: 1/1"), "{}", stdout(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn eval_prints_opa_shaped_results() {
    let dir = suite();
    let p = path_string(&dir.path().join("p.rego"));
    let d = path_string(&dir.path().join("data.json"));
    let mut child = Command::new(regent_bin())
        .args(["eval", "-d", &p, "-d", &d, "-I", "data.p.allow"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"user": "root"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"][0]["expressions"][0]["value"], true);
    assert_eq!(v["result"][0]["expressions"][0]["text"], "data.p.allow");

    let out = regent(&["eval", "-d", &p, "--fail", "data.p.allow"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), "{}");
    let out = regent(&["eval", "--format", "pretty", "[1, 2][_]"]);
    assert_eq!(stdout(&out), "1\n2\n");
}

#[test]
fn check_reports_each_error_with_file_line_col() {
    let dir = write_tree(&[
        ("ok.rego", "package ok\nx := 1\n"),
        ("a.rego", "package a\nx := \n"),
        ("b.rego", "package b\n\ny if {\n"),
    ]);
    let out = regent(&["check", &path_string(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.rego:3:1: rego_parse_error:"), "{err}");
    assert!(err.contains("b.rego:"), "{err}");
    assert!(err.contains("2 errors found"), "{err}");

    // A call to a function nothing defines: OPA's type error.
    let dir = write_tree(&[("c.rego", "package c\nimport rego.v1\ny if nofn(1)\n")]);
    let out = regent(&["check", &path_string(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.rego:3:6: rego_type_error: undefined function nofn"),
        "{err}"
    );

    // A rule that depends on itself: refused by `check` and by `eval`,
    // which would otherwise overflow its stack and abort.
    let dir = write_tree(&[("r.rego", "package r\nimport rego.v1\nx if y\ny if x\n")]);
    let out = regent(&["check", &path_string(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("r.rego:3:1: rego_recursion_error: rule x is recursive: x -> y -> x"),
        "{err}"
    );
    let out = regent(&["eval", "-d", &path_string(dir.path()), "data.r.x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rule x is recursive: x -> y -> x"), "{err}");

    let dir = write_tree(&[("ok.rego", "package ok\nx := 1\n")]);
    let out = regent(&["check", &path_string(dir.path())]);
    assert!(out.status.success());
}
