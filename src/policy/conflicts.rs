//! Which rules can conflict: give two values for one document (a complete
//! rule), one key (a partial object) or one call (a function). OPA reports
//! that as `eval_conflict_error`; regorus's VM does not detect it and keeps
//! one of the values (or, for a function, none), so the fast path must not
//! answer any document whose evaluation can reach such a rule
//! ([`super::rule_index::RuleIndex::mark_conflict_prone`]; the interpreter
//! raises OPA's error).
//!
//! Static and conservative: a rule may conflict when its definitions'
//! values differ or are computed, or when its value is computed in a body
//! that can succeed more than once (`some`, a reference indexed by a
//! variable; comprehensions are one value however often their bodies
//! succeed). A `default` and a rule whose value is `true` never conflict.

use std::collections::HashSet;

use regorus::unstable::{Expr, Literal, Query, Rule, RuleHead};

use super::fold::ast::{children, comprehension_query};

/// The kinds of rules with one value per document (or per key, per call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Complete,
    Function,
    PartialObject,
}

/// What one definition of such a rule outputs: its value's text when that
/// is the same constant on every branch (`None`: computed), and whether its
/// body can succeed more than once (it iterates: `some`, or a reference
/// indexed by a variable, outside comprehensions).
#[derive(Debug)]
pub(super) struct Output {
    constant: Option<String>,
    iterates: bool,
}

impl Output {
    pub(super) fn of(rule: &Rule, rules: &HashSet<String>) -> Option<(Kind, Output)> {
        let Rule::Spec { head, bodies, .. } = rule else {
            return None; // a `default` never conflicts
        };
        let (kind, assign) = match head {
            RuleHead::Compr { refr, assign, .. } if is_static_ref(refr) => (Kind::Complete, assign),
            RuleHead::Compr { assign, .. } => (Kind::PartialObject, assign),
            RuleHead::Func { assign, .. } => (Kind::Function, assign),
            RuleHead::Set { .. } => return None,
        };
        let mut values = vec![assign.as_ref().map(|a| &a.value)];
        values.extend(
            bodies
                .iter()
                .filter(|b| b.is_else)
                .map(|b| b.assign.as_ref().map(|a| &a.value)),
        );
        let texts: HashSet<Option<String>> = values
            .iter()
            .map(|v| match v {
                None => Some("true".to_string()),
                Some(v) => is_constant(v).then(|| v.span().text().to_string()),
            })
            .collect();
        let constant = match texts.len() {
            1 => texts.into_iter().next().flatten(),
            _ => None,
        };
        let mut scan = Iterates {
            rules,
            found: false,
        };
        for value in values.into_iter().flatten() {
            scan.expr(value);
        }
        for body in bodies {
            scan.query(&body.query);
        }
        Some((
            kind,
            Output {
                constant,
                iterates: scan.found,
            },
        ))
    }

    /// Whether the definitions of one rule can give two different values
    /// for one document (one key, one call): OPA's `eval_conflict_error`,
    /// which the RVM does not detect (it keeps one of the values).
    pub(super) fn may_disagree(kind: Kind, defs: &[Output]) -> bool {
        let computed = defs.iter().any(|d| d.constant.is_none());
        let constants: HashSet<&Option<String>> = defs.iter().map(|d| &d.constant).collect();
        let differ = computed || constants.len() > 1;
        let iterates = defs.iter().any(|d| d.iterates);
        match kind {
            Kind::Complete | Kind::Function => (defs.len() > 1 && differ) || (computed && iterates),
            Kind::PartialObject => differ && (defs.len() > 1 || iterates),
        }
    }
}

/// Whether a rule's body or value can succeed more than once.
struct Iterates<'a> {
    /// The rules of the package: an index named like one is no variable.
    rules: &'a HashSet<String>,
    found: bool,
}

impl Iterates<'_> {
    /// Whether `expr` holds a variable (a name that is no rule), outside
    /// the references it holds.
    fn has_variable(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Var { span, .. } => !self.rules.contains(span.text()),
            Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. } => false,
            _ => children(expr).into_iter().any(|c| self.has_variable(c)),
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } | Literal::SomeIn { .. } => self.found = true,
                Literal::Expr { expr, .. } => self.expr(expr),
                // Neither binds anything outside itself.
                Literal::NotExpr { .. } | Literal::Every { .. } => {}
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        // An index with a variable in it iterates (`x[i]`, `x[[n, _]]`).
        if let Expr::RefBrack { index, .. } = expr {
            self.found |= self.has_variable(index);
        }
        // A comprehension is one value however often its body succeeds.
        if comprehension_query(expr).is_some() {
            return;
        }
        for child in children(expr) {
            self.expr(child);
        }
    }
}

/// A reference with no variable index: a complete rule's head.
fn is_static_ref(expr: &Expr) -> bool {
    match expr {
        Expr::Var { .. } => true,
        Expr::RefDot { refr, .. } => is_static_ref(refr),
        Expr::RefBrack { refr, index, .. } => {
            matches!(index.as_ref(), Expr::String { .. }) && is_static_ref(refr)
        }
        _ => false,
    }
}

/// A scalar literal: definitions with equal constant values never conflict.
fn is_constant(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
    )
}
