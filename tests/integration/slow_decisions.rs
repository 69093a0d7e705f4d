//! Slow decisions, against the real binary (one request worker per core):
//! they are moved off the workers, so the server keeps answering, and they
//! stop at `--eval-timeout`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::process::Daemon;
use crate::support::{http_post, path_string, write_tree};

/// `input.n` squared iterations: 10^10 for the stuck decisions, which no
/// machine finishes before the time limit. Under a function call, where
/// regorus's interpreter (which takes over from the VM after its
/// instruction limit) re-creates errors from their text.
const SLOW: &str = "package slow\nimport rego.v1\n\n\
    pairs(k) := count([1 | some i in numbers.range(1, k); some j in numbers.range(1, k)])\n\
    n := pairs(input.n)\n";
const QUICK: &str = "package quick\nimport rego.v1\n\nallow if input.user == \"alice\"\n";

/// One request on a fresh connection, failing the test if no answer comes
/// within `within` (a stalled server must fail the test, not hang it).
fn request_within(addr: SocketAddr, head: &str, body: &str, within: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    write!(
        s,
        "{head} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("`{head}` not answered within {within:?}: {e}"));
    out
}

fn body(reply: &str) -> serde_json::Value {
    let (_, body) = reply.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {reply}"))
}

#[test]
fn slow_decisions_leave_the_server_answering_and_stop_at_the_time_limit() {
    let dir = write_tree(&[("slow.rego", SLOW), ("quick.rego", QUICK)]);
    let daemon = Daemon::start(
        dir.path(),
        &["--eval-timeout", "1s", &path_string(dir.path())],
    );
    let addr = daemon.addr;

    // More stuck decisions than the server has workers.
    let stuck = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let slow: Vec<_> = (0..stuck)
        .map(|_| {
            std::thread::spawn(move || {
                http_post(addr, "/v1/data/slow/n", r#"{"input": {"n": 100000}}"#)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // While they run, the server answers everything else: the health check
    // (no evaluation: it never waits for a turn) before any of them ended,
    let wait = Duration::from_secs(10);
    let health = request_within(addr, "GET /health", "", wait);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "a stuck decision ended before the health check was answered"
    );
    // and a quick decision (which, delayed past the inline budget on a busy
    // machine, could wait for a turn too; it is answered all the same).
    let quick = request_within(
        addr,
        "POST /v1/data/quick/allow",
        r#"{"input": {"user": "alice"}}"#,
        wait,
    );
    assert_eq!(body(&quick), serde_json::json!({"result": true}), "{quick}");

    // The stuck ones stop at the time limit, with OPA's cancel code.
    for t in slow {
        let reply = t.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
        let error = body(&reply);
        assert_eq!(error["code"], "internal_error", "{reply}");
        assert_eq!(error["errors"][0]["code"], "eval_cancel_error", "{reply}");
        assert_eq!(
            error["errors"][0]["message"],
            "query evaluation exceeded its time limit of 1s (--eval-timeout)"
        );
    }

    // A decision over the inline budget and under the limit is answered
    // (evaluated again on the blocking pool).
    let moved = request_within(
        addr,
        "POST /v1/data/slow/n",
        r#"{"input": {"n": 300}}"#,
        Duration::from_secs(30),
    );
    assert_eq!(
        body(&moved),
        serde_json::json!({"result": 90000}),
        "{moved}"
    );

    let metrics = request_within(addr, "GET /metrics", "", wait);
    let counter = |name: &str| -> usize {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}: {metrics}"));
        line[name.len() + 1..].parse().unwrap()
    };
    assert_eq!(counter("regent_decision_timeouts_total"), stuck);
    // Evaluated again: the stuck decisions that got a turn before the
    // limit (at least one per core) and the moved one; quick decisions
    // count too if the machine delayed them past the budget.
    let cores = stuck - 1;
    assert!(counter("regent_slow_decisions_total") > cores);

    // A batch large enough for the blocking pool with one stuck item: the
    // batch is answered within the limit, the stuck item (and any item of
    // its chunk left when the limit passed) with the cancel code, 207.
    let mut inputs: Vec<String> = (1..40)
        .map(|k| format!(r#""q{k}": {{"n": {k}}}"#))
        .collect();
    inputs.push(r#""stuck": {"n": 100000}"#.into());
    let batch = format!(r#"{{"inputs": {{{}}}}}"#, inputs.join(", "));
    let reply = request_within(addr, "POST /v1/batch/data/slow/n", &batch, wait);
    assert!(reply.starts_with("HTTP/1.1 207"), "{reply}");
    let responses = body(&reply)["responses"].clone();
    assert_eq!(
        responses["stuck"]["errors"][0]["code"], "eval_cancel_error",
        "{responses}"
    );
    let answered = (1..40u64)
        .filter(|k| responses[format!("q{k}")]["result"] == k * k)
        .count();
    let cancelled = (1..40)
        .filter(|k| responses[format!("q{k}")]["errors"][0]["code"] == "eval_cancel_error")
        .count();
    assert_eq!(answered + cancelled, 39, "{responses}");
    assert!(answered > 0, "{responses}");
}
