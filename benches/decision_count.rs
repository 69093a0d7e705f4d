//! Repeatable cost of one decision: run `N` decisions (parse the body, evaluate
//! on the default policies' fast path) under callgrind, and once with `N=0`;
//! the difference divided by `N` is the CPU instructions of one decision,
//! free of this machine's timing noise.
//!
//! ```text
//! cargo build --release --example decision_count
//! for n in 0 1000; do N=$n valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/decision_count tasks/allow benches/fixtures/input.json 2>&1 | grep Collected; done
//! ```
//!
//! Arguments: the rule path, a request body file. `N` defaults to 1000.
//! Decisions run under the inline time budget, as on the request path;
//! `NO_BUDGET=1` runs them without it.
use std::process::ExitCode;

use regent::api::offload::INLINE_BUDGET;
use regent::api::wire::{parse_data_request, Keys};
use regent::policy::{DataPath, EvalOptions, Snapshot, Sources};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, body] = &args[..] else {
        eprintln!("usage: decision_count <rule path> <request body file>");
        return ExitCode::FAILURE;
    };
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (snapshot, body) = match (
        Sources::embedded_default().and_then(Snapshot::build),
        std::fs::read(body),
    ) {
        (Ok(snapshot), Ok(body)) => (snapshot, body),
        (Err(err), _) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
        (_, Err(err)) => {
            eprintln!("{body}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let path = DataPath::parse(path);
    let mut last = None;
    let keys = Keys::default();
    let options = EvalOptions {
        time_limit: std::env::var_os("NO_BUDGET")
            .is_none()
            .then_some(INLINE_BUDGET),
        ..EvalOptions::default()
    };
    for _ in 0..n {
        let input = match parse_data_request(&body, &keys) {
            Ok(input) => input,
            Err(err) => {
                eprintln!("{}", err.0);
                return ExitCode::FAILURE;
            }
        };
        last = Some(snapshot.evaluate(&path, input, options));
    }
    if let Some(result) = last {
        println!("{path}: {result:?}");
    }
    ExitCode::SUCCESS
}
