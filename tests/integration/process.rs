//! The real binary as an operator runs it: start-up errors, the embedded
//! default policies, and the SIGTERM drain.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{http_get, path_string, regent_bin, write_tree};

/// A running `regent run --server` process and the address it bound.
pub(crate) struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    /// The `Initializing server.` log line.
    pub init: serde_json::Value,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    pub(crate) fn start(cwd: &std::path::Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(cwd, extra, &[])
    }

    /// As [`Daemon::start`], with these environment variables set.
    pub(crate) fn start_with_env(
        cwd: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut child = Command::new(regent_bin())
            .envs(env.iter().copied())
            .args([
                "run",
                "--server",
                "--addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("no start-up log line");
            if line.contains("Initializing server.") {
                break line;
            }
        };
        let start = line.find("127.0.0.1:").unwrap();
        let port: String = line[start + 10..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        Daemon {
            child,
            addr,
            init: serde_json::from_str(&line).unwrap(),
            lines: rx,
        }
    }

    /// The next stderr line that parses as a JSON object with `msg` equal
    /// to `msg`; the lines before it are skipped.
    pub(crate) fn next_log(&self, msg: &str) -> serde_json::Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no `{msg}` log line"));
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["msg"] == msg {
                    return value;
                }
            }
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "daemon did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_the_embedded_default_policies_from_any_directory() {
    let empty = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(empty.path(), &[]);
    let reply = http_get(daemon.addr, "/health/live");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = http_get(daemon.addr, "/v1/policies");
    assert!(
        reply.contains("\"id\":\"policies/system/health.rego\""),
        "{reply}"
    );
}

/// `print()` in a policy or a query is logged as OPA's server logs it: a
/// JSON line at info with the printed text and the calling line, never raw
/// text among the JSON lines on stderr.
#[test]
fn print_output_is_logged_as_json_lines() {
    let dir = write_tree(&[(
        "pp.rego",
        "package pp\nimport rego.v1\nallow if {\n  print(\"checking\", input.user)\n  input.user == \"alice\"\n}\n",
    )]);
    let daemon = Daemon::start(dir.path(), &[&path_string(dir.path())]);
    let reply = crate::support::http_post(
        daemon.addr,
        "/v1/data/pp/allow",
        r#"{"input": {"user": "alice"}}"#,
    );
    assert!(reply.ends_with("{\"result\":true}\n"), "{reply}");
    http_get(daemon.addr, "/v1/query?q=print(%22forged%5Cn%7B%7D%22)");
    let mut printed = Vec::new();
    while printed.len() < 2 {
        let line = daemon
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no print log line");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
        if value["level"] == "INFO" && value.get("line").is_some() {
            printed.push(value);
        }
    }
    assert_eq!(printed[0]["message"], "checking alice");
    assert!(
        printed[0]["line"].as_str().unwrap().ends_with("pp.rego:4"),
        "{}",
        printed[0]
    );
    assert_eq!(printed[1]["message"], "forged\n{}");
    // The query's own line, not the line of the query as Regent wraps it.
    assert_eq!(printed[1]["line"], "1");
}

/// A panic inside regorus (caught: the request is a 500, see `errors.rs`)
/// is logged as one JSON log line, not as Rust's raw report on stderr, with
/// a backtrace when `RUST_BACKTRACE` asks for one.
#[test]
fn panics_are_logged_as_json_lines() {
    let dir = write_tree(&[(
        "p.rego",
        "package p\nimport rego.v1\nx := sprintf(input.f, [1.5])\n",
    )]);
    for wanted in ["0", "1"] {
        let daemon = Daemon::start_with_env(
            dir.path(),
            &[&path_string(dir.path())],
            &[("RUST_BACKTRACE", wanted)],
        );
        let reply = crate::support::http_post(
            daemon.addr,
            "/v1/data/p/x",
            r#"{"input": {"f": "%.100000f"}}"#,
        );
        assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
        let line = loop {
            let line = daemon
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("no panic log line");
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
            if value["level"] == "ERROR" {
                break value;
            }
        };
        let message = line["message"].as_str().unwrap();
        assert!(
            message.starts_with("panicked at ")
                && message.ends_with("Formatting argument out of range"),
            "{line}"
        );
        let backtrace = line.get("backtrace").and_then(|b| b.as_str());
        match wanted {
            "1" => assert!(backtrace.is_some_and(|b| b.contains("regorus")), "{line}"),
            _ => assert_eq!(backtrace, None, "{line}"),
        }
    }
}

/// `--ignore`, as OPA's: names matching a glob are left out of the loaded
/// directories (here a draft that does not parse and a data file that
/// would clash), and `--ignore=.*`, which deployments pass, is accepted, as
/// are the telemetry switches.
#[test]
fn ignored_names_are_not_loaded() {
    let dir = write_tree(&[
        (
            "p.rego",
            "package p\nimport rego.v1\nallow if input.user == data.admin\n",
        ),
        ("users.json", r#"{"admin": "alice"}"#),
        ("old.json", r#"{"admin": "bob"}"#),
        (
            "drafts/broken.rego",
            "package broken\nthis does not parse\n",
        ),
    ]);
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--ignore=.*",
            "--ignore",
            "drafts,old.*",
            "--disable-telemetry",
            "--skip-version-check",
            &path_string(dir.path()),
        ],
    );
    let reply = crate::support::http_post(
        daemon.addr,
        "/v1/data/p/allow",
        r#"{"input": {"user": "alice"}}"#,
    );
    assert!(reply.ends_with("{\"result\":true}\n"), "{reply}");
    let reply = http_get(daemon.addr, "/v1/policies");
    assert!(!reply.contains("broken"), "{reply}");
    // Without them, the same directory does not load.
    let failed = run_expect_failure(&[
        "run",
        "--server",
        "--addr",
        "127.0.0.1:0",
        &path_string(dir.path()),
    ]);
    assert!(!failed.is_empty());
}

/// `--diagnostic-addr`, as OPA's: a second listener that answers the
/// health checks and the metrics, and nothing else.
#[test]
fn the_diagnostic_listener_serves_health_and_metrics_only() {
    let empty = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(empty.path(), &["--diagnostic-addr", "127.0.0.1:0"]);
    // The log writes the list as its debug text: `["127.0.0.1:8282"]`.
    let listed = daemon.init["diagnostic_addrs"].as_str().unwrap_or("");
    let diag: Vec<SocketAddr> = serde_json::from_str(listed)
        .unwrap_or_else(|e| panic!("no diagnostic address ({e}): {}", daemon.init));
    let diag = diag[0];
    assert_ne!(diag, daemon.addr);
    for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
        let reply = http_get(diag, path);
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
    assert!(http_get(diag, "/metrics").contains("regent_decision_cache_hits_total"));
    for path in ["/v1/policies", "/v1/data/tasks/allow", "/v1/status"] {
        let reply = http_get(diag, path);
        assert!(reply.starts_with("HTTP/1.1 404"), "{path}: {reply}");
        assert!(
            reply.contains("\"code\": \"resource_not_found\""),
            "{path}: {reply}"
        );
    }
    let reply = crate::support::http_post(diag, "/v1/data/tasks/allow", "{}");
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    // The API listener still serves everything.
    let reply = http_get(daemon.addr, "/v1/policies");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = write_tree(&[(
        "p.rego",
        "package p\nimport rego.v1\nallow if input.user == \"alice\"\n",
    )]);
    let mut daemon = Daemon::start(dir.path(), &[&path_string(dir.path())]);

    // A request whose body is still arriving when the signal comes.
    let body = br#"{"input": {"user": "alice"}}"#;
    let (head, tail) = body.split_at(10);
    let mut conn = TcpStream::connect(daemon.addr).unwrap();
    write!(
        conn,
        "POST /v1/data/p/allow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(head).unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    daemon.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    assert!(
        TcpStream::connect(daemon.addr).is_err(),
        "still accepting after SIGTERM"
    );

    conn.write_all(tail).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("{\"result\":true}\n"), "{reply}");
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
}

fn run_expect_failure(args: &[&str]) -> String {
    let out = Command::new(regent_bin()).args(args).output().unwrap();
    assert!(!out.status.success(), "expected failure for {args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("Initializing server."),
        "bound before failing: {stderr}"
    );
    stderr
}

#[test]
fn configuration_errors_exit_non_zero_before_binding() {
    let dir = write_tree(&[
        ("ok.rego", "package ok\nx := 1\n"),
        ("bad.rego", "package bad\n\nallow if {\n  input.x ==\n}\n"),
    ]);
    let stderr = run_expect_failure(&[
        "run",
        "--server",
        "--addr",
        "127.0.0.1:0",
        &path_string(dir.path()),
    ]);
    assert!(stderr.contains("bad.rego:5"), "{stderr}");

    let stderr = run_expect_failure(&[
        "run",
        "--server",
        "--addr",
        "127.0.0.1:0",
        "/no/such/path.rego",
    ]);
    assert!(stderr.contains("/no/such/path.rego"), "{stderr}");

    let dir = write_tree(&[("a.json", "{\"x\": 1}"), ("b.json", "{\"x\": 2}")]);
    let stderr = run_expect_failure(&[
        "run",
        "--server",
        "--addr",
        "127.0.0.1:0",
        &path_string(dir.path()),
    ]);
    assert!(stderr.contains("b.json: merge error"), "{stderr}");

    let stderr = run_expect_failure(&["run", "--addr", "127.0.0.1:0"]);
    assert!(stderr.contains("--server"), "{stderr}");

    let stderr = run_expect_failure(&["run", "--server", "--max-json-depth", "0"]);
    assert!(stderr.contains("--max-json-depth"), "{stderr}");
}

#[test]
fn opa_run_flags_of_other_deployments_are_understood() {
    // --ready-timeout: not listening until the bundles are active; a bundle
    // that never comes is exit 1 once the time is up.
    let stderr = run_expect_failure(&[
        "run",
        "--server",
        "--addr",
        "127.0.0.1:0",
        "--ready-timeout=1",
        "--set=services.s.url=http://127.0.0.1:1",
        "--set=bundles.b.service=s",
    ]);
    assert!(stderr.contains("--ready-timeout (1s)"), "{stderr}");
    assert!(
        stderr.contains("Failed to wait for plugins activation."),
        "{stderr}"
    );

    let stderr = run_expect_failure(&["run", "--server", "--v0-compatible"]);
    assert!(stderr.contains("Rego v1 only"), "{stderr}");

    // Flags of OPA's that change nothing here are accepted; the timestamp
    // layout is Go's.
    let dir = write_tree(&[
        (".manifest", r#"{"roots": ["fb"]}"#),
        ("fb/p.rego", "package fb\n\nallow := true\n"),
    ]);
    let resource = format!("--set=bundles.fb.resource=file://{}", dir.path().display());
    let daemon = Daemon::start(
        dir.path(),
        &[
            &resource,
            "--ready-timeout=5",
            "--v1-compatible",
            "--skip-known-schema-check",
            "-H",
            "history",
            "-f",
            "json",
            "-m",
            "5",
            "--pprof",
            "--log-timestamp-format=2006-01-02 15:04:05 Z07:00",
        ],
    );
    let stamp = daemon.init["timestamp"].as_str().unwrap().to_string();
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99 99:99:99 Z", "{stamp}");
    let reply = http_get(daemon.addr, "/v1/data/fb/allow");
    assert!(reply.ends_with("{\"result\":true}\n"), "{reply}");
}
