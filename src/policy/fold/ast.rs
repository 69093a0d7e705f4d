//! Walking regorus's AST: the passes over a rule's values and the shape of
//! references.

use std::collections::HashMap;

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleBody, RuleHead};

/// A pass over the expressions of a rule.
pub(in crate::policy) trait Pass {
    /// Whether the keys and values of `some k, v in` are visited (a scan
    /// for dependencies) or skipped (declarations, never rewritten).
    const DECLARATIONS: bool;

    /// Whether a statement carrying `with` modifiers is visited (the
    /// modifiers themselves never are).
    const WITH: bool = true;

    fn expr(&mut self, expr: &Expr);

    /// A statement carries `with` modifiers.
    fn with_modifiers(&mut self) {}

    /// The value of a `with` modifier (`with input as v`), visited by a
    /// pass that wants it (none of the folding passes do).
    fn with_value(&mut self, _value: &Expr) {}

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            if !stmt.with_mods.is_empty() {
                self.with_modifiers();
                for modifier in &stmt.with_mods {
                    self.with_value(&modifier.r#as);
                }
                if !Self::WITH {
                    continue;
                }
            }
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if Self::DECLARATIONS {
                        key.iter().for_each(|k| self.expr(k));
                        self.expr(value);
                    }
                    self.expr(collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
        }
    }
}

/// Visits what a rule computes (its head value, bodies and `else` values),
/// not its head reference.
pub(in crate::policy) fn values(pass: &mut impl Pass, head: &RuleHead, bodies: &[RuleBody]) {
    match head {
        RuleHead::Compr {
            assign: Some(assign),
            ..
        }
        | RuleHead::Func {
            assign: Some(assign),
            ..
        } => pass.expr(&assign.value),
        _ => {}
    }
    for body in bodies {
        if let Some(assign) = &body.assign {
            pass.expr(&assign.value);
        }
        pass.query(&body.query);
    }
}

/// Visits every expression of a rule: what [`values`] visits, plus a set
/// rule's key and the computed keys of a head reference (`p[f(k)] := v`),
/// or a `default` rule's value.
pub(in crate::policy) fn whole_rule(pass: &mut impl Pass, rule: &Rule) {
    match rule {
        Rule::Spec { head, bodies, .. } => {
            values(pass, head, bodies);
            if let RuleHead::Set { key: Some(key), .. } = head {
                pass.expr(key);
            }
            for index in dynamic_indexes(head_ref(rule)) {
                pass.expr(index);
            }
        }
        Rule::Default { value, .. } => pass.expr(value),
    }
}

/// The reference a rule's head defines (`p`, `a.b[x]`, `f`).
pub(in crate::policy) fn head_ref(rule: &Rule) -> &Expr {
    match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    }
}

/// A module's imports with a static path: alias (or last segment) -> the
/// imported path (`["data", "lib"]`).
pub(in crate::policy) fn import_aliases(module: &Module) -> HashMap<String, Vec<String>> {
    module
        .imports
        .iter()
        .filter_map(|import| {
            let (path, true) = static_path(&import.refr) else {
                return None;
            };
            let alias = match &import.r#as {
                Some(alias) => alias.text().to_string(),
                None => path.last()?.clone(),
            };
            Some((alias, path))
        })
        .collect()
}

/// The static path of a reference (`a.b["c"][x].d` -> `[a, b, c]`) and
/// whether it is all static.
pub(in crate::policy) fn static_path(expr: &Expr) -> (Vec<String>, bool) {
    match expr {
        Expr::Var { span, .. } => (vec![span.text().to_string()], true),
        Expr::RefDot { refr, field, .. } => {
            let (mut path, complete) = static_path(refr);
            if complete {
                path.push(field.0.text().to_string());
            }
            (path, complete)
        }
        Expr::RefBrack { refr, index, .. } => {
            let (mut path, complete) = static_path(refr);
            if !complete {
                return (path, false);
            }
            match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    match value.as_string() {
                        Ok(s) => {
                            path.push(s.to_string());
                            (path, true)
                        }
                        Err(_) => (path, false),
                    }
                }
                _ => (path, false),
            }
        }
        _ => (Vec::new(), false),
    }
}

/// The non-literal index expressions of a reference chain.
pub(in crate::policy) fn dynamic_indexes(expr: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut at = expr;
    loop {
        match at {
            Expr::RefDot { refr, .. } => at = refr,
            Expr::RefBrack { refr, index, .. } => {
                if !matches!(index.as_ref(), Expr::String { .. } | Expr::RawString { .. }) {
                    out.push(index.as_ref());
                }
                at = refr;
            }
            _ => return out,
        }
    }
}

/// Visits the direct sub-expressions of `expr`, then the query of a
/// comprehension: the default step of a pass that looks everywhere.
pub(in crate::policy) fn descend(pass: &mut impl Pass, expr: &Expr) {
    for child in children(expr) {
        pass.expr(child);
    }
    if let Some(query) = comprehension_query(expr) {
        pass.query(query);
    }
}

/// The query of a comprehension.
pub(in crate::policy) fn comprehension_query(expr: &Expr) -> Option<&Query> {
    match expr {
        Expr::ArrayCompr { query, .. }
        | Expr::SetCompr { query, .. }
        | Expr::ObjectCompr { query, .. } => Some(query),
        _ => None,
    }
}

/// The direct sub-expressions of `expr` (the query of a comprehension is
/// reached through [`comprehension_query`]).
pub(in crate::policy) fn children(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().map(|i| i.as_ref()).collect()
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .flat_map(|(_, k, v)| [k.as_ref(), v.as_ref()])
            .collect(),
        Expr::ArrayCompr { term, .. } | Expr::SetCompr { term, .. } => vec![term.as_ref()],
        Expr::ObjectCompr { key, value, .. } => vec![key.as_ref(), value.as_ref()],
        Expr::Call { fcn, params, .. } => std::iter::once(fcn.as_ref())
            .chain(params.iter().map(|p| p.as_ref()))
            .collect(),
        Expr::UnaryExpr { expr, .. } => vec![expr.as_ref()],
        Expr::RefDot { refr, .. } => vec![refr.as_ref()],
        Expr::RefBrack { refr, index, .. } => vec![refr.as_ref(), index.as_ref()],
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => vec![lhs.as_ref(), rhs.as_ref()],
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => key
            .iter()
            .map(|k| k.as_ref())
            .chain([value.as_ref(), collection.as_ref()])
            .collect(),
        _ => Vec::new(),
    }
}
