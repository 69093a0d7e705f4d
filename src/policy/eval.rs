//! The evaluation interface: query path + input -> [`Outcome`] or [`EvalError`].
//!
//! Everything that answers a query sits behind [`Evaluator::evaluate`]: a
//! path no rule reaches is read from the data, a rule document goes to the
//! fast path (`fast.rs`, RVM bytecode), and the rest, or whatever the fast
//! path cannot answer, to the regorus interpreter (a warmed
//! [`regorus::Engine`] built once per snapshot and cloned per decision,
//! about 0.3 us).

use std::sync::Arc;

use anyhow::{anyhow, Result};
use regorus::{Engine, Value};

mod error;
mod query;
pub(super) use error::catch_panic;
pub use error::{EvalError, EvalErrorCode, Location};
pub use query::QueryError;

use super::calls::Functions;
use super::fast::{FastFailure, FastPath};
use super::path::DataPath;
use super::resolve::resolve_imports;
pub(crate) use super::rule_index::ref_segments;
pub use super::rule_index::RuleIndex;

/// The answer to one query. Undefined is a value, not an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Defined(Value),
    Undefined,
}

impl Outcome {
    /// regorus's `Value::Undefined` is the undefined outcome, never a value.
    pub fn from_value(value: Value) -> Outcome {
        match value {
            Value::Undefined => Outcome::Undefined,
            value => Outcome::Defined(value),
        }
    }
}

/// Per-request evaluation switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvalOptions {
    /// OPA's `strict-builtin-errors`: built-in errors abort evaluation instead
    /// of making the expression undefined.
    pub strict_builtin_errors: bool,
    /// Wall-clock limit for one evaluation (none by default). Overrunning it
    /// is an [`EvalErrorCode::Cancel`] error.
    pub time_limit: Option<std::time::Duration>,
}

/// A time limit for the interpreter or a VM, checked every 64 units of work
/// (an instruction, for a VM; a clock read costs about as much as 20 of them).
pub fn time_limit(limit: std::time::Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
    }
}

/// The base document at `path`, indexed as the interpreter indexes
/// `data.a[0]["b-c"]` (`DataPath::as_ref_str`): every segment selects the
/// object member of that name (`data.d[0]` is member `"0"` of an object, as
/// in OPA, whose store reads path segments as keys; digits in their
/// canonical form, `007` as `"7"`) and a segment of digits also an array
/// element.
fn base_document(data: &Value, path: &DataPath) -> Value {
    let mut node = data;
    for segment in path.segments() {
        let next = match node {
            // `data.d[7]` reads member "7" of an object, so `007` does too.
            Value::Object(fields) if super::path::is_index(segment) => {
                fields.get(&Value::from(super::path::canonical_index(segment)))
            }
            Value::Object(fields) => fields.get(&Value::from(segment.as_str())),
            Value::Array(items) if super::path::is_index(segment) => {
                segment.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            _ => None,
        };
        match next {
            Some(value) => node = value,
            None => return Value::Undefined,
        }
    }
    node.clone()
}

/// A ready evaluator over one set of modules and data.
#[derive(Clone)]
pub struct Evaluator {
    engine: Engine,
    /// The base documents, for paths no rule reaches.
    data: Value,
    rules: RuleIndex,
    fast: Option<Arc<FastPath>>,
    /// The functions the modules define, for checking ad-hoc queries.
    functions: Arc<Functions>,
}

impl Evaluator {
    /// Builds and warms an engine: resolves import references, parses every
    /// module, adds the data, runs the analysis once so that compile errors
    /// surface here, not per request, and compiles the fast path.
    pub fn build<'a>(
        modules: impl IntoIterator<Item = (&'a str, &'a str)>,
        data: Value,
    ) -> Result<Evaluator> {
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(false);
        // `print()` output is gathered and logged (`log_prints`), never
        // written raw to stderr, where the JSON log lines go.
        engine.set_gather_prints(true);
        for (id, text) in modules {
            let resolved = resolve_imports(id, text)?;
            engine
                .add_policy(id.to_string(), resolved.unwrap_or_else(|| text.to_string()))
                .map_err(|e| anyhow!("{}", format!("{e:#}").trim()))?;
        }
        engine.add_data(data.clone())?;
        engine.set_input(Value::new_object());
        // The first evaluation analyses the modules; do it now.
        engine
            .eval_query("true".to_string(), false)
            .map_err(|e| anyhow!("{}", format!("{e:#}").trim()))?;
        let names = super::rule_index::rule_names(&mut engine);
        let rules = RuleIndex::build(&mut engine, &names);
        if let Some((path, at)) = &rules.duplicate_default {
            return Err(at.compile_error(&format!("multiple default rules {path} found")));
        }
        let functions = Functions::of(&mut engine);
        if let Some((name, at)) = super::calls::first_undefined_call(&mut engine, &functions) {
            return Err(at.compile_error(&format!("undefined function {name}")));
        }
        // Before anything evaluates a rule: a cycle, or a chain too deep,
        // would overflow the stack.
        let dependencies = super::recursion::Dependencies::of(&mut engine, &names);
        if let Some((message, at)) = dependencies.first_problem() {
            return Err(at.compile_error(&message));
        }
        let mut rules = rules;
        rules.mark_conflict_prone(&dependencies);
        let entries = rules.fast_candidates();
        let (fast, rejected) = FastPath::build(&engine, &entries, &data);
        for r in &rejected {
            tracing::info!(entry = %r.entry, reason = %r.reason, "entry point left to the interpreter");
        }
        Ok(Evaluator {
            engine,
            data,
            rules,
            fast: fast.map(Arc::new),
            functions: Arc::new(functions),
        })
    }

    /// How many entry points run on the fast path.
    pub fn fast_entries(&self) -> usize {
        self.fast.as_ref().map_or(0, |f| f.len())
    }

    /// The input field the fast path's rules are indexed on (`input.scope`;
    /// see `fast/guard.rs`), if any.
    pub fn indexed_field(&self) -> Option<&str> {
        self.fast.as_ref().and_then(|f| f.indexed())
    }

    /// The fast path's copies of indexed rules: compiled and in use, and
    /// planned.
    pub fn indexed_copies(&self) -> (usize, usize) {
        self.fast.as_ref().map_or((0, 0), |f| f.indexed_copies())
    }

    /// Rules the fast path reads as constants (see `fold.rs`).
    pub fn folded_rules(&self) -> &[String] {
        self.fast.as_ref().map_or(&[], |f| f.folded())
    }

    pub fn rules(&self) -> &RuleIndex {
        &self.rules
    }

    /// Evaluates the document at `path` with `input` (None: no input document).
    pub fn evaluate(
        &self,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        if !self.rules.covers(path) {
            // No rule defines this document, one above it or one below it:
            // it is base data or nothing. The interpreter would evaluate the
            // enclosing package to find that out (~170 us on the default
            // policies, for `/v1/data/<package>/filter` where the package
            // has no `filter`).
            return Ok(Outcome::from_value(base_document(&self.data, path)));
        }
        let started = options.time_limit.map(|_| std::time::Instant::now());
        if !options.strict_builtin_errors {
            let answer = self.fast_step(path, input.clone(), options.time_limit);
            match answer {
                Some(Ok(outcome)) => return Ok(outcome),
                Some(Err(FastFailure::TimeLimit)) => {
                    return Err(EvalError::time_limit(
                        options.time_limit.unwrap_or_default(),
                    ))
                }
                // The interpreter gives the OPA-shaped answer or error.
                Some(Err(FastFailure::Other(err))) => {
                    tracing::debug!(path = %path, error = %err, "fast path failed; interpreting")
                }
                None => {}
            }
        }
        // The time limit holds for the whole evaluation, fast path included.
        let Some((limit, started)) = options.time_limit.zip(started) else {
            return self.evaluate_interpreted(path, input, options);
        };
        let rest = EvalOptions {
            time_limit: Some(limit.saturating_sub(started.elapsed())),
            ..options
        };
        self.evaluate_interpreted(path, input, rest)
            .map_err(|err| match err.is_time_limit() {
                true => EvalError::time_limit(limit),
                false => err,
            })
    }

    /// Evaluates on the fast path only, without falling back: `None` when
    /// `path` is not a fast-path entry point, `Some(Err)` with the VM's
    /// reason when the fast path would hand the decision to the interpreter.
    /// For the differential test, which must know who answered.
    pub fn evaluate_fast(
        &self,
        path: &DataPath,
        input: Option<Value>,
    ) -> Option<Result<Outcome, String>> {
        let answer = self.fast_step(path, input, None)?;
        Some(answer.map_err(|failure| failure.to_string()))
    }

    /// The fast path's own answer, shared by [`Self::evaluate`] and
    /// [`Self::evaluate_fast`].
    fn fast_step(
        &self,
        path: &DataPath,
        input: Option<Value>,
        time_limit: Option<std::time::Duration>,
    ) -> Option<Result<Outcome, FastFailure>> {
        let fast = self.fast.as_ref()?;
        let index = fast.entry(path.as_ref_str())?;
        let result = fast.evaluate(index, input.unwrap_or(Value::Undefined), time_limit);
        Some(result.map(Outcome::from_value))
    }

    /// Evaluates with the interpreter only (the reference the fast path is
    /// checked against).
    pub fn evaluate_interpreted(
        &self,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        self.with_interpreter(options, |engine| self.interpret(engine, path, input))
    }

    /// Runs `run` on a clone of the warmed interpreter, set up for
    /// `options` (strict built-in errors, the time limit).
    fn with_interpreter<T, E: From<EvalError>>(
        &self,
        options: EvalOptions,
        run: impl FnOnce(&mut Engine) -> Result<T, E>,
    ) -> Result<T, E> {
        let started = options.time_limit.map(|_| std::time::Instant::now());
        let mut engine = self.engine.clone();
        if options.strict_builtin_errors {
            engine.set_strict_builtin_errors(true);
        }
        if let Some(limit) = options.time_limit {
            engine.set_execution_timer_config(time_limit(limit));
        }
        // A clone of its own: a panic leaves nothing behind to reuse.
        let answer = match catch_panic(|| run(&mut engine)) {
            Ok(answer) => answer,
            Err(message) => return Err(EvalError::panicked(&message).into()),
        };
        let timed_out = options
            .time_limit
            .zip(started)
            .is_some_and(|(limit, started)| started.elapsed() > limit);
        // An evaluation stopped by its limit is evaluated again (or fails):
        // its prints would be logged twice, or for nothing.
        if !timed_out {
            log_prints(&mut engine);
        }
        // How a time limit is recognised: not by its error, which regorus
        // re-creates from its text when it is raised under a function call,
        // and drops when another definition of the function succeeds. The
        // timer fires only past the limit: an evaluation that ran past it is
        // a time-limit error, whatever it returned.
        match (options.time_limit, timed_out) {
            (Some(limit), true) => Err(EvalError::time_limit(limit).into()),
            _ => answer,
        }
    }

    fn interpret(
        &self,
        engine: &mut Engine,
        path: &DataPath,
        input: Option<Value>,
    ) -> Result<Outcome, EvalError> {
        engine.set_input(input.unwrap_or(Value::Undefined));
        let value = if self.rules.is_rule(path) {
            engine
                .eval_rule(path.as_ref_str().to_string())
                .map_err(|e| EvalError::from_regorus(&e))?
        } else {
            let results = engine
                .eval_query(path.as_ref_str().to_string(), false)
                .map_err(|e| EvalError::from_regorus(&e))?;
            results
                .result
                .into_iter()
                .next()
                .and_then(|r| r.expressions.into_iter().next())
                .map(|e| e.value)
                .unwrap_or(Value::Undefined)
        };
        Ok(Outcome::from_value(value))
    }
}

/// The `print()` output of an evaluation, as OPA's server logs it: one
/// `info` line per call, the printed text as its message and the calling
/// `line` (`file:row`; the row alone in an ad-hoc query) as a field; not
/// shown below `info`, as OPA enables print statements only from `info` up.
/// Where no logger is installed (the command-line tools), the text goes to
/// stderr as regorus prints it when not gathering.
fn log_prints(engine: &mut Engine) {
    let Ok(prints) = engine.take_prints() else {
        return;
    };
    for print in prints {
        let (line, message) = split_print(&print);
        if !tracing::dispatcher::has_been_set() {
            eprintln!("{message}");
            continue;
        }
        match query::query_row(line) {
            Some(row) => tracing::info!(line = %row, "{message}"),
            None => tracing::info!(line, "{message}"),
        }
    }
}

/// regorus's `file:row: text` as (`file:row`, `text`).
fn split_print(print: &str) -> (&str, &str) {
    print
        .match_indices(": ")
        .map(|(at, _)| at)
        .find(|&at| {
            print[..at]
                .rsplit_once(':')
                .is_some_and(|(_, row)| !row.is_empty() && row.bytes().all(|b| b.is_ascii_digit()))
        })
        .map_or(("", print), |at| (&print[..at], &print[at + 2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator(rego: &str) -> Evaluator {
        Evaluator::build([("p.rego", rego)], Value::new_object()).unwrap()
    }

    #[test]
    fn printed_lines_are_split_into_line_and_text() {
        assert_eq!(split_print("p.rego:4: a: b"), ("p.rego:4", "a: b"));
        assert_eq!(split_print("c:/x: y.rego:12: t"), ("c:/x: y.rego:12", "t"));
        assert_eq!(split_print("no location"), ("", "no location"));
    }

    /// However regorus words a conflict (across definitions, several values
    /// of one body, a function's several outputs), it is OPA's conflict.
    #[test]
    fn every_conflict_is_opas_conflict_error() {
        let e = evaluator(
            "package p\nx := input.c[_]\nf(a) := b if some b in input.c\ny := f(1)\n\
             z := 1 if input.c\nz := 2 if input.c\n",
        );
        let input = Value::from_json_str(r#"{"c": [1, 2]}"#).unwrap();
        for (rule, message) in [
            ("p/x", "complete rules must not produce multiple outputs"),
            (
                "p/y",
                "functions must not produce multiple outputs for same inputs",
            ),
            ("p/z", "complete rules must not produce multiple outputs"),
        ] {
            let err = e
                .evaluate(
                    &DataPath::parse(rule),
                    Some(input.clone()),
                    EvalOptions::default(),
                )
                .unwrap_err();
            assert_eq!(
                (err.code, err.message.as_str()),
                (EvalErrorCode::Conflict, message),
                "{rule}"
            );
        }
    }

    /// The RVM does not detect a conflict: it keeps one of the values (or
    /// none). Every rule that can conflict, and every rule reaching one,
    /// is answered by the interpreter, which raises OPA's error; the rules
    /// that cannot stay on the fast path.
    #[test]
    fn rules_that_can_conflict_are_left_to_the_interpreter() {
        let e = evaluator(
            "package p\nimport rego.v1\n\
             x1 := v if some v in input.c\nx2 := v if { v := input.c[_] }\n\
             f(a) := b if some b in input.c\ny := f(1)\n\
             g(a) := 1 if a\ng(a) := 2 if a\nyg := g(true)\n\
             obj[k] := v if { some v in input.c; k := \"a\" }\n\
             reads_x1 if x1\n\
             pair := n if input.pairs[[n, _]]\n\
             nest[k] := 1 if k := input.k\nnest.a := 2\n\
             fine if { some v in input.c; v > 1 }\nfine_value := count(input.c)\n\
             fine_set contains v if some v in input.c\n",
        );
        let input =
            Value::from_json_str(r#"{"c": [1, 2], "pairs": [[1, 0], [2, 0]], "k": "a"}"#).unwrap();
        for rule in ["x1", "x2", "y", "yg", "obj", "reads_x1", "pair", "nest"] {
            let path = DataPath::parse(&format!("p/{rule}"));
            assert_eq!(e.evaluate_fast(&path, Some(input.clone())), None, "{rule}");
            let served = e.evaluate(&path, Some(input.clone()), EvalOptions::default());
            // (regorus reads `input.pairs[[n, _]]` as undefined.)
            if rule != "pair" {
                assert_eq!(served.unwrap_err().code, EvalErrorCode::Conflict, "{rule}");
            }
        }
        for rule in ["fine", "fine_value", "fine_set"] {
            let path = DataPath::parse(&format!("p/{rule}"));
            assert!(
                matches!(e.evaluate_fast(&path, Some(input.clone())), Some(Ok(_))),
                "{rule}"
            );
        }
    }

    #[test]
    fn conflicts_are_classified_with_their_location() {
        let e = evaluator("package p\nx := 1\nx := 2 if input.y\n");
        let input = Value::from_json_str(r#"{"y": true}"#).unwrap();
        let err = e
            .evaluate(&DataPath::parse("p/x"), Some(input), EvalOptions::default())
            .unwrap_err();
        assert_eq!(err.code, EvalErrorCode::Conflict);
        assert_eq!(
            err.message,
            "complete rules must not produce multiple outputs"
        );
        assert_eq!(
            err.location,
            Some(Location {
                file: "p.rego".into(),
                row: 3,
                col: 1
            })
        );
    }

    #[test]
    fn builtin_errors_are_undefined_unless_strict() {
        let e = evaluator("package p\nx if startswith(input.n, \"a\")\n");
        let input = Value::from_json_str(r#"{"n": null}"#).unwrap();
        let path = DataPath::parse("p/x");
        let lax = e.evaluate(&path, Some(input.clone()), EvalOptions::default());
        assert_eq!(lax, Ok(Outcome::Undefined));
        let strict = EvalOptions {
            strict_builtin_errors: true,
            ..EvalOptions::default()
        };
        assert!(e.evaluate(&path, Some(input), strict).is_err());
    }

    /// A time limit stops a long evaluation with OPA's cancel code, on the
    /// fast path and in the interpreter (strict built-in errors go straight
    /// to it), in a rule body and under a function call (where regorus
    /// re-creates errors from their text); a quick one under the same limit
    /// is answered.
    #[test]
    fn a_time_limit_stops_a_long_evaluation() {
        let e = evaluator(
            "package p\nimport rego.v1\n\
             n := count([1 | some i in numbers.range(1, input.n); some j in numbers.range(1, input.n)])\n\
             pairs(k) := count([1 | some i in numbers.range(1, k); some j in numbers.range(1, k)])\n\
             m := pairs(input.n)\n",
        );
        assert_eq!(e.fast_entries(), 2, "the rules run on the fast path");
        let long = Value::from_json_str(r#"{"n": 100000}"#).unwrap();
        let short = Value::from_json_str(r#"{"n": 3}"#).unwrap();
        for rule in ["p/n", "p/m"] {
            let path = DataPath::parse(rule);
            for strict in [false, true] {
                let options = EvalOptions {
                    strict_builtin_errors: strict,
                    time_limit: Some(std::time::Duration::from_millis(50)),
                };
                let err = e.evaluate(&path, Some(long.clone()), options).unwrap_err();
                assert_eq!(
                    err.code,
                    EvalErrorCode::Cancel,
                    "{rule}, strict {strict}: {err}"
                );
                assert_eq!(
                    err.message,
                    "query evaluation exceeded its time limit of 50ms"
                );
                let answer = e.evaluate(&path, Some(short.clone()), options);
                assert_eq!(answer, Ok(Outcome::Defined(Value::from(9u64))));
            }
        }
    }

    /// A policy set of a few hundred rules stays on the fast path: one
    /// program for all of it overflowed regorus's register window (and made
    /// every decision reset every rule), so each package gets its own.
    #[test]
    fn large_policy_sets_stay_on_the_fast_path() {
        let mut modules = vec![(
            "u.rego".to_string(),
            "package u\nimport rego.v1\nadmin if input.role == \"admin\"\n".to_string(),
        )];
        for p in 0..8 {
            let mut text = format!("package p{p}\nimport rego.v1\nimport data.u\n");
            for r in 0..50 {
                text.push_str(&format!("r{r} if {{ input.scope == \"s{r}\"; u.admin }}\n"));
            }
            text.push_str("allow if r0\nallow if r49\n");
            modules.push((format!("p{p}.rego"), text));
        }
        // And one package with more entry points than one program holds
        // (one result register each, in a 255-register window).
        let mut text = "package big\nimport rego.v1\nimport data.u\n".to_string();
        for r in 0..400 {
            text.push_str(&format!("r{r} if {{ input.scope == \"s{r}\"; u.admin }}\n"));
        }
        modules.push(("big.rego".to_string(), text));
        let e = Evaluator::build(
            modules
                .iter()
                .map(|(id, text)| (id.as_str(), text.as_str())),
            Value::new_object(),
        )
        .unwrap();
        assert_eq!(e.fast_entries(), 8 * 51 + 1 + 400);
        // u, p0..p7, and `big` in more than one program.
        let programs = e.fast.as_ref().map_or(0, |f| f.programs());
        assert!(programs > 10, "{programs} programs");
        let input = Value::from_json_str(r#"{"scope": "s399", "role": "admin"}"#).unwrap();
        assert_eq!(
            e.evaluate_fast(&DataPath::parse("big/r399"), Some(input)),
            Some(Ok(Outcome::Defined(Value::from(true))))
        );
        let input = Value::from_json_str(r#"{"scope": "s49", "role": "admin"}"#).unwrap();
        for p in 0..8 {
            let path = DataPath::parse(&format!("p{p}/allow"));
            assert_eq!(
                e.evaluate_fast(&path, Some(input.clone())),
                Some(Ok(Outcome::Defined(Value::from(true)))),
                "{path}"
            );
        }
    }

    /// Paths no rule reaches are answered from the data directly; the
    /// interpreter is the reference for every one of them.
    #[test]
    fn paths_no_rule_reaches_answer_as_the_interpreter_does() {
        let data = Value::from_json_str(
            r#"{"d": {"a": [10, {"x": "y"}], "0": "zero", "7": "seven", "a-b": null, "n": {}},
                "q": {"v": 1}}"#,
        )
        .unwrap();
        let e = Evaluator::build(
            [
                (
                    "p.rego",
                    "package q.r\nallow if input.x\nobj[k] := 1 if some k in [\"a\"]\ndeep[k].leaf := k if some k in [\"b\"]\nlist := [5, 6]\n",
                ),
                ("e.rego", "package e.f\nimport rego.v1\n"),
            ],
            data,
        )
        .unwrap();
        for path in [
            "d",
            "d/a",
            "d/a/0",
            "d/a/1/x",
            "d/a/2",
            "d/a/x",
            "d/0",
            "d/a-b",
            "d/n",
            "d/n/z",
            "d/missing",
            "nope",
            "nope/deeper",
            "q/v",
            "q/r/filter",
            "q/r/obj/a",
            "q/r/deep/b/leaf",
            "q/r/deep/c",
            "e",
            "e/f",
            "e/f/g",
            "",
            "d/007",
            "d/a/01",
            "d/a/00",
        ] {
            let path = DataPath::parse(path);
            let input = Some(Value::from_json_str(r#"{"x": true}"#).unwrap());
            let interpreted = e.evaluate_interpreted(&path, input.clone(), EvalOptions::default());
            assert_eq!(
                e.evaluate(&path, input, EvalOptions::default()),
                interpreted,
                "{path}"
            );
        }
        // Leading zeros, as OPA reads them (`007` is 7), in rules and data.
        for (path, want) in [("q/r/list/01", 6), ("d/a/00", 10)] {
            assert_eq!(
                e.evaluate(&DataPath::parse(path), None, EvalOptions::default()),
                Ok(Outcome::Defined(Value::from(want))),
                "{path}"
            );
        }
        let rules = e.rules();
        assert!(!rules.covers(&DataPath::parse("q/r/filter")));
        assert!(rules.covers(&DataPath::parse("q/r/deep/b/leaf")));
        assert!(rules.covers(&DataPath::parse("q/r/obj/a")));
    }
}
