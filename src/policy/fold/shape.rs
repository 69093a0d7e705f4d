//! The safety net of folding: a folded module must parse to the same tree as
//! the original, except that each replaced reference is now a literal. A
//! literal can lex or parse differently from the reference it replaces
//! (`-1` at the start of a line continues the previous expression as a
//! subtraction; `-N + 1` is `-(N + 1)` but `-3 + 1` is `(-3) + 1`), so
//! every folded module is checked, and one that changed shape is compiled
//! as written.

use std::collections::HashSet;
use std::mem::discriminant;

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleAssign, RuleHead};

use super::walk::{children, comprehension_query};

/// Byte ranges `(start, end)` of the original expressions that were replaced.
pub(super) type Edited = HashSet<(u32, u32)>;

pub(super) fn same_module(a: &Module, b: &Module, edited: &Edited) -> bool {
    a.policy.len() == b.policy.len()
        && a.policy
            .iter()
            .zip(&b.policy)
            .all(|(x, y)| same_rule(x, y, edited))
}

fn same_rule(a: &Rule, b: &Rule, e: &Edited) -> bool {
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

fn same_head(a: &RuleHead, b: &RuleHead, e: &Edited) -> bool {
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

fn same_assign(a: &Option<RuleAssign>, b: &Option<RuleAssign>, e: &Edited) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.op == b.op && same_expr(&a.value, &b.value, e),
        _ => false,
    }
}

fn same_option(a: Option<&Expr>, b: Option<&Expr>, e: &Edited) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_expr(a, b, e),
        _ => false,
    }
}

fn same_list(
    a: &[regorus::unstable::Ref<Expr>],
    b: &[regorus::unstable::Ref<Expr>],
    e: &Edited,
) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_expr(x, y, e))
}

fn same_query(a: &Query, b: &Query, e: &Edited) -> bool {
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

fn same_literal(a: &Literal, b: &Literal, e: &Edited) -> bool {
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

fn same_expr(a: &Expr, b: &Expr, e: &Edited) -> bool {
    let span = a.span();
    if e.contains(&(span.start, span.end)) {
        return matches!(
            b,
            Expr::String { .. }
                | Expr::Number { .. }
                | Expr::Bool { .. }
                | Expr::Null { .. }
                | Expr::Array { .. }
                | Expr::Set { .. }
                | Expr::Object { .. }
        );
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
    fn edited(text: &str, from: &str) -> Edited {
        let start = (text.find(from).unwrap() + from.find('N').unwrap()) as u32;
        [(start, start + 1)].into_iter().collect()
    }

    #[test]
    fn a_literal_in_place_of_a_reference_keeps_the_shape() {
        let original = "package m\nimport rego.v1\nN := 3\nx := N + 10\n";
        let folded = "package m\nimport rego.v1\nN := 3\nx := 3 + 10\n";
        let e = edited(original, "x := N");
        assert!(same_module(&module(original), &module(folded), &e));
    }

    #[test]
    fn a_literal_that_parses_differently_is_caught() {
        // `-N + 10` is `-(N + 10)` in regorus; `-3 + 10` is `(-3) + 10`.
        let original = "package m\nimport rego.v1\nN := 3\nx := -N + 10\n";
        let folded = "package m\nimport rego.v1\nN := 3\nx := -3 + 10\n";
        let e = edited(original, "-N");
        assert!(!same_module(&module(original), &module(folded), &e));
        // `-1` on its own line joins the previous statement.
        let original = "package m\nimport rego.v1\nN := -1\nx if {\n\tinput.a\n\tN > 0\n}\n";
        let folded = "package m\nimport rego.v1\nN := -1\nx if {\n\tinput.a\n\t-1 > 0\n}\n";
        let e = edited(original, "\tN >");
        assert!(!same_module(&module(original), &module(folded), &e));
    }
}
