//! Constant folding for the fast path.
//!
//! A *ground* rule is a complete rule (`X := ...`, `x if ...`) with a single
//! definition whose value cannot depend on the input: nothing in it reaches
//! `input`, a `with`, a user function, a non-deterministic built-in, a
//! virtual document, or a rule that is not ground itself (base data is
//! fine: it is fixed per snapshot). Policies are full of them: role names,
//! priority tables, scope sets. In regorus's VM, every reference to one is
//! a rule call (a frame, a register window, a copy of the rule's metadata,
//! a cache lookup) even when the value is cached, and a decision on the
//! default policies makes dozens.
//!
//! [`fold`] evaluates each ground rule once per snapshot with the
//! interpreter and, in the text the fast path compiles, replaces references
//! to it inside rule bodies and values by the literal of its value, which the
//! compiler turns into a single constant load. The rules themselves stay
//! (they remain entry points); the interpreter keeps the text as written,
//! so the differential test compares the folded fast path with it.
//!
//! Rewriting is conservative: a local reference `X` is rewritten only when
//! no rule, `some`, `every` or assignment of the package declares a
//! variable `X` (so it cannot be shadowed), absolute references
//! `data.p.X` only when nothing declares `data`; heads and `with`
//! modifiers are never touched. A reference left alone is still correct,
//! only slower.

pub(super) mod ast;
mod ground;
mod shape;

use std::collections::{HashMap, HashSet};

use regorus::unstable::{AssignOp, Expr, Rule};
use regorus::{Engine, Value};

use ast::{children, descend, static_path, values, Pass};
use ground::RuleTable;
use shape::{same_module, Edited};

/// Longest literal text a folded value may have: larger values stay rule
/// calls rather than being copied into the program at every reference.
const MAX_LITERAL: usize = 4096;

/// The fast path's view of the modules after folding.
pub struct Folded {
    /// An engine over the folded texts and the data, for compiling only.
    pub engine: Engine,
    /// `(id, text)` of every module, rewritten where a reference was folded.
    pub modules: Vec<(String, String)>,
    /// Paths (`data.p.X`) of the rules whose references were folded.
    pub rules: Vec<String>,
    /// How many references were replaced.
    pub references: usize,
}

/// Folds the ground rules of `engine`'s modules (parsed, with import
/// references already resolved) and returns a new engine over the folded
/// texts and `data`, for compiling the fast path. `None` when no reference
/// was folded.
pub fn fold(engine: &Engine, data: &Value) -> Option<Folded> {
    let mut engine = engine.clone();
    let modules: Vec<_> = engine.get_modules().to_vec();
    let table = RuleTable::build(&modules);
    let ground = table.ground();
    if ground.is_empty() {
        return None;
    }
    // Evaluate each once; keep those with a literal form.
    engine.set_input(Value::new_object());
    let mut literals: HashMap<Vec<String>, (String, Value)> = HashMap::new();
    for path in ground {
        if !path.iter().all(|s| is_identifier(s)) {
            continue;
        }
        let Ok(value) = engine.eval_rule(path.join(".")) else {
            continue;
        };
        if let Some(text) = literal(&value).filter(|t| t.len() <= MAX_LITERAL) {
            literals.insert(path, (text, value));
        }
    }
    let mut plans: Vec<Vec<Edit>> = modules
        .iter()
        .zip(&table.packages)
        .map(|(module, package)| {
            let declared = &table.declared[package];
            let mut rewriter = Rewriter {
                package,
                literals: &literals,
                declared,
                absolute: !declared.contains("data"),
                text: module.package.span.source.get_contents(),
                edits: Vec::new(),
            };
            for rule in &module.policy {
                rewriter.rule(rule);
            }
            let mut edits = rewriter.edits;
            edits.sort_by_key(|e| e.start);
            edits
        })
        .collect();
    // Parse the folded texts; a literal that does not parse as itself is
    // dropped, a module that fails to parse or changed shape otherwise is
    // compiled as written. Each round drops at least one edit or module.
    let mut keep: Vec<bool> = plans.iter().map(|edits| !edits.is_empty()).collect();
    while keep.iter().any(|k| *k) {
        let texts: Vec<(String, String)> = modules
            .iter()
            .zip(&plans)
            .zip(&keep)
            .map(|((module, edits), keep)| {
                let source = &module.package.span.source;
                let text = source.get_contents();
                let text = if *keep {
                    apply(text, edits)
                } else {
                    text.clone()
                };
                (source.get_path().clone(), text)
            })
            .collect();
        let mut folded = Engine::new();
        folded.set_strict_builtin_errors(false);
        // A literal can nest deeper than the reference it replaced.
        let too_deep = |id: &str, text: &str| {
            regorus::Source::from_contents(id.to_string(), text.to_string())
                .and_then(|source| super::nesting::check(&source))
                .is_err()
        };
        if let Some(i) = texts.iter().position(|(id, text)| {
            too_deep(id, text) || folded.add_policy(id.clone(), text.clone()).is_err()
        }) {
            if !keep[i] {
                return None; // the text as written does not parse here
            }
            keep[i] = false;
            continue;
        }
        folded.add_data(data.clone()).ok()?;
        // `add_policy` keeps the order the modules were added in.
        let parsed = folded.get_modules().to_vec();
        if parsed.len() != modules.len() {
            return None;
        }
        let mut changed = false;
        for (i, (module, parsed)) in modules.iter().zip(&parsed).enumerate() {
            if !keep[i] {
                continue;
            }
            let edited: Edited = plans[i]
                .iter()
                .map(|e| ((e.start as u32, e.end as u32), &e.value))
                .collect();
            if module.package.span.source.get_path() != parsed.package.span.source.get_path() {
                return None;
            }
            match same_module(module, parsed, &edited) {
                Ok(()) => {}
                // One literal did not parse as itself: drop that edit only.
                Err(Some((start, end))) => {
                    plans[i].retain(|e| (e.start as u32, e.end as u32) != (start, end));
                    keep[i] = !plans[i].is_empty();
                    changed = true;
                }
                Err(None) => {
                    keep[i] = false;
                    changed = true;
                }
            }
        }
        if changed {
            continue;
        }
        let applied = plans.iter().zip(&keep).filter(|(_, k)| **k);
        let mut rules: Vec<String> = applied
            .clone()
            .flat_map(|(edits, _)| edits.iter().map(|e| e.rule.join(".")))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        rules.sort();
        let references = applied.map(|(edits, _)| edits.len()).sum();
        return Some(Folded {
            engine: folded,
            modules: texts,
            rules,
            references,
        });
    }
    None
}

/// One replacement: the byte range of a reference, the literal and its
/// value, the rule.
struct Edit {
    start: usize,
    end: usize,
    text: String,
    value: Value,
    rule: Vec<String>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Applies sorted, non-overlapping edits.
fn apply(text: &str, edits: &[Edit]) -> String {
    let mut out = String::with_capacity(text.len() + edits.len() * 16);
    let mut at = 0;
    for edit in edits {
        if edit.start < at {
            continue; // overlapping (cannot happen: the walk stops at an edit)
        }
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The Rego literal of a value, when the compiler will load it as a constant
/// (no `set()`: an empty set is a call) and it reads back as the same value.
fn literal(value: &Value) -> Option<String> {
    let mut out = String::new();
    write_literal(value, &mut out)?;
    Some(out)
}

fn write_literal(value: &Value, out: &mut String) -> Option<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => {
            out.push_str(&serde_json::to_string(value).ok()?);
        }
        // Whole numbers within 2^53 only: there, an integer and a float
        // with the same value compute the same; beyond, or with a fraction,
        // the literal may read back as another kind of number (2^70 as a
        // float, `1.5e18` as an integer) that rounds differently.
        Value::Number(n)
            if n.is_integer() && n.as_i64().is_some_and(|i| i.unsigned_abs() <= 1 << 53) =>
        {
            out.push_str(&serde_json::to_string(value).ok()?);
        }
        Value::Number(_) => return None,
        Value::Array(items) => write_items(items.iter(), ('[', ']'), out)?,
        Value::Set(items) if !items.is_empty() => write_items(items.iter(), ('{', '}'), out)?,
        Value::Set(_) => return None,
        Value::Object(fields) => {
            out.push('{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_literal(key, out)?;
                out.push_str(": ");
                write_literal(item, out)?;
            }
            out.push('}');
        }
        Value::Undefined => return None,
    }
    Some(())
}

fn write_items<'v>(
    items: impl Iterator<Item = &'v Value>,
    (open, close): (char, char),
    out: &mut String,
) -> Option<()> {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_literal(item, out)?;
    }
    out.push(close);
    Some(())
}

/// Replaces references to folded rules in one module's bodies and values.
struct Rewriter<'a> {
    package: &'a Vec<String>,
    literals: &'a HashMap<Vec<String>, (String, Value)>,
    declared: &'a HashSet<String>,
    /// Whether `data.p.X` references may be rewritten in this package.
    absolute: bool,
    /// The module's text.
    text: &'a str,
    edits: Vec<Edit>,
}

impl Rewriter<'_> {
    fn rule(&mut self, rule: &Rule) {
        if let Rule::Spec { head, bodies, .. } = rule {
            values(self, head, bodies);
        }
    }

    fn replace(&mut self, expr: &Expr, path: Vec<String>) -> bool {
        let Some((text, value)) = self.literals.get(&path) else {
            return false;
        };
        let span = expr.span();
        let (start, end) = (span.start as usize, span.end as usize);
        // A leading `-` would lex into a number or change precedence
        // (`shape.rs` would reject the module; skip just this reference).
        if text.starts_with('-') || self.text[..start].ends_with('-') {
            return false;
        }
        self.edits.push(Edit {
            start,
            end,
            text: text.clone(),
            value: value.clone(),
            rule: path,
        });
        true
    }
}

impl Pass for Rewriter<'_> {
    const DECLARATIONS: bool = false;
    const WITH: bool = false;

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Var { span, .. } => {
                let name = span.text();
                if !self.declared.contains(name) {
                    let mut path = self.package.clone();
                    path.push(name.to_string());
                    self.replace(expr, path);
                }
            }
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let (path, complete) = static_path(expr);
                let absolute = path.first().map(String::as_str) == Some("data");
                if complete && absolute && self.absolute && self.replace(expr, path) {
                    return;
                }
                for child in children(expr) {
                    self.expr(child);
                }
            }
            // The function name is not a value.
            Expr::Call { params, .. } => {
                for param in params {
                    self.expr(param);
                }
            }
            // `x := v`: `x` is a declaration.
            Expr::AssignExpr {
                op: AssignOp::ColEq,
                rhs,
                ..
            } => self.expr(rhs),
            _ => descend(self, expr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(modules: &[(&str, &str)], data: &str) -> Engine {
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(false);
        for (id, text) in modules {
            engine.add_policy(id.to_string(), text.to_string()).unwrap();
        }
        engine
            .add_data(Value::from_json_str(data).unwrap())
            .unwrap();
        engine
    }

    fn fold_of(modules: &[(&str, &str)], data: &str) -> Option<Folded> {
        fold(&engine(modules, data), &Value::from_json_str(data).unwrap())
    }

    fn text_of<'a>(folded: &'a Folded, id: &str) -> &'a str {
        &folded.modules.iter().find(|(i, _)| i == id).unwrap().1
    }

    const P: &str = r#"package p
import rego.v1
A := "a"
B := {A: 1, "b": 2}
S := {"x", A}
R := data.roles.admin
T := count(S) + 1
x if input.k == A
y := B[input.k]
z if input.k in S
r := [R, T]
C := input.k
D := C
E := time.now_ns()
f(v) := v
F := f(1)
V := data.p
M := 1 if input.m
M := 2 if input.n
N := set()
shadow if {
	A := 2
	A == 2
}
G := 7
in_comprehension := [G | G := input.xs[_]]
NEG := -1
neg if {
	input.a
	NEG > 0
}
THREE := 3
minus := -THREE + 10
util.level(d) := object.get(input, "level", d)
L := util.level(0)
l if L > 0
FLOAT := 2.5
float := FLOAT
"#;

    // `K.x` would read `3.x`, which does not parse: this module stays as written.
    const R: &str = r#"package r
import rego.v1
K := 3
k if K.x
j := K
"#;

    // `x if {false}` would be a rule body: that one reference stays.
    const S: &str = r#"package s
import rego.v1
X := {false}
x if X
y := X
"#;

    const Q: &str = r#"package q
import rego.v1
A := "q"
uses if data.p.A == input.k
uses_local if A == input.k
deeper := data.p.B.b
"#;

    #[test]
    fn ground_rules_are_folded_and_nothing_else() {
        let folded = fold_of(
            &[("p.rego", P), ("q.rego", Q), ("r.rego", R), ("s.rego", S)],
            r#"{"roles": {"admin": "root"}}"#,
        )
        .unwrap();
        // C, D depend on input, E on the clock, F and L on functions, V on a
        // virtual document, M has two definitions, N and FLOAT have no
        // literal form; G is a local in a comprehension, NEG and THREE sit
        // next to a `-`; r.rego does not parse once folded; in s.rego, one
        // reference to X would not parse as the value.
        assert_eq!(
            folded.rules,
            ["data.p.A", "data.p.B", "data.p.R", "data.p.S", "data.p.T", "data.q.A", "data.s.X"]
        );
        let q = text_of(&folded, "q.rego");
        assert!(q.contains("uses if \"a\" == input.k"), "{q}");
        assert!(q.contains("uses_local if \"q\" == input.k"), "{q}");
        assert!(q.contains("deeper := {\"a\": 1, \"b\": 2}.b"), "{q}");
        let p = text_of(&folded, "p.rego");
        // Heads stay; `A` is declared as a local in `shadow`, so local
        // references to it are left alone everywhere in the package.
        assert!(p.contains("A := \"a\"\n"), "{p}");
        assert!(p.contains("x if input.k == A\n"), "{p}");
        assert!(p.contains("y := {\"a\": 1, \"b\": 2}[input.k]"), "{p}");
        assert!(p.contains("r := [\"root\", 3]"), "{p}");
        assert!(p.contains("D := C\n"), "{p}");
        assert!(p.contains("[G | G := input.xs[_]]"), "{p}");
        assert!(p.contains("\tNEG > 0\n"), "{p}");
        assert!(p.contains("minus := -THREE + 10"), "{p}");
        assert!(p.contains("float := FLOAT"), "{p}");
        assert_eq!(text_of(&folded, "r.rego"), R);
        let s = text_of(&folded, "s.rego");
        assert!(s.contains("x if X\ny := {false}\n"), "{s}");
    }

    #[test]
    fn nothing_to_fold_is_none() {
        let text = "package p\nimport rego.v1\nx if input.a == 1\ny := input.b\n";
        assert!(fold_of(&[("p.rego", text)], "{}").is_none());
    }

    #[test]
    fn literals_read_back_as_the_same_value() {
        let value = Value::from_json_str(
            r#"{"a": [1, -2, 2.0, null, true, "q\"uote\n\u0001/é✓"], "b": {}}"#,
        )
        .unwrap();
        let text = literal(&value).unwrap();
        let wrapped = format!("package t\nx := {text}\n");
        let mut engine = engine(&[("t.rego", &wrapped)], "{}");
        assert_eq!(engine.eval_rule("data.t.x".into()).unwrap(), value);
        assert_eq!(literal(&Value::new_set()), None);
        assert_eq!(literal(&Value::from(2.5)), None);
        assert_eq!(literal(&Value::from(1.5e18)), None);
        assert_eq!(
            literal(&Value::from_json_str("1180591620717411303424").unwrap()),
            None
        );
        assert_eq!(literal(&Value::from(-4)).as_deref(), Some("-4"));
    }
}
