//! Compiling a snapshot's fast path: the entry points into one program per
//! package (split where a package's do not compile together), and the rule
//! index the package programs' variants are planned from.

use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::Program;
use regorus::{Engine, Value};

use super::guard;
use super::variant::Source;
use super::Rejected;

/// Compiles every entry point of `entries` that the RVM accepts: one
/// program per package (the entry points with the same path up to their
/// last segment), split for a package whose entry points do not compile
/// together.
pub(super) fn compile(
    mut engine: Engine,
    entries: &[String],
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

/// The rule index of the modules `engine` compiles, and what its variants
/// are compiled from.
pub(super) fn index(engine: &Engine, data: &Value) -> Option<(guard::Guards, Arc<Source>)> {
    let modules = engine.clone().get_modules().to_vec();
    let guards = guard::analyse(&modules)?;
    let source = Source {
        modules: modules
            .iter()
            .map(|m| {
                let source = &m.package.span.source;
                (source.get_path().clone(), source.get_contents().clone())
            })
            .collect(),
        rules: modules.iter().map(|m| m.policy.len()).collect(),
        data: data.clone(),
    };
    Some((guards, Arc::new(source)))
}
