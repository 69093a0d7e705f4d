//! Rule indexing, the programs: per package, the variants planned by
//! `guard.rs`, compiled on first use by one background thread per snapshot
//! and chosen per decision from the input field's value.
//!
//! Until a variant is compiled (a few milliseconds), its decisions run on
//! the package's full program, which gives the same answers; compiling
//! every variant up front would multiply start-up time and memory by the
//! number of values the policies name, most of which a deployment may
//! never send. A variant that fails to compile is never retried, and its
//! decisions keep the full program.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use regorus::languages::rego::compiler::Compiler;
use regorus::{Engine, Value};

use super::guard::{Cut, Plan};
use super::program::slim;
use super::Compiled;

/// What every variant is compiled from: the module texts the cuts apply
/// to, and the data.
pub(super) struct Source {
    /// `(id, text)` of each module.
    pub modules: Vec<(String, String)>,
    /// How many rules each module has.
    pub rules: Vec<usize>,
    pub data: Value,
}

/// The variants of one program.
pub(super) struct Variants {
    /// The input field as object keys.
    path: Vec<Value>,
    /// Field value -> its variant (`None`: the full program); foldhash,
    /// seeded per table, as the value comes from the request.
    values: HashMap<String, Option<usize>, foldhash::fast::RandomState>,
    other: usize,
    slots: Vec<Arc<Slot>>,
    /// The entry points variants are compiled with (those of the full
    /// program whose documents have definitions left out).
    entries: Arc<[String]>,
    /// The full program's entry points, in its order.
    all: Arc<[String]>,
    /// Per entry point index of the full program: whether variants hold it.
    members: Vec<bool>,
}

/// One variant: its cuts, and its program once compiled.
pub(super) struct Slot {
    cuts: Vec<Cut>,
    requested: AtomicBool,
    program: OnceLock<Option<Specialized>>,
}

/// A compiled variant: the program and its VMs, and for each of the full
/// program's entry point indexes, the variant's (`None`: not in it).
pub(super) struct Specialized {
    pub compiled: Compiled,
    pub indexes: Vec<Option<usize>>,
}

/// A variant to compile, for the background thread.
pub(super) struct Job {
    source: Arc<Source>,
    slot: Arc<Slot>,
    entries: Arc<[String]>,
    all: Arc<[String]>,
}

impl Variants {
    /// The variants of the program with entry points `all` (in its order);
    /// `None` when none of them has definitions left out.
    pub(super) fn new(path: &[String], plan: Plan, all: Vec<String>) -> Option<Variants> {
        let members: Vec<bool> = all.iter().map(|e| plan.documents.contains(e)).collect();
        let entries: Vec<String> = all
            .iter()
            .zip(&members)
            .filter(|(_, m)| **m)
            .map(|(e, _)| e.clone())
            .collect();
        if entries.is_empty() {
            return None;
        }
        Some(Variants {
            path: path.iter().map(|s| Value::from(s.as_str())).collect(),
            values: plan.values.into_iter().collect(),
            other: plan.other,
            slots: plan
                .variants
                .into_iter()
                .map(|cuts| {
                    Arc::new(Slot {
                        cuts,
                        requested: AtomicBool::new(false),
                        program: OnceLock::new(),
                    })
                })
                .collect(),
            entries: entries.into(),
            all: all.into(),
            members,
        })
    }

    /// Whether variants hold the full program's entry point `index`.
    pub(super) fn holds(&self, index: usize) -> bool {
        self.members.get(index).copied().unwrap_or(false)
    }

    /// The variant for `input`: compiled, or `Err` with the slot when it
    /// is not (yet), or `Ok(None)` when the full program is the one.
    pub(super) fn pick(&self, input: &Value) -> Result<Option<&Specialized>, &Arc<Slot>> {
        let mut at = input;
        for key in &self.path {
            at = match at {
                Value::Object(fields) => fields.get(key).unwrap_or(&Value::Undefined),
                _ => &Value::Undefined,
            };
        }
        let id = match at {
            Value::String(s) => match self.values.get(s.as_ref()) {
                Some(Some(id)) => *id,
                Some(None) => return Ok(None),
                None => self.other,
            },
            _ => self.other,
        };
        let slot = &self.slots[id];
        match slot.program.get() {
            Some(compiled) => Ok(compiled.as_ref()),
            None => Err(slot),
        }
    }

    /// A job for `slot`, the first time only (a read first: decisions
    /// keep asking until the variant is ready).
    pub(super) fn job(&self, slot: &Arc<Slot>, source: &Arc<Source>) -> Option<Job> {
        if slot.requested.load(Ordering::Relaxed) || slot.requested.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Job {
            source: source.clone(),
            slot: slot.clone(),
            entries: self.entries.clone(),
            all: self.all.clone(),
        })
    }

    /// Compiles every variant not compiled yet, on this thread, and waits
    /// for those the background thread is compiling.
    pub(super) fn compile_all(&self, source: &Arc<Source>) {
        for slot in &self.slots {
            match self.job(slot, source) {
                Some(job) => job.run(),
                None => {
                    slot.program.wait();
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// How many variants are compiled and ready.
    pub(super) fn ready(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.program.get(), Some(Some(_))))
            .count()
    }
}

impl Job {
    /// Compiles the variant and stores it (or that it failed); nothing
    /// when its snapshot is gone.
    pub(super) fn run(self) {
        if Arc::strong_count(&self.slot) == 1 {
            return;
        }
        let started = std::time::Instant::now();
        let compiled = crate::policy::eval::catch_panic(|| compile(&self))
            .unwrap_or_else(|panic| Err(format!("regorus panicked: {panic}")));
        match &compiled {
            Ok(_) => tracing::debug!(
                entry = %self.entries[0],
                left_out = self.slot.cuts.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "indexed program compiled"
            ),
            Err(reason) => tracing::info!(
                entry = %self.entries[0],
                %reason,
                "indexed program not compiled; the full program answers"
            ),
        }
        self.give_up_unless(compiled.ok());
    }

    /// Stores `compiled` (`None`: the full program answers for good).
    pub(super) fn give_up_unless(self, compiled: Option<Specialized>) {
        let _ = self.slot.program.set(compiled);
    }
}

/// Starts the background thread that runs jobs until `jobs` closes (the
/// snapshot is gone).
pub(super) fn spawn_worker() -> Option<mpsc::Sender<Job>> {
    let (sender, jobs) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("regent-index".into())
        .spawn(move || {
            for job in jobs {
                job.run();
            }
        })
        .ok()?;
    Some(sender)
}

fn compile(job: &Job) -> Result<Specialized, String> {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(false);
    let mut expected = job.source.rules.clone();
    for (index, (id, text)) in job.source.modules.iter().enumerate() {
        let mut text = text.clone();
        for cut in job.slot.cuts.iter().rev().filter(|c| c.module == index) {
            text.replace_range(cut.start..cut.end, "");
            expected[index] -= 1;
        }
        engine
            .add_policy(id.clone(), text)
            .map_err(|e| e.to_string())?;
    }
    // Each cut took exactly one rule (the modules keep their order).
    let parsed: Vec<usize> = engine
        .get_modules()
        .iter()
        .map(|m| m.policy.len())
        .collect();
    if parsed != expected {
        return Err("a left-out definition did not cut as one rule".into());
    }
    engine
        .add_data(job.source.data.clone())
        .map_err(|e| e.to_string())?;
    let first = regorus::Rc::from(job.entries[0].as_str());
    let policy = engine
        .compile_with_entrypoint(&first)
        .map_err(|e| format!("{e:#}"))?;
    let names: Vec<&str> = job.entries.iter().map(|s| s.as_str()).collect();
    let program = Compiler::compile_from_policy(&policy, &names).map_err(|e| e.to_string())?;
    let program = slim(program);
    for name in job.entries.iter() {
        if !program.entry_points.contains_key(name) {
            return Err(format!("entry point {name} missing"));
        }
    }
    let indexes = job
        .all
        .iter()
        .map(|name| program.entry_points.get_index_of(name))
        .collect();
    // The data must load into it, as into the full program.
    let mut probe = regorus::rvm::RegoVM::new();
    probe.load_program(program.clone());
    probe
        .set_data(job.source.data.clone())
        .map_err(|e| format!("data: {e}"))?;
    Ok(Specialized {
        compiled: Compiled::new(program),
        indexes,
    })
}
