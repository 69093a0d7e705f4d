//! The fast path: rule documents compiled to regorus RVM bytecode once per
//! snapshot, executed by one `RegoVM` per worker thread (VMs are reusable and
//! need `&mut`), each on its own copy of the program (see [`private_copy`]).
//!
//! The entry points of one package share a program; packages do not. A VM
//! resets per-rule state for its whole program on every decision, so one
//! program for everything made every decision pay for every rule of the
//! policy set; and regorus's compiler gives each entry point of a program a
//! result register in one 255-register window, so a program holds at most
//! a couple of hundred entry points (the default set has 172; a few more
//! packages lost the whole fast path). A package with more is split in
//! halves until the parts compile.
//!
//! Whatever cannot run here is answered by the interpreter instead, per
//! entry point at compile time (a `with`, an unsupported construct; logged
//! with the reason) and per decision at run time (instruction limit, any VM
//! error: the interpreter then gives the OPA-shaped answer or error).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::{Engine, Value};
use thread_local::ThreadLocal;

/// Instructions one decision may execute before it is handed to the interpreter.
pub const MAX_INSTRUCTIONS: usize = 1_000_000;

/// Compiled entry points and a VM per program and thread.
pub struct FastPath {
    programs: Vec<Compiled>,
    /// Entry point name (`data.p.allow`) -> where it runs.
    entries: HashMap<String, Entry>,
    data: Value,
    /// Rules whose references were folded to constants (`fold.rs`).
    folded: Vec<String>,
}

/// One program and its VMs.
struct Compiled {
    program: Arc<Program>,
    vms: ThreadLocal<RefCell<RegoVM>>,
}

/// An entry point: its program, and its index in that program.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    program: usize,
    index: usize,
}

/// Why an entry point was left to the interpreter.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub entry: String,
    pub reason: String,
}

impl FastPath {
    /// Compiles every entry point it can. Returns `None` (everything goes to
    /// the interpreter) when not one compiles or the data cannot be loaded.
    pub fn build(
        engine: &Engine,
        entries: &[String],
        data: &Value,
    ) -> (Option<FastPath>, Vec<Rejected>) {
        if entries.is_empty() {
            return (None, Vec::new());
        }
        // Folded first; the text as written if the folded text does not
        // compile at all (folding is an optimisation, never a cause to lose
        // the fast path).
        let folded =
            super::fold::fold(engine, data).and_then(|f| match compile(f.engine, entries) {
                (programs, rejected) if !programs.is_empty() => {
                    Some((programs, rejected, f.rules, f.references))
                }
                _ => None,
            });
        let (programs, mut rejected, folded) = match folded {
            Some((programs, rejected, rules, references)) => {
                tracing::debug!(
                    rules = rules.len(),
                    references,
                    "constant rules folded for the fast path"
                );
                (programs, rejected, rules)
            }
            None => match compile(engine.clone(), entries) {
                (programs, rejected) if !programs.is_empty() => (programs, rejected, Vec::new()),
                (_, rejected) => return (None, rejected),
            },
        };
        let mut compiled = Vec::new();
        let mut names = HashMap::new();
        for program in programs {
            let program = slim(program);
            // The data must load into a VM (it may not overlap rule paths).
            let mut probe = RegoVM::new();
            probe.load_program(program.clone());
            if let Err(err) = probe.set_data(data.clone()) {
                rejected.push(Rejected {
                    entry: "*".into(),
                    reason: format!("data: {err}"),
                });
                return (None, rejected);
            }
            for (index, name) in program.entry_points.keys().enumerate() {
                let entry = Entry {
                    program: compiled.len(),
                    index,
                };
                names.insert(name.clone(), entry);
            }
            compiled.push(Compiled {
                program,
                vms: ThreadLocal::new(),
            });
        }
        let fast = FastPath {
            programs: compiled,
            entries: names,
            data: data.clone(),
            folded,
        };
        (Some(fast), rejected)
    }

    /// The entry point for a rendered rule path.
    pub fn entry(&self, path: &str) -> Option<Entry> {
        self.entries.get(path).copied()
    }

    /// Rules whose references the fast path reads as constants.
    pub fn folded(&self) -> &[String] {
        &self.folded
    }

    /// How many entry points run here.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// How many programs they are compiled into.
    pub fn programs(&self) -> usize {
        self.programs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `entry` with `input` on this thread's VM for its program.
    pub fn evaluate(
        &self,
        entry: Entry,
        input: Value,
        time_limit: Option<std::time::Duration>,
    ) -> Result<Value, String> {
        let compiled = self
            .programs
            .get(entry.program)
            .ok_or_else(|| "no such program".to_string())?;
        let cell = compiled.vms.get_or(|| {
            let mut vm = RegoVM::new();
            vm.load_program(Arc::new(private_copy(&compiled.program)));
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            // Checked in `build`: the same data loaded into the same program.
            let _ = vm.set_data(self.data.clone());
            RefCell::new(vm)
        });
        let mut vm = cell.try_borrow_mut().map_err(|_| "vm in use".to_string())?;
        vm.set_execution_timer_config(time_limit.map(super::eval::time_limit));
        vm.set_input(input);
        let value = vm
            .execute_entry_point_by_index(entry.index)
            .map_err(|e| e.to_string())?;
        // The VM can leave `undefined` inside a collection (a comprehension
        // over a function that is undefined for some element), where OPA drops
        // the element: let the interpreter answer those.
        if value != Value::Undefined && holds_undefined(&value) {
            return Err("result holds an undefined value".into());
        }
        Ok(value)
    }
}

/// Compiles every entry point of `entries` that the RVM accepts: one
/// program per package (the entry points with the same path up to their
/// last segment), split for a package whose entry points do not compile
/// together.
fn compile(mut engine: Engine, entries: &[String]) -> (Vec<Arc<Program>>, Vec<Rejected>) {
    let mut rejected = Vec::new();
    let Some(first) = entries.first() else {
        return (Vec::new(), rejected);
    };
    let policy = match engine.compile_with_entrypoint(&regorus::Rc::from(first.as_str())) {
        Ok(policy) => policy,
        Err(err) => {
            rejected.push(Rejected {
                entry: "*".into(),
                reason: format!("{err:#}"),
            });
            return (Vec::new(), rejected);
        }
    };
    let mut packages: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for entry in entries {
        let package = entry.rsplit_once('.').map_or("", |(package, _)| package);
        packages.entry(package).or_default().push(entry);
    }
    let mut programs = Vec::new();
    for group in packages.values() {
        compile_group(&policy, group, &mut programs, &mut rejected);
    }
    (programs, rejected)
}

/// Compiles `group` into one program. A group with more entry points than a
/// program holds is compiled in halves; from a group that does not compile
/// for another reason, the entry points that fail alone are rejected and the
/// others compiled together.
fn compile_group(
    policy: &regorus::CompiledPolicy,
    group: &[&str],
    programs: &mut Vec<Arc<Program>>,
    rejected: &mut Vec<Rejected>,
) {
    match Compiler::compile_from_policy(policy, group) {
        Ok(program) => programs.push(program),
        Err(err) if group.len() == 1 => rejected.push(Rejected {
            entry: group[0].to_string(),
            reason: err.to_string(),
        }),
        // Too many entry points for one program: halves.
        Err(err) if err.to_string().contains("Register overflow") => {
            let (left, right) = group.split_at(group.len() / 2);
            compile_group(policy, left, programs, rejected);
            compile_group(policy, right, programs, rejected);
        }
        // Some entry point the RVM rejects (a `with`, say): find which, one
        // at a time, and compile the others together.
        Err(_) => {
            let mut good = Vec::new();
            let mut alone = Vec::new();
            for entry in group {
                match Compiler::compile_from_policy(policy, &[entry]) {
                    Ok(program) => {
                        good.push(*entry);
                        alone.push(program);
                    }
                    Err(err) => rejected.push(Rejected {
                        entry: entry.to_string(),
                        reason: err.to_string(),
                    }),
                }
            }
            if good.len() < group.len() {
                if !good.is_empty() {
                    compile_group(policy, &good, programs, rejected);
                }
            } else {
                // Each compiles alone but not all together: one program each.
                programs.extend(alone);
            }
        }
    }
}

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
fn slim(program: Arc<Program>) -> Arc<Program> {
    let mut program = Arc::unwrap_or_clone(program);
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
/// size once per thread (data stays shared: it can be large).
fn private_copy(program: &Program) -> Program {
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

fn holds_undefined(value: &Value) -> bool {
    match value {
        Value::Undefined => true,
        Value::Array(items) => items.iter().any(holds_undefined),
        Value::Set(items) => items.iter().any(holds_undefined),
        Value::Object(fields) => fields
            .iter()
            .any(|(k, v)| holds_undefined(k) || holds_undefined(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares_nothing(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::String(x), Value::String(y)) => !Arc::ptr_eq(x, y),
            (Value::Array(x), Value::Array(y)) => {
                !Arc::ptr_eq(x, y) && x.iter().zip(y.iter()).all(|(a, b)| shares_nothing(a, b))
            }
            (Value::Set(x), Value::Set(y)) => !Arc::ptr_eq(x, y),
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
    fn private_copy_shares_no_rule_definitions_or_literals() {
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
        let copy = private_copy(program);
        assert!(!program.rule_infos.is_empty() && !program.literals.is_empty());
        for (ours, theirs) in copy.rule_infos.iter().zip(&program.rule_infos) {
            assert_eq!(ours.definitions, theirs.definitions);
            assert!(!Arc::ptr_eq(&ours.definitions, &theirs.definitions));
        }
        for (ours, theirs) in copy.literals.iter().zip(&program.literals) {
            assert_eq!(ours, theirs);
            assert!(shares_nothing(ours, theirs));
        }
    }
}
