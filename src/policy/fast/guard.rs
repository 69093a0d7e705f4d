//! Rule indexing, the analysis: which rule definitions a decision can skip
//! from one field of its input.
//!
//! Policies written per scope have many definitions of one rule, each
//! guarded by a test of the same input field:
//!
//! ```rego
//! allow if { input.scope == "create"; ... }
//! allow if { input.scope in {"view", "update"}; ... }
//! ```
//!
//! regorus's VM tries every definition in turn, and one whose guard fails
//! still costs a frame, a body and the test (2-3k instructions; 21 of them
//! on a denied `tasks/allow`). OPA's evaluator indexes rules on such tests
//! and never enters those bodies. Here the same is done before compiling:
//! for each value the field can be compared with, the package's program is
//! compiled without the definitions whose guard that value fails (see
//! `variant.rs`); a value no guard names gets the program without any
//! guarded definition.
//!
//! A guard is one of the leading statements of a rule's only body (no
//! `else`) that compares `input.<path>` with strings fixed in the text
//! (after folding): `input.p == "s"`, `"s" == input.p`, `input.p = "s"`,
//! `input.p in {"s", ...}` or `in [...]`, where the set may be a union or
//! intersection of such sets. Such a body fails for any input whose field is
//! not one of those strings (a missing field, another type), before any
//! other statement runs: only guards before it, and they cannot fail with
//! an error, so the full program and a variant fail the same way (a guard
//! after a statement that can raise an error is not used). The RVM refuses
//! `with`, so no program the fast path runs can change the input in
//! between. A rule keeps at least one definition (a rule with none would
//! not exist). The field indexed is the one the most definitions test (the
//! least path on a tie); one field per policy set.
//!
//! A variant holds only the package's entry points whose documents have
//! definitions left out (`allow`, say): the others gain nothing from it and
//! stay on the full program, which keeps the variants small.

use std::collections::{BTreeSet, HashMap, HashSet};

use regorus::unstable::{AssignOp, BinOp, BoolOp, Expr, Literal, Module, Ref, Rule, RuleHead};

use crate::policy::fold::ast::static_path;
use crate::policy::path::DataPath;
use crate::policy::rule_index::ref_segments;

/// A rule definition to leave out: its module and byte range there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Cut {
    pub module: usize,
    pub start: usize,
    pub end: usize,
}

/// The index of a policy set: the input field, and per package the
/// variants of its program.
#[derive(Debug, Default)]
pub(super) struct Guards {
    /// The input field's path (`["scope"]` for `input.scope`).
    pub path: Vec<String>,
    /// Package (`data.tasks`, as entry points render it) -> its plan.
    pub packages: HashMap<String, Plan>,
}

/// The variants of one package's program.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Field value -> its variant, for the values some guard names
    /// (`None`: the full program, nothing can be left out).
    pub values: HashMap<String, Option<usize>>,
    /// The variant for any other value (or no value).
    pub other: usize,
    /// The definitions each variant leaves out (sorted, never empty).
    pub variants: Vec<Vec<Cut>>,
    /// The documents (`data.p.allow`) with definitions left out: the
    /// entry points variants are compiled for.
    pub documents: BTreeSet<String>,
}

/// One definition of a rule with a single body.
struct Definition {
    cut: Cut,
    /// Package and head text: the definitions of one rule.
    rule: (usize, String),
    /// The rule's document (`data.p.allow`), when its head is static.
    document: Option<String>,
    /// Guarded field -> the strings its guard accepts.
    guards: HashMap<Vec<String>, BTreeSet<String>>,
}

/// Analyses the modules the fast path compiles (parsed from the texts the
/// cuts apply to). `None`: nothing to index.
pub(super) fn analyse(modules: &[Ref<Module>]) -> Option<Guards> {
    // Packages by their segments (two spellings never merge).
    let mut packages: Vec<Vec<String>> = Vec::new();
    let mut definitions = Vec::new();
    // (package, head text) -> how many definitions, of any form.
    let mut counts: HashMap<(usize, String), usize> = HashMap::new();
    for (index, module) in modules.iter().enumerate() {
        let Some(package) = ref_segments(&module.package.refr) else {
            continue;
        };
        let id = match packages.iter().position(|p| *p == package) {
            Some(id) => id,
            None => {
                packages.push(package);
                packages.len() - 1
            }
        };
        let text = module.package.span.source.get_contents();
        let starts: Vec<usize> = module
            .policy
            .iter()
            .map(|r| r.span().start as usize)
            .chain([text.len()])
            .collect();
        for (at, rule) in module.policy.iter().enumerate() {
            let Rule::Spec { span, head, bodies } = rule.as_ref() else {
                continue;
            };
            let refr = match head {
                RuleHead::Compr { refr, .. }
                | RuleHead::Set { refr, .. }
                | RuleHead::Func { refr, .. } => refr,
            };
            let name = (id, refr.span().text().to_string());
            let (mut head, complete) = static_path(refr);
            let document = complete.then(|| {
                let mut segments = packages[id].clone();
                segments.append(&mut head);
                DataPath::from_segments(segments).to_string()
            });
            *counts.entry(name.clone()).or_default() += 1;
            let [body] = bodies.as_slice() else {
                continue;
            };
            if body.is_else {
                continue;
            }
            // The leading guards (scheduling keeps them first: they bind
            // no variable).
            let mut guards: HashMap<Vec<String>, BTreeSet<String>> = HashMap::new();
            for stmt in &body.query.stmts {
                let found = match &stmt.literal {
                    Literal::Expr { expr, .. } if stmt.with_mods.is_empty() => guard(expr),
                    _ => None,
                };
                let Some((path, accepted)) = found else {
                    break;
                };
                match guards.get_mut(&path) {
                    Some(set) => set.retain(|s| accepted.contains(s)),
                    None => {
                        guards.insert(path, accepted);
                    }
                }
            }
            if !guards.is_empty() {
                // A rule's span can stop short of its last token (before a
                // closing quote): the cut runs to the end of that line, or
                // to the next rule if that comes first.
                let end = span.end as usize;
                let end = text
                    .get(end..)
                    .and_then(|rest| rest.find('\n'))
                    .map_or(text.len(), |n| end + n)
                    .min(starts[at + 1]);
                definitions.push(Definition {
                    cut: Cut {
                        module: index,
                        start: span.start as usize,
                        end,
                    },
                    rule: name,
                    document,
                    guards,
                });
            }
        }
    }
    // The field most definitions test (the first in order on a tie).
    let mut tally: HashMap<&Vec<String>, usize> = HashMap::new();
    for definition in &definitions {
        for path in definition.guards.keys() {
            *tally.entry(path).or_default() += 1;
        }
    }
    let (path, count) = tally
        .into_iter()
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))?;
    // (Most definitions; on a tie, the least path.)
    if count < 2 {
        return None;
    }
    let path = path.clone();
    let mut guards = Guards {
        path: path.clone(),
        packages: HashMap::new(),
    };
    for (id, package) in packages.iter().enumerate() {
        let guarded: Vec<(&Definition, &BTreeSet<String>)> = definitions
            .iter()
            .filter(|d| d.rule.0 == id)
            .filter_map(|d| d.guards.get(&path).map(|accepted| (d, accepted)))
            .collect();
        if let Some(plan) = plan(&guarded, &counts) {
            let package = DataPath::from_segments(package.clone()).to_string();
            guards.packages.insert(package, plan);
        }
    }
    (!guards.packages.is_empty()).then_some(guards)
}

/// The variants of one package from its guarded definitions; `None` when
/// no value can leave anything out.
fn plan(
    guarded: &[(&Definition, &BTreeSet<String>)],
    counts: &HashMap<(usize, String), usize>,
) -> Option<Plan> {
    let named: BTreeSet<&String> = guarded.iter().flat_map(|(_, a)| a.iter()).collect();
    let mut plan = Plan {
        documents: guarded
            .iter()
            .filter_map(|(d, _)| d.document.clone())
            .collect(),
        ..Plan::default()
    };
    let mut seen: HashMap<Vec<Cut>, usize> = HashMap::new();
    let mut variant = |value: Option<&str>| -> Option<usize> {
        let mut cuts: Vec<&Definition> = guarded
            .iter()
            .filter(|(_, accepted)| value.is_none_or(|v| !accepted.contains(v)))
            .map(|(d, _)| *d)
            .collect();
        // A rule keeps one definition when all of them would go.
        let mut left: HashMap<&(usize, String), usize> = HashMap::new();
        for d in &cuts {
            *left.entry(&d.rule).or_insert(counts[&d.rule]) -= 1;
        }
        let mut kept: HashSet<&(usize, String)> = HashSet::new();
        cuts.retain(|d| left[&d.rule] > 0 || !kept.insert(&d.rule));
        let mut cuts: Vec<Cut> = cuts.iter().map(|d| d.cut).collect();
        cuts.sort();
        if cuts.is_empty() {
            return None;
        }
        let next = plan.variants.len();
        let id = *seen.entry(cuts.clone()).or_insert(next);
        if id == next {
            plan.variants.push(cuts);
        }
        Some(id)
    };
    let mut values = HashMap::new();
    for value in named {
        values.insert(value.clone(), variant(Some(value)));
    }
    let other = variant(None)?;
    plan.values = values;
    plan.other = other;
    Some(plan)
}

/// `input.<path>` compared with fixed strings: the path and the strings.
fn guard(expr: &Expr) -> Option<(Vec<String>, BTreeSet<String>)> {
    let (field, strings) = match expr {
        Expr::BoolExpr {
            op: BoolOp::Eq,
            lhs,
            rhs,
            ..
        }
        | Expr::AssignExpr {
            op: AssignOp::Eq,
            lhs,
            rhs,
            ..
        } => match input_path(lhs) {
            Some(path) => (path, string(rhs).map(|s| BTreeSet::from([s]))),
            None => (input_path(rhs)?, string(lhs).map(|s| BTreeSet::from([s]))),
        },
        Expr::Membership {
            key: None,
            value,
            collection,
            ..
        } => {
            let strings = match collection.as_ref() {
                Expr::Array { items, .. } => items.iter().map(|i| string(i)).collect(),
                other => string_set(other),
            };
            (input_path(value)?, strings)
        }
        _ => return None,
    };
    Some((field, strings?))
}

/// `input.a.b` -> `["a", "b"]`.
fn input_path(expr: &Expr) -> Option<Vec<String>> {
    let (mut path, complete) = static_path(expr);
    (complete && path.len() > 1 && path[0] == "input").then(|| path.split_off(1))
}

fn string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|s| s.to_string())
        }
        _ => None,
    }
}

/// A set of strings written out: a set literal, or a union or intersection
/// of them.
fn string_set(expr: &Expr) -> Option<BTreeSet<String>> {
    match expr {
        Expr::Set { items, .. } => items.iter().map(|i| string(i)).collect(),
        Expr::BinExpr { op, lhs, rhs, .. } => {
            let (lhs, rhs) = (string_set(lhs)?, string_set(rhs)?);
            Some(match op {
                BinOp::Union => lhs.union(&rhs).cloned().collect(),
                BinOp::Intersection => lhs.intersection(&rhs).cloned().collect(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guards(text: &str) -> Option<Guards> {
        let mut engine = regorus::Engine::new();
        engine.add_policy("p.rego".into(), text.into()).unwrap();
        analyse(&engine.get_modules().to_vec())
    }

    /// The cut rules' texts for each value, and for any other value.
    fn cut_texts(text: &str, guards: &Guards, package: &str) -> Vec<(String, Vec<String>)> {
        let plan = &guards.packages[package];
        let texts = |id: Option<usize>| -> Vec<String> {
            id.map_or(Vec::new(), |id| {
                plan.variants[id]
                    .iter()
                    .map(|c| text[c.start..c.end].trim().to_string())
                    .collect()
            })
        };
        let mut out: Vec<(String, Vec<String>)> = plan
            .values
            .iter()
            .map(|(v, id)| (v.clone(), texts(*id)))
            .collect();
        out.sort();
        out.push(("*".into(), texts(Some(plan.other))));
        out
    }

    #[test]
    fn definitions_a_value_fails_are_cut_and_a_rule_keeps_one() {
        let text = "package p\nimport rego.v1\n\
            a if input.scope == \"x\"\n\
            a if { \"y\" = input.scope; input.ok }\n\
            b if input.scope in {\"x\", \"z\"} | {\"w\"}\n\
            b if input.other\n";
        let g = guards(text).unwrap();
        assert_eq!(g.path, ["scope"]);
        let a_x = "a if input.scope == \"x\"".to_string();
        let a_y = "a if { \"y\" = input.scope; input.ok }".to_string();
        let b = "b if input.scope in {\"x\", \"z\"} | {\"w\"}".to_string();
        assert_eq!(
            cut_texts(text, &g, "data.p"),
            [
                ("w".into(), vec![a_y.clone()]),
                ("x".into(), vec![a_y.clone()]),
                ("y".into(), vec![a_x.clone(), b.clone()]),
                ("z".into(), vec![a_y.clone()]),
                // `a` keeps its first definition; `b` has an unguarded one.
                ("*".into(), vec![a_y, b]),
            ]
        );
        // Values that cut the same definitions share a variant.
        assert_eq!(g.packages["data.p"].variants.len(), 3);
    }

    #[test]
    fn only_plain_comparisons_with_fixed_strings_are_guards() {
        for body in [
            "not input.scope == \"x\"",
            "input.scope != \"x\"",
            "input.scope == 1",
            "input.scope == input.other",
            "input.scope in {\"x\", input.y}",
            "input.scope in {\"x\"} - {\"y\"}",
            "some x in {\"a\"}; input.scope == x",
            "input == \"x\"",
            "data.scope == \"x\"",
        ] {
            let text = format!("package p\nimport rego.v1\nr if {{ {body} }}\nr if {{ {body} }}\n");
            assert!(guards(&text).is_none(), "{body}");
        }
    }

    #[test]
    fn a_guard_after_a_statement_that_can_fail_otherwise_is_not_used() {
        // `input.n + 1` raises an error for a string `n` in the full
        // program; a variant must not skip that body and answer instead.
        let text = "package p\nimport rego.v1\n\
            r if { input.n + 1 > 0; input.scope == \"a\" }\n\
            r if { input.scope == \"b\"; input.n + 1 > 0 }\n\
            r if input.scope == \"c\"\n";
        let g = guards(text).unwrap();
        let cut = cut_texts(text, &g, "data.p");
        assert!(
            cut.iter().all(|(_, texts)| texts
                .iter()
                .all(|t| !t.contains("input.n + 1 > 0; input.scope"))),
            "{cut:?}"
        );
        assert_eq!(
            g.packages["data.p"].documents,
            BTreeSet::from(["data.p.r".to_string()])
        );
    }

    #[test]
    fn else_chains_and_several_bodies_are_not_indexed() {
        let chain = "package p\nimport rego.v1\n\
            r := 1 if input.scope == \"x\" else := 2 if input.scope == \"y\"\n\
            r := 3 if input.scope == \"z\"\n";
        assert!(
            guards(chain).is_none(),
            "only the definition without `else` is guarded"
        );
    }
}
