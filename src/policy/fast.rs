//! The fast path: rule documents compiled to regorus RVM bytecode once per
//! snapshot, executed by one `RegoVM` per worker thread (VMs are reusable and
//! need `&mut`), each on its own copy of the program (see [`private_copy`]).
//!
//! The entry points of one package share a program (its indexed rules and
//! their copies have a second one, see `fast/compile.rs`); packages do not. A VM
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
//! error: the interpreter then gives the OPA-shaped answer or error). A
//! panic inside the VM is caught the same way, and its VM replaced; the
//! interpreter then answers (or panics too, caught and reported there: the
//! second evaluation is the price of an answer when only the VM panics).
//!
//! Compiling is in `fast/compile.rs`; rule indexing (copies of a rule
//! without the definitions a value of an input field fails, one per value,
//! compiled beside it) in `fast/guard.rs` and `fast/copies.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use regorus::rvm::vm::VmError;
use regorus::rvm::{Program, RegoVM};
use regorus::{Engine, Value};
use thread_local::ThreadLocal;

mod compile;
mod copies;
mod guard;
mod program;
use compile::compile_indexed;
use copies::Dispatch;
use program::{private_copy, slim};

/// Instructions one decision may execute before it is handed to the interpreter.
pub const MAX_INSTRUCTIONS: usize = 1_000_000;

/// Compiled entry points and a VM per program and thread.
pub struct FastPath {
    programs: Vec<Compiled>,
    /// Entry point name (`data.p.allow`) -> where it runs.
    entries: HashMap<String, Entry>,
    /// Indexed rules: which copy answers for a value.
    dispatch: Vec<Dispatch>,
    data: Value,
    /// Rules whose references were folded to constants (`fold.rs`).
    folded: Vec<String>,
    /// The input field indexed (`input.scope`), and how many copies of
    /// indexed rules compiled, of how many planned.
    indexed: Option<String>,
    copies: (usize, usize),
}

/// One program and its VMs.
struct Compiled {
    program: Arc<Program>,
    vms: ThreadLocal<RefCell<RegoVM>>,
}

/// An entry point: its program, its index in that program, and for an
/// indexed rule, its dispatch.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    program: usize,
    index: usize,
    dispatch: Option<usize>,
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
        let folded = super::fold::fold(engine, data).and_then(|f| {
            let (programs, rejected, index) = compile_indexed(f.engine, entries, data).ok()?;
            Some((programs, rejected, f.rules, f.references, index))
        });
        let (programs, mut rejected, folded, index) = match folded {
            Some((programs, rejected, rules, references, index)) => {
                tracing::debug!(
                    rules = rules.len(),
                    references,
                    "constant rules folded for the fast path"
                );
                (programs, rejected, rules, index)
            }
            None => match compile_indexed(engine.clone(), entries, data) {
                Ok((programs, rejected, index)) => (programs, rejected, Vec::new(), index),
                Err(rejected) => return (None, rejected),
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
                    dispatch: None,
                };
                names.insert(name.clone(), entry);
            }
            compiled.push(Compiled {
                program,
                vms: ThreadLocal::new(),
            });
        }
        let (mut dispatch, mut indexed, mut counts) = (Vec::new(), None, (0, 0));
        if let Some((guards, documents)) = index {
            // The copies are no entry points of their own.
            let copies: HashMap<String, Entry> = documents
                .iter()
                .filter_map(|d| Some((d.clone(), names.remove(d)?)))
                .collect();
            for rule in &guards.rules {
                counts.1 += rule.copies.len();
                let Some(entry) = names.get_mut(&rule.document()) else {
                    continue;
                };
                if let Some(rule_dispatch) = Dispatch::new(&guards.path, rule, &copies) {
                    entry.dispatch = Some(dispatch.len());
                    dispatch.push(rule_dispatch);
                    counts.0 += (0..rule.copies.len())
                        .filter(|&n| copies.contains_key(&rule.copy_document(n)))
                        .count();
                }
            }
            if !dispatch.is_empty() {
                let field = format!("input.{}", guards.path.join("."));
                tracing::debug!(%field, copies = counts.0, "rules indexed for the fast path");
                indexed = Some(field);
            }
        }
        let fast = FastPath {
            programs: compiled,
            entries: names,
            dispatch,
            data: data.clone(),
            folded,
            indexed,
            copies: counts,
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

    /// The input field the rules are indexed on (`input.scope`), if any.
    pub fn indexed(&self) -> Option<&str> {
        self.indexed.as_deref()
    }

    /// Copies of indexed rules: how many compiled and in use, of how many
    /// planned.
    pub fn indexed_copies(&self) -> (usize, usize) {
        self.copies
    }

    /// Runs `entry` with `input` on this thread's VM for its program (for
    /// an indexed rule, the copy for the input).
    pub fn evaluate(
        &self,
        entry: Entry,
        input: Value,
        time_limit: Option<std::time::Duration>,
    ) -> Result<Value, FastFailure> {
        let entry = match entry.dispatch.and_then(|d| self.dispatch.get(d)) {
            Some(dispatch) => dispatch.pick(&input).unwrap_or(entry),
            None => entry,
        };
        let compiled = self
            .programs
            .get(entry.program)
            .ok_or_else(|| FastFailure::Other("no such program".into()))?;
        let cell = compiled.vms.get_or(|| RefCell::new(self.new_vm(compiled)));
        let mut vm = cell
            .try_borrow_mut()
            .map_err(|_| FastFailure::Other("vm in use".into()))?;
        let run = super::eval::catch_panic(|| {
            vm.set_execution_timer_config(time_limit.map(super::eval::time_limit));
            vm.set_input(input);
            vm.execute_entry_point_by_index(entry.index)
        });
        let value = match run {
            Ok(result) => result.map_err(|e| match e {
                VmError::TimeLimitExceeded { .. } => FastFailure::TimeLimit,
                e => FastFailure::Other(e.to_string()),
            })?,
            // Stopped mid-run: the next decision gets a fresh VM, and the
            // interpreter answers this one (or reports the panic).
            Err(message) => {
                *vm = self.new_vm(compiled);
                return Err(FastFailure::Other(format!("regorus panicked: {message}")));
            }
        };
        // The VM can leave `undefined` inside a collection (a comprehension
        // over a function that is undefined for some element), where OPA drops
        // the element: let the interpreter answer those.
        if value != Value::Undefined && holds_undefined(&value) {
            return Err(FastFailure::Other("result holds an undefined value".into()));
        }
        Ok(value)
    }

    /// A VM for `compiled`, on a private copy of its program, with the data.
    fn new_vm(&self, compiled: &Compiled) -> RegoVM {
        let mut vm = RegoVM::new();
        vm.load_program(Arc::new(private_copy(&compiled.program)));
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        // Checked in `build`: the same data loaded into the same program.
        let _ = vm.set_data(self.data.clone());
        vm
    }
}

/// Why the fast path did not answer a decision.
#[derive(Debug)]
pub enum FastFailure {
    /// The time limit ran out: the decision fails (the interpreter would
    /// only take longer).
    TimeLimit,
    /// Anything else (the instruction limit, a VM error): the interpreter
    /// answers instead.
    Other(String),
}

impl std::fmt::Display for FastFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FastFailure::TimeLimit => f.write_str("time limit exceeded"),
            FastFailure::Other(reason) => f.write_str(reason),
        }
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
