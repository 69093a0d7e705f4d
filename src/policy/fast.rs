//! The fast path: rule documents compiled to regorus RVM bytecode once per
//! snapshot, executed by one `RegoVM` per worker thread (VMs are reusable and
//! need `&mut`, the `Arc<Program>` is shared).
//!
//! Whatever cannot run here is answered by the interpreter instead, per
//! entry point at compile time (a `with`, an unsupported construct; logged
//! with the reason) and per decision at run time (instruction limit, any VM
//! error: the interpreter then gives the OPA-shaped answer or error).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::{Engine, Value};
use thread_local::ThreadLocal;

/// Instructions one decision may execute before it is handed to the interpreter.
pub const MAX_INSTRUCTIONS: usize = 1_000_000;

/// Compiled entry points and a VM per thread.
pub struct FastPath {
    program: Arc<Program>,
    /// Entry point name (`data.p.allow`) -> index in the program.
    entries: HashMap<String, usize>,
    data: Value,
    /// Rules whose references were folded to constants (`fold.rs`).
    folded: Vec<String>,
    vms: ThreadLocal<RefCell<RegoVM>>,
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
                (Some(program), rejected) => Some((program, rejected, f.rules, f.references)),
                (None, _) => None,
            });
        let (program, mut rejected, folded) = match folded {
            Some((program, rejected, rules, references)) => {
                tracing::debug!(
                    rules = rules.len(),
                    references,
                    "constant rules folded for the fast path"
                );
                (program, rejected, rules)
            }
            None => match compile(engine.clone(), entries) {
                (Some(program), rejected) => (program, rejected, Vec::new()),
                (None, rejected) => return (None, rejected),
            },
        };
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
        let entries = program
            .entry_points
            .keys()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let fast = FastPath {
            program,
            entries,
            data: data.clone(),
            folded,
            vms: ThreadLocal::new(),
        };
        (Some(fast), rejected)
    }

    /// The program index of the entry point for a rendered rule path.
    pub fn entry(&self, path: &str) -> Option<usize> {
        self.entries.get(path).copied()
    }

    /// Rules whose references the fast path reads as constants.
    pub fn folded(&self) -> &[String] {
        &self.folded
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs entry point `index` with `input` on this thread's VM.
    pub fn evaluate(
        &self,
        index: usize,
        input: Value,
        time_limit: Option<std::time::Duration>,
    ) -> Result<Value, String> {
        let cell = self.vms.get_or(|| {
            let mut vm = RegoVM::new();
            vm.load_program(self.program.clone());
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            // Checked in `build`: the same data loaded into the same program.
            let _ = vm.set_data(self.data.clone());
            RefCell::new(vm)
        });
        let mut vm = cell.try_borrow_mut().map_err(|_| "vm in use".to_string())?;
        vm.set_execution_timer_config(time_limit.map(super::eval::time_limit));
        vm.set_input(input);
        let value = vm
            .execute_entry_point_by_index(index)
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

/// Compiles every entry point of `entries` that the RVM accepts.
fn compile(mut engine: Engine, entries: &[String]) -> (Option<Arc<Program>>, Vec<Rejected>) {
    let mut rejected = Vec::new();
    let Some(first) = entries.first() else {
        return (None, rejected);
    };
    let policy = match engine.compile_with_entrypoint(&regorus::Rc::from(first.as_str())) {
        Ok(policy) => policy,
        Err(err) => {
            rejected.push(Rejected {
                entry: "*".into(),
                reason: format!("{err:#}"),
            });
            return (None, rejected);
        }
    };
    let all: Vec<&str> = entries.iter().map(String::as_str).collect();
    let program = match Compiler::compile_from_policy(&policy, &all) {
        Ok(program) => program,
        Err(_) => {
            // Find the entry points that do not compile, then compile the rest.
            let mut good = Vec::new();
            for entry in &all {
                match Compiler::compile_from_policy(&policy, &[entry]) {
                    Ok(_) => good.push(*entry),
                    Err(err) => rejected.push(Rejected {
                        entry: entry.to_string(),
                        reason: err.to_string(),
                    }),
                }
            }
            if good.is_empty() {
                return (None, rejected);
            }
            match Compiler::compile_from_policy(&policy, &good) {
                Ok(program) => program,
                Err(err) => {
                    rejected.push(Rejected {
                        entry: "*".into(),
                        reason: err.to_string(),
                    });
                    return (None, rejected);
                }
            }
        }
    };
    (Some(program), rejected)
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
