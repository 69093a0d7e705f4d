//! The evaluation interface: query path + input -> [`Outcome`] or [`EvalError`].
//!
//! Everything that answers a query sits behind [`Evaluator::evaluate`], so a
//! faster backend can replace the regorus interpreter without touching the
//! request path. Today it is the interpreter: a warmed [`regorus::Engine`] is
//! built once per snapshot and cloned per decision (about 0.3 us).

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::{Engine, Value};

use super::diagnostic::Diagnostic;
use super::path::DataPath;

/// The answer to one query. Undefined is a value, not an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Defined(Value),
    Undefined,
}

/// Per-request evaluation switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvalOptions {
    /// OPA's `strict-builtin-errors`: built-in errors abort evaluation instead
    /// of making the expression undefined.
    pub strict_builtin_errors: bool,
    /// Wall-clock limit for one evaluation (none by default).
    pub time_limit: Option<std::time::Duration>,
}

/// Where in a policy an error arose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub row: u32,
    pub col: u32,
}

/// OPA's topdown error codes that Regent can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalErrorCode {
    Conflict,
    Type,
    Builtin,
    Internal,
}

impl EvalErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalErrorCode::Conflict => "eval_conflict_error",
            EvalErrorCode::Type => "eval_type_error",
            EvalErrorCode::Builtin => "eval_builtin_error",
            EvalErrorCode::Internal => "eval_internal_error",
        }
    }
}

/// An error that stopped evaluation, in OPA's topdown terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub code: EvalErrorCode,
    pub message: String,
    pub location: Option<Location>,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{}:{}: ", loc.file, loc.row)?;
        }
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for EvalError {}

impl EvalError {
    /// Classifies a regorus error. regorus reports errors as text of the form
    /// `--> file:row:col ... error: message`; the location and message are
    /// taken from it and the code from its wording.
    fn from_regorus(err: &anyhow::Error) -> EvalError {
        let Diagnostic {
            location,
            message: raw,
        } = Diagnostic::from_regorus(err);
        let (code, message) = if raw.contains("conflicts with") {
            let message = if raw.contains("function") {
                "functions must not produce multiple outputs for same inputs"
            } else {
                "complete rules must not produce multiple outputs"
            };
            (EvalErrorCode::Conflict, message.to_string())
        } else if raw.contains(" expects ") || raw.contains("type mismatch") {
            (EvalErrorCode::Type, raw)
        } else if raw.starts_with('`') {
            (EvalErrorCode::Builtin, raw)
        } else {
            (EvalErrorCode::Internal, raw)
        };
        EvalError {
            code,
            message,
            location,
        }
    }
}

/// The rule paths a policy set defines, for choosing the direct rule
/// evaluation and for telling "undefined" from "missing".
#[derive(Clone, Debug, Default)]
pub struct RuleIndex {
    /// Rendered paths of complete, partial set and partial object rules.
    documents: HashSet<String>,
    /// Segment paths of every rule (functions included).
    all: Vec<Vec<String>>,
}

impl RuleIndex {
    fn build(engine: &mut Engine) -> RuleIndex {
        let mut index = RuleIndex::default();
        for module in engine.get_modules().iter() {
            let Some(package) = ref_segments(&module.package.refr) else {
                continue;
            };
            for rule in &module.policy {
                let (head, is_function) = match rule.as_ref() {
                    Rule::Spec { head, .. } => match head {
                        RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
                        RuleHead::Func { refr, .. } => (refr, true),
                    },
                    Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
                };
                let Some(head) = ref_segments(head) else {
                    continue;
                };
                let mut path = package.clone();
                path.extend(head);
                if !is_function {
                    index.documents.insert(
                        DataPath::from_segments(path.clone())
                            .as_ref_str()
                            .to_string(),
                    );
                }
                index.all.push(path);
            }
        }
        index
    }

    /// Whether `path` names a rule's document exactly.
    pub fn is_rule(&self, path: &DataPath) -> bool {
        self.documents.contains(path.as_ref_str())
    }

    /// Whether some rule defines `path`, a document above it, or one below it.
    pub fn covers(&self, path: &DataPath) -> bool {
        let segments = path.segments();
        self.all
            .iter()
            .any(|rule| rule.starts_with(segments) || segments.starts_with(rule))
    }
}

/// An interpreter time limit, checked every 64 units of work.
pub fn time_limit(limit: std::time::Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
    }
}

/// The static prefix of a reference: `a.b["c"][x]` -> `[a, b, c]`.
pub(crate) fn ref_segments(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Var { span, .. } => Some(vec![span.text().to_string()]),
        Expr::RefDot { refr, field, .. } => {
            let mut v = ref_segments(refr)?;
            v.push(field.0.text().to_string());
            Some(v)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut v = ref_segments(refr)?;
            if let Expr::String { value, .. } = index.as_ref() {
                v.push(value.as_string().ok()?.to_string());
            }
            Some(v)
        }
        _ => None,
    }
}

/// A ready evaluator over one set of modules and data.
#[derive(Clone)]
pub struct Evaluator {
    engine: Engine,
    rules: RuleIndex,
}

impl Evaluator {
    /// Builds and warms an engine: parses every module, adds the data, and runs
    /// the analysis once so that compile errors surface here, not per request.
    pub fn build<'a>(
        modules: impl IntoIterator<Item = (&'a str, &'a str)>,
        data: Value,
    ) -> Result<Evaluator> {
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(false);
        for (id, text) in modules {
            engine
                .add_policy(id.to_string(), text.to_string())
                .map_err(|e| anyhow!("{}", format!("{e:#}").trim()))?;
        }
        engine.add_data(data)?;
        engine.set_input(Value::new_object());
        // The first evaluation analyses the modules; do it now.
        engine
            .eval_query("true".to_string(), false)
            .map_err(|e| anyhow!("{}", format!("{e:#}").trim()))?;
        let rules = RuleIndex::build(&mut engine);
        Ok(Evaluator { engine, rules })
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
        let mut engine = self.engine.clone();
        if options.strict_builtin_errors {
            engine.set_strict_builtin_errors(true);
        }
        if let Some(limit) = options.time_limit {
            engine.set_execution_timer_config(time_limit(limit));
        }
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
        Ok(match value {
            Value::Undefined => Outcome::Undefined,
            value => Outcome::Defined(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator(rego: &str) -> Evaluator {
        Evaluator::build([("p.rego", rego)], Value::new_object()).unwrap()
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

    #[test]
    fn rule_index_knows_rules_packages_and_functions() {
        let e = evaluator("package p.q\nx := 1\nf(a) := a\ns contains 1\n");
        let rules = e.rules();
        assert!(rules.is_rule(&DataPath::parse("p/q/x")));
        assert!(rules.is_rule(&DataPath::parse("p/q/s")));
        assert!(!rules.is_rule(&DataPath::parse("p/q/f")));
        assert!(rules.covers(&DataPath::parse("p")));
        assert!(rules.covers(&DataPath::parse("p/q/x/y")));
        assert!(!rules.covers(&DataPath::parse("p/r")));
    }
}
