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
//! for each value the field can be compared with, the rule gets a copy
//! without the definitions whose guard that value fails, compiled beside it
//! (see `copies.rs`); a value no guard names gets the copy without any
//! guarded definition.
//!
//! A guard is one of the leading statements of a rule's only body (no
//! `else`) that compares `input.<path>` with strings fixed in the text
//! (after folding): `input.p == "s"`, `"s" == input.p`, `input.p = "s"`,
//! `input.p in {"s", ...}` or `in [...]`, where the set may be a union or
//! intersection of such sets. Such a body fails for any input whose field is
//! not one of those strings (a missing field, another type), before any
//! other statement runs: only guards before it, and they cannot fail with
//! an error, so the rule and its copy fail the same way (a guard after a
//! statement that can raise an error is not used). The RVM refuses `with`,
//! so no program the fast path runs can change the input in between. A
//! copy keeps at least one definition (a rule with none would not exist;
//! a `default` is one). The field indexed is the one the most definitions
//! test (the least path on a tie); one field per policy set.
//!
//! Indexed are rules whose heads are a plain name (`allow`, not `a.b` or
//! `p[x]`; no function) and that no rule of another package extends (`p.allow`
//! in the parent package), in packages no rule reads whole (`data.p`,
//! `data.p[k]`, `data`, an import alias of `data.p` standing alone): those
//! would see the copies. Nothing is indexed when some rule reads `data`
//! itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regorus::unstable::{AssignOp, BinOp, BoolOp, Expr, Literal, Module, Ref, Rule, RuleHead};

use crate::policy::fold::ast::static_path;
use crate::policy::path::DataPath;
use crate::policy::rule_index::ref_segments;

/// Copies are named `<COPY_PREFIX><n>_<name>` (a package where a rule, of
/// any package, or a data key already has such a name is not indexed).
pub(super) const COPY_PREFIX: &str = "__regent_ix";

/// One definition of a rule: its module, the byte range there (to the next
/// rule), and where its head's name starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Definition {
    pub module: usize,
    pub start: usize,
    pub end: usize,
    pub name_at: usize,
}

/// The index of a policy set: the input field, and the rules indexed on it.
#[derive(Debug, Default)]
pub(super) struct Guards {
    /// The input field's path (`["scope"]` for `input.scope`).
    pub path: Vec<String>,
    pub rules: Vec<Indexed>,
}

/// One indexed rule and its copies.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Indexed {
    /// The package's segments below `data`, and the rule's name.
    pub package: Vec<String>,
    pub name: String,
    /// Every definition (`default` included), in module order.
    pub definitions: Vec<Definition>,
    /// Field value -> its copy, for the values some guard names (`None`:
    /// the rule itself, no definition can be left out).
    pub values: HashMap<String, Option<usize>>,
    /// The copy for any other value (or no value).
    pub other: Option<usize>,
    /// Per copy, the definitions it keeps (indexes into `definitions`).
    pub copies: Vec<Vec<usize>>,
}

impl Indexed {
    /// The rule's document (`data.p.allow`).
    pub fn document(&self) -> String {
        self.document_named(&self.name)
    }

    /// Copy `n`'s name (`__regent_ix3_allow`).
    pub fn copy_name(&self, n: usize) -> String {
        format!("{COPY_PREFIX}{n}_{}", self.name)
    }

    /// Copy `n`'s document (`data.p.__regent_ix3_allow`).
    pub fn copy_document(&self, n: usize) -> String {
        self.document_named(&self.copy_name(n))
    }

    fn document_named(&self, name: &str) -> String {
        let mut segments = self.package.clone();
        segments.push(name.to_string());
        DataPath::from_segments(segments).to_string()
    }
}

/// A definition of a rule whose head is a plain name, and its leading
/// guards.
struct Head {
    definition: Definition,
    /// Guarded field -> the strings its guard accepts.
    guards: HashMap<Vec<String>, BTreeSet<String>>,
}

/// Analyses the modules the fast path compiles (parsed from import-resolved
/// texts). `None`: nothing to index.
pub(super) fn analyse(modules: &[Ref<Module>]) -> Option<Guards> {
    // What rules read whole (`data.p`, `data.p[k]`).
    let mut refs: Vec<Vec<String>> = Vec::new();
    // Every rule's path below `data`, as far as it is static (package and
    // head: `package a` with `p.allow if ...` is `a.p.allow`, as regorus
    // files it).
    let mut paths: Vec<Vec<String>> = Vec::new();
    // Rules whose head is a plain name, by path -> their definitions.
    let mut rules: BTreeMap<Vec<String>, Vec<Head>> = BTreeMap::new();
    // Input field -> how many definitions test it.
    let mut tally: HashMap<Vec<String>, usize> = HashMap::new();
    for (index, module) in modules.iter().enumerate() {
        let Some(package) = ref_segments(&module.package.refr) else {
            continue;
        };
        let source = &module.package.span.source;
        let text = source.get_contents();
        match crate::policy::purity::whole_references(source.get_path(), text) {
            Ok(Some(found)) => refs.extend(found),
            // `data` itself, or a text that does not lex: nothing indexed.
            _ => return None,
        }
        let starts: Vec<usize> = module
            .policy
            .iter()
            .map(|r| r.span().start as usize)
            .chain([text.len()])
            .collect();
        for (at, rule) in module.policy.iter().enumerate() {
            let (refr, function, bodies) = match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => match head {
                    RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => {
                        (refr, false, Some(bodies))
                    }
                    RuleHead::Func { refr, .. } => (refr, true, Some(bodies)),
                },
                Rule::Default { refr, args, .. } => (refr, !args.is_empty(), None),
            };
            let (head, complete) = static_path(refr);
            let mut path = package.clone();
            path.extend(head.iter().cloned());
            paths.push(path.clone());
            let guards = bodies.map(|b| leading_guards(b)).unwrap_or_default();
            for field in guards.keys() {
                *tally.entry(field.clone()).or_default() += 1;
            }
            if complete && head.len() == 1 && !function {
                let definition = Definition {
                    module: index,
                    start: starts[at],
                    end: starts[at + 1],
                    name_at: refr.span().start as usize,
                };
                let head = Head { definition, guards };
                rules.entry(path).or_default().push(head);
            }
        }
    }
    // The field most definitions test (the least path on a tie).
    let (path, count) = tally
        .into_iter()
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.cmp(a)))?;
    if count < 2 {
        return None;
    }
    let overlap = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let indexed: Vec<Indexed> = rules
        .iter()
        .filter(|(document, heads)| {
            let package = &document[..document.len() - 1];
            // Every rule at or above or below its path is one of its
            // definitions (none in another package, with a longer head);
            // no rule reads its package whole; no rule takes a copy's name.
            paths.iter().filter(|p| overlap(p, document)).count() == heads.len()
                && !refs.iter().any(|r| package.starts_with(r))
                && !paths.iter().any(|p| {
                    p.len() > package.len()
                        && p.starts_with(package)
                        && p[package.len()].starts_with(COPY_PREFIX)
                })
        })
        .filter_map(|(document, heads)| {
            let mut rule = plan(heads, &path)?;
            let (name, package) = document.split_last()?;
            rule.package = package.to_vec();
            rule.name = name.clone();
            Some(rule)
        })
        .collect();
    (!indexed.is_empty()).then_some(Guards {
        path,
        rules: indexed,
    })
}

/// The leading guards of a rule's bodies: none unless it has one body, not
/// an `else` (scheduling keeps guards first: they bind no variable).
fn leading_guards(
    bodies: &[regorus::unstable::RuleBody],
) -> HashMap<Vec<String>, BTreeSet<String>> {
    let mut guards: HashMap<Vec<String>, BTreeSet<String>> = HashMap::new();
    let [body] = bodies else {
        return guards;
    };
    if body.is_else {
        return guards;
    }
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
    guards
}

/// The copies of one rule from its definitions; `None` when no value can
/// leave anything out.
fn plan(heads: &[Head], path: &[String]) -> Option<Indexed> {
    fn accepted<'a>(h: &'a Head, path: &[String]) -> Option<&'a BTreeSet<String>> {
        h.guards.get(path)
    }
    let named: BTreeSet<&String> = heads
        .iter()
        .filter_map(|h| accepted(h, path))
        .flatten()
        .collect();
    if named.is_empty() {
        return None;
    }
    let mut rule = Indexed {
        definitions: heads.iter().map(|h| h.definition).collect(),
        ..Indexed::default()
    };
    let mut seen: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut copy = |value: Option<&str>| -> Option<usize> {
        let passes = |h: &Head| match (accepted(h, path), value) {
            (None, _) => true,
            (Some(strings), Some(value)) => strings.contains(value),
            (Some(_), None) => false,
        };
        let mut kept: Vec<usize> = (0..heads.len()).filter(|&i| passes(&heads[i])).collect();
        // A rule with no definition would not exist: a copy keeps one
        // (a `default` alone is enough).
        if kept.is_empty() {
            kept.push(0);
        }
        if kept.len() == heads.len() {
            return None;
        }
        let next = rule.copies.len();
        let id = *seen.entry(kept.clone()).or_insert(next);
        if id == next {
            rule.copies.push(kept);
        }
        Some(id)
    };
    let values: HashMap<String, Option<usize>> = named
        .into_iter()
        .map(|v| (v.clone(), copy(Some(v))))
        .collect();
    let other = copy(None);
    rule.values = values;
    rule.other = other;
    (!rule.copies.is_empty()).then_some(rule)
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

    /// The texts of the definitions `document`'s copy leaves out, for each
    /// value, and for any other value.
    fn cut_texts(text: &str, guards: &Guards, document: &str) -> Vec<(String, Vec<String>)> {
        let rule = guards
            .rules
            .iter()
            .find(|r| r.document() == document)
            .unwrap();
        let texts = |id: Option<usize>| -> Vec<String> {
            id.map_or(Vec::new(), |id| {
                (0..rule.definitions.len())
                    .filter(|i| !rule.copies[id].contains(i))
                    .map(|i| rule.definitions[i])
                    .map(|d| text[d.start..d.end].trim().to_string())
                    .collect()
            })
        };
        let mut out: Vec<(String, Vec<String>)> = rule
            .values
            .iter()
            .map(|(v, id)| (v.clone(), texts(*id)))
            .collect();
        out.sort();
        out.push(("*".into(), texts(rule.other)));
        out
    }

    #[test]
    fn definitions_a_value_fails_are_left_out_and_a_rule_keeps_one() {
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
            cut_texts(text, &g, "data.p.a"),
            [
                ("x".into(), vec![a_y.clone()]),
                ("y".into(), vec![a_x.clone()]),
                // `a` keeps its first definition.
                ("*".into(), vec![a_y]),
            ]
        );
        assert_eq!(
            cut_texts(text, &g, "data.p.b"),
            [
                ("w".into(), vec![]),
                ("x".into(), vec![]),
                ("z".into(), vec![]),
                // `y` is no value of `b`'s guards.
                ("*".into(), vec![b]),
            ]
        );
        // Values that leave out the same definitions share a copy.
        let copies: Vec<usize> = g.rules.iter().map(|r| r.copies.len()).collect();
        assert_eq!(copies, [2, 1]);
    }

    #[test]
    fn a_default_is_kept_and_enough() {
        let text = "package p\nimport rego.v1\n\
            default r := false\n\
            r if input.scope == \"x\"\n\
            r if input.scope == \"y\"\n";
        let g = guards(text).unwrap();
        let rule = &g.rules[0];
        let kept = |id: Option<usize>| -> Vec<String> {
            rule.copies[id.unwrap()]
                .iter()
                .map(|&i| rule.definitions[i])
                .map(|d| text[d.start..d.end].trim().to_string())
                .collect()
        };
        assert_eq!(
            kept(rule.values["x"]),
            ["default r := false", "r if input.scope == \"x\""]
        );
        assert_eq!(kept(rule.other), ["default r := false"]);
        assert_eq!(rule.copy_document(1), "data.p.__regent_ix1_r");
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
        // `input.n + 1` raises an error for a string `n` in the rule; a
        // copy must not skip that body and answer instead.
        let text = "package p\nimport rego.v1\n\
            r if { input.n + 1 > 0; input.scope == \"a\" }\n\
            r if { input.scope == \"b\"; input.n + 1 > 0 }\n\
            r if input.scope == \"c\"\n";
        let g = guards(text).unwrap();
        let cut = cut_texts(text, &g, "data.p.r");
        assert!(
            cut.iter().all(|(_, texts)| texts
                .iter()
                .all(|t| !t.contains("input.n + 1 > 0; input.scope"))),
            "{cut:?}"
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

    #[test]
    fn rules_that_copies_could_be_seen_by_are_not_indexed() {
        let rules = "r if input.scope == \"x\"\nr if input.scope == \"y\"\n";
        for (other, indexed) in [
            ("package q\nimport rego.v1\ns := data.p.r\n", true),
            ("package q\nimport rego.v1\nimport data.p\ns := p.r\n", true),
            ("package q\nimport rego.v1\ns := data.p\n", false),
            ("package q\nimport rego.v1\ns := data.p[input.k]\n", false),
            ("package q\nimport rego.v1\ns := data[input.k]\n", false),
            ("package q\nimport rego.v1\nimport data.p\ns := p\n", false),
            (
                "package q\nimport rego.v1\nimport data.p as t\ns := t.r\n",
                true,
            ),
            (
                "package q\nimport rego.v1\nimport data.p as t\ns := t\n",
                false,
            ),
        ] {
            let mut engine = regorus::Engine::new();
            let p = format!("package p\nimport rego.v1\n{rules}");
            engine.add_policy("p.rego".into(), p).unwrap();
            let resolved = crate::policy::resolve::resolve_imports("q.rego", other)
                .unwrap()
                .unwrap_or(other.to_string());
            engine.add_policy("q.rego".into(), resolved).unwrap();
            let g = analyse(&engine.get_modules().to_vec());
            assert_eq!(g.is_some(), indexed, "{other}");
        }
        // A rule of a parent package reaching into the rule's path, or a
        // rule named like a copy.
        for (other, indexed) in [
            ("package a\nimport rego.v1\ndefault p.r := false\n", false),
            ("package a\nimport rego.v1\np.r if input.root\n", false),
            (
                "package a\nimport rego.v1\np[k] := 1 if some k in input.ks\n",
                false,
            ),
            ("package a\nimport rego.v1\np.s := 1\n", true),
            ("package a.p\nimport rego.v1\n__regent_ix0_s := 1\n", false),
        ] {
            let mut engine = regorus::Engine::new();
            let p = format!("package a.p\nimport rego.v1\n{rules}");
            engine.add_policy("p.rego".into(), p).unwrap();
            engine.add_policy("a.rego".into(), other.into()).unwrap();
            let g = analyse(&engine.get_modules().to_vec());
            assert_eq!(g.is_some(), indexed, "{other}");
        }
        // Heads other than a plain name.
        for head in ["r.a", "r[\"a\"]", "f(x)"] {
            let text = format!(
                "package p\nimport rego.v1\n{head} if input.scope == \"x\"\n{head} if input.scope == \"y\"\n"
            );
            assert!(guards(&text).is_none(), "{head}");
        }
    }
}
