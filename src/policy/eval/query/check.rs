//! What is known of an ad-hoc query before it runs: the variables it binds
//! (its answer's keys), and the compile errors OPA reports that the
//! wrapping would hide or regorus would not find.

use std::collections::{BTreeSet, HashSet};

use regorus::unstable::{Expr, Literal, Query, Span};

use super::{compile_error, QueryError, RESERVED};
use crate::policy::calls::start;
use crate::policy::eval::Location;
use crate::policy::fold::ast::{children, comprehension_query, static_path, Pass};

/// Built-ins an ad-hoc query may not call. OPA refuses `http.send` in
/// queries (its server's `UnsafeBuiltins`); Regent adds the ones regorus
/// computes in one allocation of the whole result, with no time check
/// inside: `numbers.range(1, 1e12)` or `net.cidr_expand("0.0.0.0/0")` would
/// abort the process rather than fail the query.
const UNSAFE_BUILTINS: &[&str] = &[
    "http.send",
    "numbers.range",
    "numbers.range_step",
    "net.cidr_expand",
];

/// The variables a query binds: those its statements name outside
/// comprehensions, `not`, `every` and `with` (which bind their own, or
/// only read variables bound elsewhere), and outside call names; `input`,
/// `data` and `_` are not variables.
pub(super) fn output_vars(query: &Query) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for stmt in &query.stmts {
        match &stmt.literal {
            Literal::SomeVars { vars: declared, .. } => {
                for var in declared {
                    add_var(var.text(), &mut vars);
                }
            }
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                for expr in key.iter().chain([value, collection]) {
                    collect_vars(expr, &mut vars);
                }
            }
            Literal::Expr { expr, .. } => collect_vars(expr, &mut vars),
            Literal::NotExpr { .. } | Literal::Every { .. } => {}
        }
    }
    vars
}

fn collect_vars(expr: &Expr, vars: &mut BTreeSet<String>) {
    match expr {
        Expr::Var { span, .. } => add_var(span.text(), vars),
        Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. } => {}
        Expr::Call { params, .. } => params.iter().for_each(|p| collect_vars(p, vars)),
        other => children(other)
            .into_iter()
            .for_each(|child| collect_vars(child, vars)),
    }
}

fn add_var(name: &str, vars: &mut BTreeSet<String>) {
    if !matches!(name, "_" | "input" | "data") {
        vars.insert(name.to_string());
    }
}

/// OPA's compile errors that must be found before the query runs: a call
/// to an unsafe built-in (see [`UNSAFE_BUILTINS`]), a variable declared
/// with `some` and never used (the wrapping would drop every answer
/// instead), and the names the wrapping itself uses.
pub(super) fn check(query: &Query) -> Result<(), QueryError> {
    let mut used: HashSet<String> = HashSet::new();
    let mut found: Option<QueryError> = None;
    Scan(|expr: &Expr| {
        if found.is_some() {
            return;
        }
        match expr {
            Expr::Var { span, .. } if span.text().starts_with(RESERVED) => {
                found = Some(compile_error(
                    Location::at(span),
                    format!("var {} is reserved", span.text()),
                ));
            }
            Expr::Var { span, .. } => {
                used.insert(span.text().to_string());
            }
            // A call, or a mention (`with upper as net.cidr_expand` makes
            // `upper(...)` call it).
            Expr::Call { .. } | Expr::RefDot { .. } => {
                let named = match expr {
                    Expr::Call { fcn, .. } => fcn.as_ref(),
                    other => other,
                };
                let (path, complete) = static_path(named);
                let name = path.join(".");
                if complete && UNSAFE_BUILTINS.contains(&name.as_str()) {
                    found = Some(compile_error(
                        Location::at(start(named)),
                        format!("unsafe built-in function calls in expression: {name}"),
                    ));
                }
            }
            _ => {}
        }
    })
    .query(query);
    if let Some(err) = found {
        return Err(err);
    }
    let declared = query.stmts.iter().flat_map(|stmt| match &stmt.literal {
        Literal::SomeVars { vars, .. } => vars.as_slice(),
        _ => &[],
    });
    for var in declared {
        if !used.contains(var.text()) {
            return Err(unused(var));
        }
    }
    Ok(())
}

fn unused(var: &Span) -> QueryError {
    compile_error(
        Location::at(var),
        format!("declared var {} unused", var.text()),
    )
}

/// Calls its function on every expression of a query, nested queries
/// (comprehensions, `every`, `not`) and `with` values included.
struct Scan<F>(F);

impl<F: FnMut(&Expr)> Pass for Scan<F> {
    const DECLARATIONS: bool = true;

    fn with_value(&mut self, value: &Expr) {
        self.expr(value);
    }

    fn expr(&mut self, expr: &Expr) {
        (self.0)(expr);
        if let Some(query) = comprehension_query(expr) {
            self.query(query);
        }
        for child in children(expr) {
            self.expr(child);
        }
    }
}
