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

/// Who answered a query: the fast path, or the interpreter because the path
/// is not a fast entry point or the VM handed the decision over.
#[derive(Default)]
struct Tally {
    fast: usize,
    not_entry: Vec<String>,
    handed_over: Vec<String>,
}

/// The fast path's own answer (no fallback) against the interpreter's; a
/// mismatch is returned. Queries the VM hands over are tallied: the served
/// answer is then the interpreter's by construction.
fn compare(
    evaluator: &Evaluator,
    path: &DataPath,
    input: &regorus::Value,
    tally: &mut Tally,
) -> Option<String> {
    let slow = evaluator.evaluate_interpreted(path, Some(input.clone()), EvalOptions::default());
    let slow = outcome_json(&slow);
    let served =
        outcome_json(&evaluator.evaluate(path, Some(input.clone()), EvalOptions::default()));
    if served != slow {
        return Some(format!(
            "{path} with {input}: served {served} interpreter {slow}"
        ));
    }
    match evaluator.evaluate_fast(path, Some(input.clone())) {
        None => tally.not_entry.push(format!("{path}")),
        Some(Err(reason)) => tally
            .handed_over
            .push(format!("{path} with {input}: {reason}")),
        Some(Ok(fast)) => {
            tally.fast += 1;
            let fast = outcome_json(&Ok(fast));
            if fast != slow {
                return Some(format!(
                    "{path} with {input}: fast {fast} interpreter {slow}"
                ));
            }
        }
    }
    None
}

/// [`compare`] for every rule of `package` in `rules` on every input (JSON
/// texts): the mismatches and who answered.
fn compare_rules(
    evaluator: &Evaluator,
    package: &str,
    inputs: &[&str],
    rules: &[&str],
) -> (Vec<String>, Tally) {
    let (mut mismatches, mut tally) = (Vec::new(), Tally::default());
    for input in inputs {
        let input = regorus::Value::from_json_str(input).unwrap();
        for rule in rules {
            let path = DataPath::parse(&format!("{package}/{rule}"));
            mismatches.extend(compare(evaluator, &path, &input, &mut tally));
        }
    }
    (mismatches, tally)
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
    assert_eq!(evaluator.indexed_field(), Some("input.scope"));
    // Every copy of an indexed rule compiled (the comparison runs on them).
    let (copies, planned) = evaluator.indexed_copies();
    assert!(
        planned > 0 && copies == planned,
        "{copies} of {planned} copies of indexed rules compiled"
    );
    compare_generated(evaluator, &suite);
}

/// [`compare`] on every generated test input, for its `allow` and its
/// package's `filter`, on both cores.
fn compare_generated(evaluator: &Evaluator, suite: &Suite) {
    // Both cores: each thread gets its own VM.
    let halves: Vec<(Tally, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|half| {
                let cases = &suite.cases;
                scope.spawn(move || {
                    let (mut tally, mut mismatches) = (Tally::default(), Vec::new());
                    for case in cases.iter().skip(half).step_by(2) {
                        let Plan::Direct { path, input, .. } = &case.plan else {
                            continue;
                        };
                        let mut filter = path.segments().to_vec();
                        filter.pop();
                        filter.push("filter".into());
                        let filter = DataPath::from_segments(filter);
                        let paths = if evaluator.rules().is_rule(&filter) {
                            vec![path.clone(), filter]
                        } else {
                            vec![path.clone()]
                        };
                        for p in paths {
                            mismatches.extend(compare(evaluator, &p, input, &mut tally));
                        }
                    }
                    (tally, mismatches)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let fast: usize = halves.iter().map(|(t, _)| t.fast).sum();
    let elsewhere: Vec<&String> = halves
        .iter()
        .flat_map(|(t, _)| t.not_entry.iter().chain(&t.handed_over))
        .collect();
    // Every generated query runs on the VM: a query answered by the
    // interpreter instead would make the comparison vacuous.
    assert!(
        elsewhere.is_empty(),
        "{} queries not answered by the fast path, first: {:#?}",
        elsewhere.len(),
        &elsewhere[..elsewhere.len().min(5)]
    );
    assert!(fast > 50_000, "only {fast} queries compared");
    let mismatches: Vec<String> = halves.into_iter().flat_map(|(_, m)| m).collect();
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

classify(x) := "big" if x > 10
	else := "small" if x > 0
	else := "none"
classes := [classify(x) | some x in input.nums]

pair_sum([a, b]) := a + b
pair_sum({"l": a, "r": b}) := a - b
sums := [pair_sum(p) | some p in input.pairs]

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
        r#"{"roles": [], "names": [], "score": 60, "nums": [1, -1, 11], "maybe": "abc", "obj": {}, "pairs": [[1, 2], {"l": 5, "r": 3}, [1], "x"]}"#,
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
        "classes",
        "sums",
        "nested",
    ];
    let (mismatches, tally) = compare_rules(&evaluator, "c", &inputs, &rules);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // The deliberate hand-overs: a comprehension over a function that is
    // undefined for some elements, where the VM keeps an undefined element
    // and OPA drops it; and the rules that can conflict or reach one that
    // can (the RVM would keep one of the values where OPA raises
    // `eval_conflict_error`): `by_name`, a partial object computed in a
    // loop, and `codes` and `sums`, which call functions whose definitions
    // give different values.
    let unexpected: Vec<&String> = tally
        .handed_over
        .iter()
        .filter(|r| !r.ends_with("result holds an undefined value"))
        .collect();
    let conflict_prone = ["data.c.by_name", "data.c.codes", "data.c.sums"];
    let not_entry: Vec<&String> = tally
        .not_entry
        .iter()
        .filter(|p| !conflict_prone.contains(&p.as_str()))
        .collect();
    assert!(
        not_entry.is_empty() && unexpected.is_empty(),
        "not on the fast path: {not_entry:#?} {unexpected:#?}",
    );
    assert_eq!(tally.not_entry.len(), inputs.len() * conflict_prone.len());
    assert!(
        tally.fast >= inputs.len() * (rules.len() - conflict_prone.len()) - 4,
        "{}",
        tally.fast
    );
}

/// Constants the fast path folds (`policy/fold.rs`), referenced in the ways
/// policies reference them, next to names that look alike but are locals,
/// and rules that must not be folded.
const FOLDING: &str = r#"package f
import rego.v1
import data.consts

ADMIN := "admin"
LEVELS := {"admin": 0, "user": 1, "none": 2}
READ := {"view", "list"}
PAIR := [ADMIN, 2]
LIMIT := count(READ) * 10
FROM_DATA := data.settings.max
NOT_FOLDED := input.level
# Defined with an empty input too: folding it would be wrong, not just slow.
LEVEL_OR_ONE := object.get(input, "level", 1)

level := LEVELS[input.role]
level_or_none := LEVELS[input.role] if input.role in object.keys(LEVELS) else := LEVELS.none
is_admin if input.role == ADMIN
can_read if input.scope in READ
under_limit if input.n < LIMIT
under_data if input.n < FROM_DATA
pair := PAIR
first := PAIR[0]
keyed := {ADMIN: input.role, "limit": LIMIT}
via_import if input.role == consts.ROLE
via_data if input.role == data.consts.ROLE
not_admin if not is_admin_by_name
is_admin_by_name if input.role == ADMIN
uses_input := NOT_FOLDED
uses_input_too := LEVEL_OR_ONE + 1
all_read if {
	every s in input.scopes {
		s in READ
	}
}
scopes := [s | some s in READ; s != input.skip]
levels_of := {r: LEVELS[r] | some r in input.roles; LEVELS[r]}

# A local that shares a constant's name: never rewritten as the constant.
shadow if {
	some ROLE in input.roles
	ROLE == "user"
}
unify if {
	[X, _] = PAIR
	X == input.role
}
fn(ADMIN_ARG) := ADMIN_ARG == ADMIN
called := fn(input.role)

# Look-alikes the folding must leave alone.
G := 7
in_comprehension := [G | G := input.scopes[_]]
NEG := -1
neg if {
	input.n
	NEG > 0
}
util.level(d) := object.get(input, "level", d)
L := util.level(0)
l_positive if L > 0
HALF := 0.5
half := HALF * 2
BIG := 1e18 * 1.5
big := BIG + 1
FALSE_SET := {false}
set_truthy if FALSE_SET

# Each name below is a local somewhere in the package (a comprehension in an
# `else` value, a `some ... in` collection, an `every` domain).
E := "e"
else_value := 1 if input.nothing
	else := [E | E := input.scopes[_]]
SI := "si"
some_in if {
	some x in [SI | SI := input.scopes[_]]
	x == "view"
}
EV := "ev"
every_domain if {
	every x in [EV | EV := input.scopes[_]] {
		x != "ev"
	}
}
"#;

const CONSTS: &str = r#"package consts
import rego.v1
ROLE := "user"
ROLE_SET := {ROLE}
"#;

#[test]
fn fast_path_with_folded_constants_equals_interpreter() {
    let evaluator = Evaluator::build(
        [("f.rego", FOLDING), ("consts.rego", CONSTS)],
        regorus::Value::from_json_str(r#"{"settings": {"max": 5}}"#).unwrap(),
    )
    .unwrap();
    assert_eq!(
        evaluator.folded_rules(),
        [
            "data.consts.ROLE",
            "data.f.ADMIN",
            "data.f.FROM_DATA",
            "data.f.LEVELS",
            "data.f.LIMIT",
            "data.f.READ"
        ]
    );
    // `FALSE_SET` is folded nowhere: its only reference, `set_truthy if
    // FALSE_SET`, would read as a rule body (`if {false}`).
    // `PAIR` is ground but appears in a unification (`[X, _] = PAIR`), where
    // the folding does not tell references from locals: it stays a rule.
    let inputs = [
        r#"{"role": "admin", "scope": "view", "n": 3, "scopes": ["view"], "roles": ["admin", "user"], "skip": "list"}"#,
        r#"{"role": "user", "scope": "edit", "n": 7, "scopes": ["view", "edit"], "roles": ["x"], "level": 4}"#,
        r#"{"role": "ghost", "n": "x", "scopes": [], "roles": []}"#,
        "{}",
    ];
    let rules = [
        "level",
        "level_or_none",
        "is_admin",
        "can_read",
        "under_limit",
        "under_data",
        "pair",
        "first",
        "keyed",
        "via_import",
        "via_data",
        "not_admin",
        "uses_input",
        "uses_input_too",
        "all_read",
        "scopes",
        "levels_of",
        "shadow",
        "unify",
        "called",
        "in_comprehension",
        "neg",
        "l_positive",
        "half",
        "big",
        "set_truthy",
        "else_value",
        "some_in",
        "every_domain",
        "LIMIT",
        "FROM_DATA",
    ];
    let (mismatches, tally) = compare_rules(&evaluator, "f", &inputs, &rules);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(
        tally.not_entry.is_empty() && tally.handed_over.is_empty(),
        "not on the fast path: {:#?} {:#?}",
        tally.not_entry,
        tally.handed_over
    );
    assert_eq!(tally.fast, inputs.len() * rules.len());
}
