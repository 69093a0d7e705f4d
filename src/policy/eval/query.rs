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
//! comprehension that collects the object of the query's output variables:
//!
//! ```text
//! __regent_query_results__ := [__regent_binding__ |
//! <the query, as sent>
//! __regent_binding__ := {"x": x, ...}
//! ]
//! ```
//!
//! An array comprehension keeps the order and the duplicates of OPA's result
//! set, and the query keeps its own line numbers, one line down.

mod check;

use regorus::unstable::{Lexer, TokenKind};
use regorus::{Source, Value};

use super::{EvalError, EvalErrorCode, EvalOptions, Evaluator, Location};
use crate::policy::calls::undefined_call_in_query;
use crate::policy::diagnostic::Diagnostic;

/// Why an ad-hoc query has no answer, in OPA's terms.
#[derive(Debug, PartialEq)]
pub enum QueryError {
    /// Nothing but blanks and comments (OPA: `cannot evaluate empty query`).
    Empty,
    /// The query does not parse (`rego_parse_error`).
    Parse(Diagnostic),
    /// It parses but does not compile: OPA's code (`rego_compile_error`,
    /// `rego_unsafe_var_error`, `rego_type_error` for a call to an
    /// undefined function) and the error.
    Compile(&'static str, Diagnostic),
    /// Evaluation failed (a conflict, a built-in error, the time limit).
    Eval(EvalError),
}

impl From<EvalError> for QueryError {
    fn from(err: EvalError) -> QueryError {
        QueryError::Eval(err)
    }
}

/// The prefix of the names the wrapping uses; a query may not use it.
const RESERVED: &str = "__regent_";
/// The variable the comprehension is bound to.
const RESULTS: &str = "__regent_query_results__";
/// The variable holding one answer's bindings.
const BINDING: &str = "__regent_binding__";
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
        let first = Lexer::new(&source).next_token().map_err(parse_error)?;
        if matches!(first.0, TokenKind::Eof) {
            return Err(QueryError::Empty);
        }
        let query = crate::policy::nesting::parse_query(&source).map_err(parse_error)?;
        check::check(&query)?;
        if let Some((name, at)) = undefined_call_in_query(&self.functions, &query) {
            return Err(undefined_function(&name, Some(at)));
        }
        let fields = check::output_vars(&query)
            .iter()
            .map(|var| format!("\"{var}\": {var}"))
            .collect::<Vec<_>>()
            .join(",\n");
        let wrapped =
            format!("{RESULTS} := [{BINDING} |\n{text}\n{BINDING} := {{\n{fields}\n}}\n]");
        let lines = text.lines().count().max(1);

        let results = self.with_interpreter(options, |engine: &mut regorus::Engine| {
            engine.set_input(input.unwrap_or(Value::Undefined));
            engine
                .eval_query(wrapped, false)
                .map_err(|e| classify(&e, lines))
        })?;
        let bindings = results.result.into_iter().next().map(|r| r.bindings);
        match bindings.as_ref().map(|b| &b[RESULTS]) {
            Some(Value::Array(items)) => Ok(items.to_vec()),
            _ => Ok(Vec::new()),
        }
    }
}

/// The query's own row of a location regorus gives in the wrapped query
/// (`<query.rego>:2` is row 1), if `line` is one.
pub(super) fn query_row(line: &str) -> Option<u32> {
    let row: u32 = line
        .strip_prefix(QUERY_SOURCE)?
        .strip_prefix(':')?
        .parse()
        .ok()?;
    row.checked_sub(1).filter(|&row| row >= 1)
}

/// A regorus error of the wrapped query (whose `lines` lines start on its
/// second), in OPA's terms: what it reports in the query and is not an
/// evaluation error (an unsafe variable, a shadowed `input`, an unknown
/// function) is the query's compile error. A location in the query is moved
/// back to the query as sent; one in the wrapping is dropped.
fn classify(err: &anyhow::Error, lines: usize) -> QueryError {
    let mut error = EvalError::from_regorus(err);
    let in_query = matches!(&error.location, Some(at) if at.file == QUERY_SOURCE);
    if in_query {
        error.location = error.location.take().and_then(|mut at| {
            at.file = String::new();
            at.row = at.row.checked_sub(1).filter(|&row| row >= 1)?;
            (usize::try_from(at.row).ok()? <= lines).then_some(at)
        });
    }
    if !in_query || error.code != EvalErrorCode::Internal {
        return QueryError::Eval(error);
    }
    if let Some(name) = error.message.strip_prefix("could not find function ") {
        return undefined_function(name, error.location);
    }
    // regorus: "use of undefined variable `y` is unsafe", or "var y is
    // unsafe (path ..., scopes ...)"; OPA: "var y is unsafe".
    let message = error.message.as_str();
    let unsafe_var = message
        .strip_prefix("use of undefined variable `")
        .and_then(|rest| rest.strip_suffix("` is unsafe"))
        .or_else(|| {
            let (var, _) = message.strip_prefix("var ")?.split_once(" is unsafe")?;
            Some(var)
        });
    if let Some(var) = unsafe_var {
        return QueryError::Compile(
            "rego_unsafe_var_error",
            Diagnostic {
                message: format!("var {var} is unsafe"),
                location: error.location,
            },
        );
    }
    QueryError::Compile(
        "rego_compile_error",
        Diagnostic {
            location: error.location,
            message: error.message,
        },
    )
}

/// OPA's `rego_compile_error` at `at`.
fn compile_error(at: Location, message: String) -> QueryError {
    QueryError::Compile(
        "rego_compile_error",
        Diagnostic {
            location: Some(at),
            message,
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

    /// The wrapping puts each binding on a line of its own: many long
    /// variable names do not make a line longer than regorus reads (1024
    /// columns), and the query keeps its line numbers.
    #[test]
    fn many_variables_are_answered() {
        let query = (0..60)
            .map(|i| format!("a_rather_long_variable_name_number_{i:02} := {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let results = evaluator()
            .query(&query, None, EvalOptions::default())
            .unwrap();
        let Some(Value::Object(bindings)) = results.first() else {
            panic!("no answer: {results:?}")
        };
        assert_eq!(
            bindings.get(&Value::from("a_rather_long_variable_name_number_59")),
            Some(&Value::from(59u64))
        );
        assert_eq!(bindings.len(), 60);
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
        assert_eq!(
            (code, d.message.as_str()),
            ("rego_unsafe_var_error", "var y is unsafe")
        );
        let at = d.location.unwrap();
        assert_eq!((at.file.as_str(), at.row, at.col), ("", 2, 1));
        // OPA's compile errors the wrapping would hide or regorus would miss.
        for (query, message, col) in [
            ("some x; true", "declared var x unused", 6),
            (
                "x := 1; __regent_binding__ := 2",
                "var __regent_binding__ is reserved",
                9,
            ),
            (
                "x := numbers.range(1, 1000000000000)",
                "unsafe built-in function calls in expression: numbers.range",
                6,
            ),
            (
                "http.send({})",
                "unsafe built-in function calls in expression: http.send",
                1,
            ),
            (
                "y := [x | x := net.cidr_expand(\"0.0.0.0/0\")[_]]",
                "unsafe built-in function calls in expression: net.cidr_expand",
                16,
            ),
        ] {
            let Err(QueryError::Compile(code, d)) = run(query) else {
                panic!("{query}: not a compile error")
            };
            assert_eq!(
                (code, d.message.as_str()),
                ("rego_compile_error", message),
                "{query}"
            );
            assert_eq!(
                d.location.map(|l| (l.row, l.col)),
                Some((1, col)),
                "{query}"
            );
        }
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
            check::output_vars(&crate::policy::nesting::parse_query(&source).unwrap())
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(vars("some a; a := 1; b := [c | c := 1]"), ["a", "b"]);
        assert_eq!(vars("some k, v in input.m; count(v) > 0"), ["k", "v"]);
        assert_eq!(vars("x := input.y; not x; every z in [1] { z }"), ["x"]);
        assert_eq!(vars("data.a[_] == input.b[i]"), ["i"]);
    }
}
