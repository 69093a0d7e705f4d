//! Compiling a snapshot's fast path: the entry points into one program per
//! package (split where a package's do not compile together), with the
//! copies of its indexed rules.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;
use regorus::{Engine, Value};

use super::copies;
use super::guard::{self, Guards};
use super::Rejected;

/// The indexed rules, and the documents of the copies added (none when
/// they did not compile; `fast.rs` drops those that did not compile one
/// by one).
pub(super) type Index = Option<(Guards, Vec<String>)>;

/// Programs compiled, the entry points rejected, and the index.
pub(super) type Programs = (Vec<Arc<Program>>, Vec<Rejected>, Index);

/// Compiles `entries` as [`compile`] does, with the copies of the rules the
/// index plans for them (see [`index`]); without them if they do not
/// compile (the index is an optimisation, never a cause to lose the fast
/// path). A copy that does not compile is logged, and its rule answers for
/// it. `Err`: not one entry point compiled.
pub(super) fn compile_indexed(
    engine: Engine,
    entries: &[String],
    data: &Value,
) -> Result<Programs, Vec<Rejected>> {
    let Some((indexed, guards, copies)) = index(&engine, entries, data) else {
        return compile_plain(engine, entries, None);
    };
    let all: Vec<String> = entries.iter().chain(&copies).cloned().collect();
    // The indexed rules and their copies in programs of their own: in the
    // package's, they would make every decision on its other rules pay for
    // their rules and registers (the VM resets them all per decision;
    // `filter` 3-10% slower on the default set).
    // (Only rules whose copies were added.)
    let rules: Vec<String> = guards
        .rules
        .iter()
        .filter(|r| copies.contains(&r.copy_document(0)))
        .map(|r| r.document())
        .collect();
    let apart: HashSet<&str> = copies.iter().chain(&rules).map(String::as_str).collect();
    let (programs, rejected) = compile(indexed, &all, &apart);
    if programs.is_empty() {
        tracing::info!("rules not indexed: the policy set does not compile with the copies");
        return compile_plain(engine, entries, Some((guards, Vec::new())));
    }
    let (lost, rejected): (Vec<Rejected>, Vec<Rejected>) = rejected
        .into_iter()
        .partition(|r| copies.contains(&r.entry));
    for copy in &lost {
        tracing::info!(
            entry = %copy.entry,
            reason = %copy.reason,
            "indexed copy not compiled; its rule answers for it"
        );
    }
    Ok((programs, rejected, Some((guards, copies))))
}

/// [`compile`] without copies; `index` as given. `Err`: not one entry point
/// compiled.
fn compile_plain(
    engine: Engine,
    entries: &[String],
    index: Index,
) -> Result<Programs, Vec<Rejected>> {
    match compile(engine, entries, &HashSet::new()) {
        (programs, rejected) if !programs.is_empty() => Ok((programs, rejected, index)),
        (_, rejected) => Err(rejected),
    }
}

/// Compiles every entry point of `entries` that the RVM accepts: one
/// program per package (the entry points with the same path up to their
/// last segment; those of `apart` in a second one), split for a package
/// whose entry points do not compile together.
fn compile(
    mut engine: Engine,
    entries: &[String],
    apart: &HashSet<&str>,
) -> (Vec<Arc<Program>>, Vec<Rejected>) {
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
    let mut packages: BTreeMap<(&str, bool), Vec<&str>> = BTreeMap::new();
    for entry in entries {
        let package = entry.rsplit_once('.').map_or("", |(package, _)| package);
        let key = (package, apart.contains(entry.as_str()));
        packages.entry(key).or_default().push(entry);
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

/// The rule index of the modules `engine` compiles, for the entry points
/// `entries`: a copy of the engine with the indexed rules' copies added,
/// the index, and the copies' documents; `None` when nothing is indexed.
fn index(
    engine: &Engine,
    entries: &[String],
    data: &Value,
) -> Option<(Engine, Guards, Vec<String>)> {
    let mut indexed = engine.clone();
    let modules = indexed.get_modules().to_vec();
    let mut guards = guard::analyse(&modules)?;
    // Only rules the fast path answers (not those left to the interpreter),
    // in packages whose data has no key a copy could be named (the data
    // would not load).
    guards.rules.retain(|rule| {
        let at = (rule.package.iter()).fold(data, |at, key| &at[&Value::from(key.as_str())]);
        let taken = match at {
            Value::Object(fields) => fields.keys().any(|k| {
                k.as_string()
                    .is_ok_and(|k| k.starts_with(guard::COPY_PREFIX))
            }),
            _ => false,
        };
        !taken && entries.contains(&rule.document())
    });
    if guards.rules.is_empty() {
        return None;
    }
    let documents = copies::add(&mut indexed, &modules, &guards);
    Some((indexed, guards, documents))
}
