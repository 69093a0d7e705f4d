//! The fast path (import-resolved RVM bytecode) against the interpreter: the
//! same JSON for the same query, on every generated test input of the default
//! policies (their `allow` and their package's `filter`) and on Rego that
//! exercises the constructs real policies use.

use regent::policy::{DataPath, EvalOptions, Evaluator, Snapshot, Sources};
use regent::rego_test::{Plan, Suite};

fn outcome_json(r: &Result<regent::policy::Outcome, regent::policy::EvalError>) -> String {
    match r {
        Ok(regent::policy::Outcome::Defined(v)) => serde_json::to_string(v).unwrap(),
        Ok(regent::policy::Outcome::Undefined) => "<undefined>".into(),
        Err(e) => format!("error: {}", e.code.as_str()),
    }
}

fn compare(evaluator: &Evaluator, path: &DataPath, input: &regorus::Value) -> Option<String> {
    let fast = evaluator.evaluate(path, Some(input.clone()), EvalOptions::default());
    let slow = evaluator.evaluate_interpreted(path, Some(input.clone()), EvalOptions::default());
    let (fast, slow) = (outcome_json(&fast), outcome_json(&slow));
    (fast != slow).then(|| format!("{path} with {input}: fast {fast} interpreter {slow}"))
}

#[test]
fn fast_path_equals_interpreter_on_every_generated_input() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let suite = Suite::load(&[dir]).unwrap();
    let snapshot = Snapshot::build(Sources::embedded_default().unwrap()).unwrap();
    let evaluator = snapshot.evaluator();
    assert!(
        evaluator.fast_entries() > 0,
        "nothing compiled to the fast path"
    );
    // Both cores: each thread gets its own VM.
    let halves: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|half| {
                let cases = &suite.cases;
                scope.spawn(move || {
                    let (mut checked, mut mismatches) = (0, Vec::new());
                    for case in cases.iter().skip(half).step_by(2) {
                        let Plan::Direct { path, input, .. } = &case.plan else {
                            continue;
                        };
                        let mut filter = path.segments().to_vec();
                        filter.pop();
                        filter.push("filter".into());
                        for p in [path.clone(), DataPath::from_segments(filter)] {
                            checked += 1;
                            mismatches.extend(compare(evaluator, &p, input));
                        }
                    }
                    (checked, mismatches)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let checked: usize = halves.iter().map(|(c, _)| c).sum();
    let mismatches: Vec<String> = halves.into_iter().flat_map(|(_, m)| m).collect();
    assert!(checked > 20_000, "only {checked} queries compared");
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

const CONSTRUCTS: &str = r#"package c
import rego.v1
import data.lib

default allow := false
allow if lib.is_admin
allow if {
	some role in input.roles
	role in {"editor", "owner"}
}

names contains n if {
	some n in input.names
}
names contains "always"

by_name[n] := count(n) if {
	some n in input.names
}

grade := "high" if input.score > 80
	else := "mid" if input.score > 50
	else := "low"

all_positive if {
	every x in input.nums {
		x > 0
	}
}

lookup(x) := 1 if x == "a"
lookup(x) := 2 if x == "b"
codes := [lookup(x) | some x in input.names]

starts if startswith(input.maybe, "a")
starts_false := startswith(input.maybe, "zz")

undefined_rule if input.nothing == 1
false_rule := false

nested := {"a": {k: v | v := input.obj[k]}, "b": [y | some x in input.nums; y := x * 2]}
"#;

const LIB: &str = r#"package lib
import rego.v1
is_admin if input.user.role == "admin"
helper := 7
"#;

#[test]
fn fast_path_equals_interpreter_on_common_constructs() {
    let evaluator = Evaluator::build(
        [("c.rego", CONSTRUCTS), ("lib.rego", LIB)],
        regorus::Value::new_object(),
    )
    .unwrap();
    assert!(evaluator.fast_entries() > 0);
    let inputs = [
        r#"{"user": {"role": "admin"}}"#,
        r#"{"roles": ["viewer", "editor"], "names": ["a", "b", "abc"], "score": 90, "nums": [1, 2], "maybe": null, "obj": {"x": 1}}"#,
        r#"{"roles": [], "names": [], "score": 60, "nums": [1, -1], "maybe": "abc", "obj": {}}"#,
        r#"{"score": "not a number", "maybe": 5}"#,
        "{}",
    ];
    let rules = [
        "allow",
        "names",
        "by_name",
        "grade",
        "all_positive",
        "codes",
        "starts",
        "starts_false",
        "undefined_rule",
        "false_rule",
        "nested",
    ];
    let mut mismatches = Vec::new();
    for input in inputs {
        let input = regorus::Value::from_json_str(input).unwrap();
        for rule in rules {
            if let Some(m) = compare(&evaluator, &DataPath::parse(&format!("c/{rule}")), &input) {
                mismatches.push(m);
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
