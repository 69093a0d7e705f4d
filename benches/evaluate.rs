//! Evaluation alone, no HTTP: parse a realistic request body and evaluate one
//! decision against a warmed snapshot, as the request path does.
//!
//! Run: `cargo bench --bench evaluate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use regent::api::wire::{parse_data_request, Keys};
use regent::policy::{DataPath, EvalOptions, Snapshot, Sources};

fn fixtures() -> Snapshot {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures");
    let sources =
        Sources::load_paths(&[format!("{dir}/utils.rego"), format!("{dir}/tasks.rego")]).unwrap();
    Snapshot::build(sources).unwrap()
}

/// The embedded default policy set (the CVAT role model).
fn defaults() -> Snapshot {
    Snapshot::build(Sources::embedded_default().unwrap()).unwrap()
}

fn evaluate(c: &mut Criterion) {
    let defaults = defaults();
    let keys = Keys::default();
    let body = include_bytes!("fixtures/input.json");
    let list = include_bytes!("fixtures/list_input.json");
    let mut group = c.benchmark_group("default");
    for (name, path, body) in [
        ("tasks/allow", "tasks/allow", &body[..]),
        ("jobs/allow", "jobs/allow", &body[..]),
        ("projects/allow", "projects/allow", &body[..]),
        ("tasks/filter", "tasks/filter", &list[..]),
        ("jobs/filter", "jobs/filter", &list[..]),
    ] {
        let path = DataPath::parse(path);
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = parse_data_request(body, &keys).unwrap();
                defaults
                    .evaluate(&path, input, EvalOptions::default())
                    .unwrap()
            })
        });
        group.bench_function(format!("{name} (interpreter)"), |b| {
            b.iter(|| {
                let input = parse_data_request(body, &keys).unwrap();
                defaults
                    .evaluator()
                    .evaluate_interpreted(&path, input, EvalOptions::default())
                    .unwrap()
            })
        });
    }
    group.finish();

    let snapshot = fixtures();
    let body = include_bytes!("fixtures/input.json");
    let mut group = c.benchmark_group("evaluate");
    for rule in ["allow", "filter"] {
        let path = DataPath::parse(&format!("tasks/{rule}"));
        group.bench_function(format!("tasks/{rule}"), |b| {
            b.iter(|| {
                let input = parse_data_request(body, &keys).unwrap();
                snapshot
                    .evaluate(&path, input, EvalOptions::default())
                    .unwrap()
            })
        });
    }
    group.bench_function("parse_input", |b| {
        b.iter(|| parse_data_request(body, &keys).unwrap())
    });
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
