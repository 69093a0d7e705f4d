//! The safety net of folding: a folded module must parse to the same tree as
//! the original, except that each replaced reference is now a literal. A
//! literal can lex or parse differently from the reference it replaces
//! (`-1` at the start of a line continues the previous expression as a
//! subtraction; `-N + 1` is `-(N + 1)` but `-3 + 1` is `(-3) + 1`), so
//! every folded module is checked, and one that changed shape is compiled
//! as written.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::mem::discriminant;

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleAssign, RuleHead};
use regorus::Value;

use super::ast::{children, comprehension_query};

/// Byte ranges `(start, end)` of the original expressions that were
/// replaced, and the value whose literal replaced each.
pub(super) type Edited<'a> = HashMap<(u32, u32), &'a Value>;

/// `Ok` when `b` (folded) has `a`'s shape; else `Err` with the range of
/// the edit whose literal did not parse as itself, when that is the cause.
pub(super) fn same_module(
    a: &Module,
    b: &Module,
    edited: &Edited,
) -> Result<(), Option<(u32, u32)>> {
    let check = Check {
        edited,
        culprit: Cell::new(None),
    };
    let same = a.policy.len() == b.policy.len()
        && a.policy
            .iter()
            .zip(&b.policy)
            .all(|(x, y)| same_rule(x, y, &check));
    if same {
        Ok(())
    } else {
        Err(check.culprit.get())
    }
}

/// The edits, and the first one found not to parse as its literal.
struct Check<'a, 'b> {
    edited: &'a Edited<'b>,
    culprit: Cell<Option<(u32, u32)>>,
}

fn same_rule(a: &Rule, b: &Rule, e: &Check) -> bool {
    match (a, b) {
        (
            Rule::Spec {
                head: ha,
                bodies: ba,
                ..
            },
            Rule::Spec {
                head: hb,
                bodies: bb,
                ..
            },
        ) => {
            same_head(ha, hb, e)
                && ba.len() == bb.len()
                && ba.iter().zip(bb).all(|(x, y)| {
                    x.is_else == y.is_else
                        && same_assign(&x.assign, &y.assign, e)
                        && same_query(&x.query, &y.query, e)
                })
        }
        (
            Rule::Default {
                refr: ra,
                args: aa,
                value: va,
                ..
            },
            Rule::Default {
                refr: rb,
                args: ab,
                value: vb,
                ..
            },
        ) => same_expr(ra, rb, e) && same_list(aa, ab, e) && same_expr(va, vb, e),
        _ => false,
    }
}

fn same_head(a: &RuleHead, b: &RuleHead, e: &Check) -> bool {
    match (a, b) {
        (
            RuleHead::Compr {
                refr: ra,
                assign: aa,
                ..
            },
            RuleHead::Compr {
                refr: rb,
                assign: ab,
                ..
            },
        ) => same_expr(ra, rb, e) && same_assign(aa, ab, e),
        (
            RuleHead::Set {
                refr: ra, key: ka, ..
            },
            RuleHead::Set {
                refr: rb, key: kb, ..
            },
        ) => same_expr(ra, rb, e) && same_option(ka.as_deref(), kb.as_deref(), e),
        (
            RuleHead::Func {
                refr: ra,
                args: xa,
                assign: aa,
                ..
            },
            RuleHead::Func {
                refr: rb,
                args: xb,
                assign: ab,
                ..
            },
        ) => same_expr(ra, rb, e) && same_list(xa, xb, e) && same_assign(aa, ab, e),
        _ => false,
    }
}

fn same_assign(a: &Option<RuleAssign>, b: &Option<RuleAssign>, e: &Check) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.op == b.op && same_expr(&a.value, &b.value, e),
        _ => false,
    }
}

fn same_option(a: Option<&Expr>, b: Option<&Expr>, e: &Check) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_expr(a, b, e),
        _ => false,
    }
}

fn same_list(
    a: &[regorus::unstable::Ref<Expr>],
    b: &[regorus::unstable::Ref<Expr>],
    e: &Check,
) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_expr(x, y, e))
}

fn same_query(a: &Query, b: &Query, e: &Check) -> bool {
    a.stmts.len() == b.stmts.len()
        && a.stmts.iter().zip(&b.stmts).all(|(x, y)| {
            x.with_mods.len() == y.with_mods.len()
                && x.with_mods
                    .iter()
                    .zip(&y.with_mods)
                    .all(|(m, n)| same_expr(&m.refr, &n.refr, e) && same_expr(&m.r#as, &n.r#as, e))
                && same_literal(&x.literal, &y.literal, e)
        })
}

fn same_literal(a: &Literal, b: &Literal, e: &Check) -> bool {
    match (a, b) {
        (Literal::SomeVars { vars: va, .. }, Literal::SomeVars { vars: vb, .. }) => {
            va.len() == vb.len()
        }
        (
            Literal::SomeIn {
                key: ka,
                value: va,
                collection: ca,
                ..
            },
            Literal::SomeIn {
                key: kb,
                value: vb,
                collection: cb,
                ..
            },
        ) => {
            same_option(ka.as_deref(), kb.as_deref(), e)
                && same_expr(va, vb, e)
                && same_expr(ca, cb, e)
        }
        (Literal::Expr { expr: xa, .. }, Literal::Expr { expr: xb, .. })
        | (Literal::NotExpr { expr: xa, .. }, Literal::NotExpr { expr: xb, .. }) => {
            same_expr(xa, xb, e)
        }
        (
            Literal::Every {
                key: ka,
                domain: da,
                query: qa,
                ..
            },
            Literal::Every {
                key: kb,
                domain: db,
                query: qb,
                ..
            },
        ) => ka.is_some() == kb.is_some() && same_expr(da, db, e) && same_query(qa, qb, e),
        _ => false,
    }
}

fn same_expr(a: &Expr, b: &Expr, e: &Check) -> bool {
    let span = a.span();
    if let Some(value) = e.edited.get(&(span.start, span.end)) {
        // Exactly the value, parsed as one constant expression (`x if
        // {false}` would be a rule body holding `false`, not the set).
        let same = constant(b).as_ref() == Some(*value);
        if !same {
            e.culprit.set(Some((span.start, span.end)));
        }
        return same;
    }
    if discriminant(a) != discriminant(b) || !same_operator(a, b) {
        return false;
    }
    let (ca, cb) = (children(a), children(b));
    ca.len() == cb.len()
        && ca.iter().zip(&cb).all(|(x, y)| same_expr(x, y, e))
        && match (comprehension_query(a), comprehension_query(b)) {
            (Some(qa), Some(qb)) => same_query(qa, qb, e),
            (None, None) => true,
            _ => false,
        }
}

/// The value of a constant expression: scalars, and collections of them.
fn constant(expr: &Expr) -> Option<Value> {
    match expr {
        Expr::String { value, .. }
        | Expr::RawString { value, .. }
        | Expr::Number { value, .. }
        | Expr::Bool { value, .. }
        | Expr::Null { value, .. } => Some(value.clone()),
        Expr::Array { items, .. } => items
            .iter()
            .map(|i| constant(i))
            .collect::<Option<Vec<_>>>()
            .map(Value::from),
        Expr::Set { items, .. } => items
            .iter()
            .map(|i| constant(i))
            .collect::<Option<BTreeSet<_>>>()
            .map(Value::from),
        Expr::Object { fields, .. } => fields
            .iter()
            .map(|(_, k, v)| Some((constant(k)?, constant(v)?)))
            .collect::<Option<BTreeMap<_, _>>>()
            .map(Value::from),
        _ => None,
    }
}

fn same_operator(a: &Expr, b: &Expr) -> bool {
    match (a, b) {
        (Expr::BinExpr { op: x, .. }, Expr::BinExpr { op: y, .. }) => x == y,
        (Expr::BoolExpr { op: x, .. }, Expr::BoolExpr { op: y, .. }) => x == y,
        (Expr::ArithExpr { op: x, .. }, Expr::ArithExpr { op: y, .. }) => x == y,
        (Expr::AssignExpr { op: x, .. }, Expr::AssignExpr { op: y, .. }) => x == y,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regorus::Engine;

    fn module(text: &str) -> regorus::unstable::Ref<Module> {
        let mut engine = Engine::new();
        engine.add_policy("m.rego".into(), text.into()).unwrap();
        engine.get_modules()[0].clone()
    }

    /// The byte range of the first `N` after `from` in `text`.
    fn edited<'a>(text: &str, from: &str, value: &'a Value) -> Edited<'a> {
        let start = (text.find(from).unwrap() + from.find('N').unwrap()) as u32;
        [((start, start + 1), value)].into_iter().collect()
    }

    #[test]
    fn a_literal_in_place_of_a_reference_keeps_the_shape() {
        let original = "package m\nimport rego.v1\nN := 3\nx := N + 10\n";
        let folded = "package m\nimport rego.v1\nN := 3\nx := 3 + 10\n";
        let three = Value::from(3);
        let e = edited(original, "x := N", &three);
        assert_eq!(same_module(&module(original), &module(folded), &e), Ok(()));
    }

    #[test]
    fn a_literal_that_parses_differently_is_caught() {
        // `-N + 10` is `-(N + 10)` in regorus; `-3 + 10` is `(-3) + 10`.
        let three = Value::from(3);
        let original = "package m\nimport rego.v1\nN := 3\nx := -N + 10\n";
        let folded = "package m\nimport rego.v1\nN := 3\nx := -3 + 10\n";
        let e = edited(original, "-N", &three);
        assert_eq!(
            same_module(&module(original), &module(folded), &e),
            Err(None)
        );
        // `-1` on its own line joins the previous statement.
        let original = "package m\nimport rego.v1\nN := -1\nx if {\n\tinput.a\n\tN > 0\n}\n";
        let folded = "package m\nimport rego.v1\nN := -1\nx if {\n\tinput.a\n\t-1 > 0\n}\n";
        let minus_one = Value::from(-1);
        let e = edited(original, "\tN >", &minus_one);
        assert_eq!(
            same_module(&module(original), &module(folded), &e),
            Err(None)
        );
        // After `if`, a set literal reads as a rule body.
        let original = "package m\nimport rego.v1\nN := {false}\nx if N\n";
        let folded = "package m\nimport rego.v1\nN := {false}\nx if {false}\n";
        let set = Value::from(BTreeSet::from([Value::Bool(false)]));
        let e = edited(original, "if N", &set);
        let at = *e.keys().next().unwrap();
        assert_eq!(
            same_module(&module(original), &module(folded), &e),
            Err(Some(at))
        );
    }
}
