//! Ad-hoc queries (`/v1/query`): a Rego query evaluated against the
//! snapshot and answered as OPA answers it, one object of variable bindings
//! per way the query succeeds (wildcards `_` left out), in evaluation order,
//! duplicates kept.
//!
//! regorus's own query evaluation (`Engine::eval_query`) cannot be used as
//! it is: it records a result for a query whose last statement failed (`not
//! true`, `x := 1; not true`, a false `every`) and reports a lone `false`
//! as a value, where OPA's query fails. Its rule bodies and comprehensions
//! evaluate correctly, so the query runs as the body of an array
//! comprehension whose term is the object of the query's output variables,
//! `__regent_query_results__ := [{"x": x} |` on the first line and the
//! query, as sent, from the second; an array comprehension keeps the order
//! and the duplicates of OPA's result set.

use std::collections::BTreeSet;

use regorus::unstable::{Expr, Literal, Parser, Query};
use regorus::{Source, Value};

use super::{EvalError, EvalErrorCode, EvalOptions, Evaluator, Location};
use crate::policy::calls::undefined_call_in_query;
use crate::policy::diagnostic::Diagnostic;
use crate::policy::fold::ast::children;
use crate::policy::resolve::tokens;

/// Why an ad-hoc query has no answer, in OPA's terms.
#[derive(Debug, PartialEq)]
pub enum QueryError {
    /// Nothing but blanks and comments (OPA: `cannot evaluate empty query`).
    Empty,
    /// The query does not parse (`rego_parse_error`).
    Parse(Diagnostic),
    /// It parses but does not compile: OPA's code (`rego_compile_error`,
    /// `rego_type_error` for a call to an undefined function) and the error.
    Compile(&'static str, Diagnostic),
    /// Evaluation failed (a conflict, a built-in error, the time limit).
    Eval(EvalError),
}

impl From<EvalError> for QueryError {
    fn from(err: EvalError) -> QueryError {
        QueryError::Eval(err)
    }
}

/// The variable the comprehension is bound to.
const RESULTS: &str = "__regent_query_results__";
/// The name regorus gives a query's source in its errors.
const QUERY_SOURCE: &str = "<query.rego>";

impl Evaluator {
    /// Evaluates `text`, a Rego query (statements separated by `;` or new
    /// lines), with `input`: the bindings of each way it succeeds.
    pub fn query(
        &self,
        text: &str,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Vec<Value>, QueryError> {
        let parse_error = |e: anyhow::Error| QueryError::Parse(Diagnostic::from_regorus(&e));
        // Named as OPA names a query's source: no file.
        let source = Source::from_contents(String::new(), text.to_string()).map_err(parse_error)?;
        if tokens(&source).map_err(parse_error)?.is_empty() {
            return Err(QueryError::Empty);
        }
        let query = Parser::new(&source)
            .and_then(|mut parser| {
                parser.enable_rego_v1()?;
                parser.parse_user_query()
            })
            .map_err(parse_error)?;
        if let Some((name, at)) = undefined_call_in_query(&self.functions, &query) {
            return Err(undefined_function(&name, Some(at)));
        }
        let term = output_vars(&query)
            .iter()
            .map(|var| format!("\"{var}\": {var}"))
            .collect::<Vec<_>>()
            .join(", ");
        let wrapped = format!("{RESULTS} := [{{{term}}} |\n{text}\n]");

        let results = self.with_interpreter(options, |mut engine| {
            engine.set_input(input.unwrap_or(Value::Undefined));
            engine.eval_query(wrapped, false).map_err(|e| classify(&e))
        })?;
        let bindings = results.result.into_iter().next().map(|r| r.bindings);
        match bindings.as_ref().map(|b| &b[RESULTS]) {
            Some(Value::Array(items)) => Ok(items.to_vec()),
            _ => Ok(Vec::new()),
        }
    }
}

/// The variables a query binds: those its statements name outside
/// comprehensions, `not`, `every` and `with` (which bind their own, or
/// only read variables bound elsewhere), and outside call names; `input`,
/// `data` and `_` are not variables.
fn output_vars(query: &Query) -> BTreeSet<String> {
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

/// A regorus error of the wrapped query, in OPA's terms: what it reports in
/// the query itself and is not an evaluation error (an unsafe variable, a
/// shadowed `input`, an unknown function) is the query's compile error. A
/// location in the query is moved back to the query as sent (one line up).
fn classify(err: &anyhow::Error) -> QueryError {
    let mut error = EvalError::from_regorus(err);
    let in_query = match &mut error.location {
        Some(at) if at.file == QUERY_SOURCE => {
            at.file = String::new();
            at.row = at.row.saturating_sub(1).max(1);
            true
        }
        _ => false,
    };
    if !in_query || error.code != EvalErrorCode::Internal {
        return QueryError::Eval(error);
    }
    if let Some(name) = error.message.strip_prefix("could not find function ") {
        return undefined_function(name, error.location);
    }
    QueryError::Compile(
        "rego_compile_error",
        Diagnostic {
            location: error.location,
            message: error.message,
        },
    )
}

/// OPA's type error for a call to a function nothing defines.
fn undefined_function(name: &str, location: Option<Location>) -> QueryError {
    QueryError::Compile(
        "rego_type_error",
        Diagnostic {
            location,
            message: format!("undefined function {name}"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator() -> Evaluator {
        let data = Value::from_json_str(r#"{"d": {"k": [10, 20]}}"#).unwrap();
        Evaluator::build(
            [(
                "p.rego",
                "package p\nimport rego.v1\nxs := [1, 2, 3]\nm := {\"a\": 1, \"b\": 2}\n\
                 allow if input.x == 1\nf(x) := x + 1\nconflict := input.c[_]\n",
            )],
            data,
        )
        .unwrap()
    }

    /// The answers as JSON text, or the error.
    fn run(query: &str) -> Result<String, QueryError> {
        let input = Value::from_json_str(r#"{"x": 1, "c": [1, 2]}"#).unwrap();
        let results = evaluator().query(query, Some(input), EvalOptions::default())?;
        Ok(serde_json::to_string(&results).unwrap())
    }

    /// What OPA answers for each query (its result set, bindings without
    /// wildcards), including the cases regorus's own query evaluation gets
    /// wrong (`not`, `every`, a lone `false`).
    #[test]
    fn answers_are_opas_result_sets() {
        for (query, want) in [
            ("x := 1", r#"[{"x":1}]"#),
            ("data.p.xs[i]", r#"[{"i":0},{"i":1},{"i":2}]"#),
            ("data.p.xs[_]", "[{},{},{}]"),
            ("data.p.xs[_] == 2", "[{}]"),
            ("data.p.xs[_] == data.p.xs[_]", "[{},{},{}]"),
            ("x := [\"b\", \"a\"][_]", r#"[{"x":"b"},{"x":"a"}]"#),
            ("some x in data.p.xs; x > 1", r#"[{"x":2},{"x":3}]"#),
            ("data.p.m[k] = v", r#"[{"k":"a","v":1},{"k":"b","v":2}]"#),
            ("[a, b] := [1, 2]", r#"[{"a":1,"b":2}]"#),
            ("x := 1\ny := x + 1 # a comment", r#"[{"x":1,"y":2}]"#),
            ("z := data.p.f(1)", r#"[{"z":2}]"#),
            ("split(\"a.b\", \".\", parts)", r#"[{"parts":["a","b"]}]"#),
            ("ys := [y | y := data.p.xs[_]; y > 1]", r#"[{"ys":[2,3]}]"#),
            ("data.p.allow", "[{}]"),
            ("data.d.k[1] == 20", "[{}]"),
            ("true", "[{}]"),
            ("not data.p.nope", "[{}]"),
            ("every x in data.p.xs { x > 0 }", "[{}]"),
            ("x := [false, true][_]; not x", r#"[{"x":false}]"#),
            ("data.p.allow with input as {\"x\": 1}", "[{}]"),
            // Failing queries: no result.
            ("false", "[]"),
            ("1 == 2", "[]"),
            ("input.x == 2", "[]"),
            ("not true", "[]"),
            ("not data.p.allow", "[]"),
            ("x := 1; not true", "[]"),
            ("every x in data.p.xs { x > 1 }", "[]"),
            ("y := 2; every x in data.p.xs { x > y }", "[]"),
            ("data.p.nope", "[]"),
            ("[false][_]", "[]"),
            ("data.p.allow with input as {\"x\": 2}", "[]"),
            // A built-in error is undefined, as OPA's default.
            ("x := startswith(null, \"a\")", "[]"),
            ("x := 1 / 0", "[]"),
        ] {
            assert_eq!(run(query).as_deref(), Ok(want), "{query}");
        }
    }

    #[test]
    fn errors_are_opas() {
        assert_eq!(run(""), Err(QueryError::Empty));
        assert_eq!(run("  # only a comment\n"), Err(QueryError::Empty));
        let Err(QueryError::Parse(d)) = run("x := 1 +") else {
            panic!("not a parse error")
        };
        assert_eq!(
            d.location.map(|l| (l.file, l.row)),
            Some((String::new(), 1))
        );
        // Unsafe: reported where the query has it, on its own line numbers.
        let Err(QueryError::Compile(code, d)) = run("x := 1\ny") else {
            panic!("not a compile error")
        };
        assert_eq!(code, "rego_compile_error");
        assert!(d.message.contains("unsafe"), "{}", d.message);
        let at = d.location.unwrap();
        assert_eq!((at.file.as_str(), at.row, at.col), ("", 2, 1));
        for (query, name) in [("nosuch(1)", "nosuch"), ("data.p.g(1)", "data.p.g")] {
            let Err(QueryError::Compile(code, d)) = run(query) else {
                panic!("{query}: not a compile error")
            };
            assert_eq!(code, "rego_type_error");
            assert_eq!(d.message, format!("undefined function {name}"));
        }
        let Err(QueryError::Eval(e)) = run("x := data.p.conflict") else {
            panic!("not an evaluation error")
        };
        assert_eq!(e.code, EvalErrorCode::Conflict, "{e:?}");
        assert_eq!(e.location.map(|l| l.file), Some("p.rego".to_string()));
    }

    #[test]
    fn output_variables_leave_out_local_ones() {
        let vars = |text: &str| {
            let source = Source::from_contents(String::new(), text.to_string()).unwrap();
            let mut parser = Parser::new(&source).unwrap();
            parser.enable_rego_v1().unwrap();
            output_vars(&parser.parse_user_query().unwrap())
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(vars("some a; a := 1; b := [c | c := 1]"), ["a", "b"]);
        assert_eq!(vars("some k, v in input.m; count(v) > 0"), ["k", "v"]);
        assert_eq!(vars("x := input.y; not x; every z in [1] { z }"), ["x"]);
        assert_eq!(vars("data.a[_] == input.b[i]"), ["i"]);
    }
}
