//! In-process cost of an uncached decision over the whole generated input
//! set of the default policies, not one fixture: every `data.<pkg>.allow with
//! input as {...}` case of `policies/tests/*_test.rego` becomes an `allow`
//! and a `filter` request body (as `benches/load.sh` builds them for wrk),
//! and each is read and evaluated exactly as the request path does
//! (`parse_data_request`, then `Snapshot::evaluate` under the inline time
//! budget, `api/offload.rs`), one thread, no cache. Decisions that overrun
//! the budget (which the server would evaluate again off its workers) are
//! counted; on a quiet machine there are none.
//!
//! ```text
//! cargo run --release --example decision_mix            # ROUNDS=5 by default
//! NO_BUDGET=1 cargo run --release --example decision_mix   # without the budget
//! ```
//!
//! Prints, per rule (`allow`, `filter`), the median, p10 and p90 of the
//! per-decision times over all rounds (the first round warms up and is not
//! counted), then the mean per package.
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use regent::api::offload::INLINE_BUDGET;
use regent::api::wire::{parse_data_request, Keys};
use regent::policy::{DataPath, EvalOptions, Snapshot, Sources};

fn main() -> ExitCode {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let snapshot = match Sources::embedded_default().and_then(Snapshot::build) {
        Ok(snapshot) => snapshot,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
    };
    let cases = match cases() {
        Ok(cases) if !cases.is_empty() => cases,
        Ok(_) => {
            eprintln!("no `data.<pkg>.allow with input as` cases in policies/tests");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("policies/tests: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{} inputs, {rounds} rounds (+1 warm-up)", cases.len());
    let keys = Keys::default();
    let options = EvalOptions {
        time_limit: std::env::var_os("NO_BUDGET")
            .is_none()
            .then_some(INLINE_BUDGET),
        ..EvalOptions::default()
    };
    for rule in ["allow", "filter"] {
        let requests: Vec<(DataPath, &[u8])> = cases
            .iter()
            .map(|(package, body)| {
                (
                    DataPath::parse(&format!("{package}/{rule}")),
                    body.as_bytes(),
                )
            })
            .collect();
        let mut times = Vec::with_capacity(requests.len() * rounds);
        let mut per_package: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        let mut over_budget = 0usize;
        for round in 0..=rounds {
            for (path, body) in &requests {
                let started = Instant::now();
                let answer = parse_data_request(body, &keys)
                    .map_err(|e| e.0)
                    .and_then(|input| {
                        snapshot
                            .evaluate(path, input, options)
                            .map_err(|e| e.to_string())
                    });
                let micros = started.elapsed().as_secs_f64() * 1e6;
                match std::hint::black_box(answer) {
                    Err(err) if err.starts_with("eval_cancel_error") => over_budget += 1,
                    Err(err) => {
                        eprintln!("{path}: {err}");
                        return ExitCode::FAILURE;
                    }
                    Ok(_) => {}
                }
                if round > 0 {
                    times.push(micros);
                    let entry = per_package.entry(path.to_string()).or_default();
                    entry.0 += micros;
                    entry.1 += 1;
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "{rule}: median {:.1} us, p10 {:.1} us, p90 {:.1} us, max {:.1} us, mean {:.1} us, \
             over the budget {over_budget}",
            at(0.5),
            at(0.1),
            at(0.9),
            at(1.0),
            times.iter().sum::<f64>() / times.len() as f64
        );
        for (path, (sum, n)) in per_package {
            println!("  {path}: mean {:.1} us", sum / n as f64);
        }
    }
    ExitCode::SUCCESS
}

/// (package, `{"input": ...}` body) of every generated allow case.
fn cases() -> std::io::Result<Vec<(String, String)>> {
    let mut files: Vec<_> = std::fs::read_dir("policies/tests")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("_test.rego"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        for line in std::fs::read_to_string(&file)?.lines() {
            let line = line.trim_start();
            let line = line.strip_prefix("not ").unwrap_or(line);
            let Some(rest) = line.strip_prefix("data.") else {
                continue;
            };
            let Some((package, input)) = rest.split_once(".allow with input as ") else {
                continue;
            };
            if package.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                cases.push((package.to_string(), format!("{{\"input\": {input}}}")));
            }
        }
    }
    Ok(cases)
}
