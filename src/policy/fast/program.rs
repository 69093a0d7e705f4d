//! What Regent changes in a compiled regorus `Program` before running it,
//! to work around costs of the regorus 0.14 VM: per-rule metadata it clones
//! on every rule call but never reads, and the sources and spans it never
//! reads at all ([`slim`]); reference counts the worker threads would
//! otherwise share ([`private_copy`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use regorus::rvm::Program;
use regorus::Value;

/// Drops the per-rule metadata the VM does not need, because regorus 0.14
/// clones a rule's whole `RuleInfo` on every rule call, cached results
/// included: its name, one `Vec<bool>` per definition marking `else` bodies,
/// the destructuring entry points and the parameter names of functions.
/// The VM reads `else_bodies` and `destructuring_blocks` with `.get(i)`
/// defaulting to "no else" and "no destructuring", so emptying them when
/// every entry says exactly that changes nothing, and it never reads the
/// names (checked in rvm/vm of regorus 0.14.1; the differential test runs
/// this path against the interpreter). 13-16% fewer CPU instructions per
/// decision on the default policies (callgrind, BENCHMARKS.md).
///
/// Also drops the program's copy of the policy sources and its per-instruction
/// spans, which only regorus's listing and serialization read (nothing in
/// its VM does): each program held the text of every module it was compiled
/// from, and every worker thread holds a copy of every program it runs.
pub(super) fn slim(program: Arc<Program>) -> Arc<Program> {
    let mut program = Arc::unwrap_or_clone(program);
    program.sources = Vec::new();
    program.instruction_spans = Vec::new();
    for info in &mut program.rule_infos {
        if info.else_bodies.iter().flatten().all(|is_else| !is_else) {
            info.else_bodies = Vec::new();
        }
        if info.destructuring_blocks.iter().all(Option::is_none) {
            info.destructuring_blocks = Vec::new();
        }
        if let Some(function) = &mut info.function_info {
            function.param_names = Vec::new();
        }
        info.name = String::new();
    }
    Arc::new(program)
}

/// A copy of `program` that shares no reference count with it, for one
/// thread's VM. regorus 0.14 clones reference-counted parts of the program
/// on every rule call (a rule's `definitions`, cached results included) and
/// literals into registers on every use; with one program shared by the
/// worker threads, every such clone and drop was an atomic operation on a
/// cache line the other core had just written (`perf`: 81% of the time in
/// `RuleInfo::clone` on that one `lock inc`). The copy costs the program's
/// size once per thread and snapshot (data stays shared: it can be large);
/// once [`slim`] has dropped the sources, the default set's copies add
/// about 0.3 MiB to the RSS of a server after the 100k-entry cache fill.
pub(super) fn private_copy(program: &Program) -> Program {
    let mut copy = program.clone();
    for info in &mut copy.rule_infos {
        info.definitions = Arc::new((*info.definitions).clone());
    }
    for literal in &mut copy.literals {
        *literal = deep_copy(literal);
    }
    copy.rule_tree = deep_copy(&copy.rule_tree);
    copy
}

/// `value` rebuilt from its parts, so that it shares no allocation with the
/// original (big integers excepted: they stay shared, and are rare).
fn deep_copy(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(Arc::from(&**text)),
        Value::Array(items) => Value::from(items.iter().map(deep_copy).collect::<Vec<_>>()),
        Value::Set(items) => Value::from(items.iter().map(deep_copy).collect::<BTreeSet<_>>()),
        Value::Object(fields) => Value::from(
            fields
                .iter()
                .map(|(k, v)| (deep_copy(k), deep_copy(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fast::FastPath;
    use regorus::Engine;

    fn shares_nothing(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::String(x), Value::String(y)) => !Arc::ptr_eq(x, y),
            (Value::Array(x), Value::Array(y)) => {
                !Arc::ptr_eq(x, y) && x.iter().zip(y.iter()).all(|(a, b)| shares_nothing(a, b))
            }
            (Value::Set(x), Value::Set(y)) => {
                !Arc::ptr_eq(x, y) && x.iter().zip(y.iter()).all(|(a, b)| shares_nothing(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                !Arc::ptr_eq(x, y)
                    && x.iter().zip(y.iter()).all(|((ka, va), (kb, vb))| {
                        shares_nothing(ka, kb) && shares_nothing(va, vb)
                    })
            }
            _ => true,
        }
    }

    #[test]
    fn deep_copy_is_equal_and_shares_no_allocation() {
        let value = Value::from_json_str(
            r#"{"a": ["x", 1, 2.5, null, true, {"b": "y"}], "c": {"d": [[]]}, "e": "z"}"#,
        )
        .unwrap();
        let mut set = BTreeSet::new();
        set.insert(Value::from("s"));
        set.insert(value.clone());
        let value = Value::from(vec![value, Value::from(set)]);
        let copy = deep_copy(&value);
        assert_eq!(copy, value);
        assert!(shares_nothing(&copy, &value));
    }

    #[test]
    fn slimmed_program_is_copied_without_shared_counts() {
        let mut engine = Engine::new();
        engine
            .add_policy(
                "p.rego".into(),
                r#"package p
                roles := {"admin": 0, "user": 1}
                allow if roles[input.role] < 1
                allow if input.name == "root""#
                    .into(),
            )
            .unwrap();
        let (fast, rejected) =
            FastPath::build(&engine, &["data.p.allow".into()], &Value::new_object());
        assert!(rejected.is_empty(), "{rejected:?}");
        let program = &fast.unwrap().programs[0].program;
        // `slim` (run by `FastPath::build`) dropped what the VM never reads.
        assert!(program.sources.is_empty() && program.instruction_spans.is_empty());
        let copy = private_copy(program);
        assert!(!program.rule_infos.is_empty() && !program.literals.is_empty());
        for (ours, theirs) in copy.rule_infos.iter().zip(&program.rule_infos) {
            assert_eq!(ours.definitions, theirs.definitions);
            assert!(!Arc::ptr_eq(&ours.definitions, &theirs.definitions));
        }
        assert_eq!(copy.rule_tree, program.rule_tree);
        assert!(shares_nothing(&copy.rule_tree, &program.rule_tree));
        for (ours, theirs) in copy.literals.iter().zip(&program.literals) {
            assert_eq!(ours, theirs);
            assert!(shares_nothing(ours, theirs));
        }
    }
}
