//! The evaluation interface: query path + input -> [`Outcome`] or [`EvalError`].
//!
//! Everything that answers a query sits behind [`Evaluator::evaluate`], so a
//! faster backend can replace the regorus interpreter without touching the
//! request path. Today it is the interpreter: a warmed [`regorus::Engine`] is
//! built once per snapshot and cloned per decision (about 0.3 us).

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};
use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::{Engine, Value};

use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::fast::FastPath;
use super::path::DataPath;
use super::purity::{impure_packages, ModuleText};
use super::resolve::resolve_imports;

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
    /// Wall-clock limit for one evaluation (none by default).
    pub time_limit: Option<std::time::Duration>,
}

/// Where in a policy an error arose; serializes as OPA's `location`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
        let text = format!("{err:#}");
        let Diagnostic {
            location,
            message: raw,
        } = Diagnostic::from_text(&text);
        // A built-in's own failure (not a type error), as OPA words it:
        // `<name>: <error>`. regorus does not mark these but reports them at
        // the argument of the failing call; `/` and `%` are OPA's `div` and
        // `rem`, recognised by their messages first.
        let builtin = match raw.as_str() {
            "divide by zero" => Some("div".to_string()),
            "modulo by zero" | "modulo on floating-point number" => Some("rem".to_string()),
            _ => location
                .as_ref()
                .and_then(|at| super::diagnostic::called_at(&text, at))
                .filter(|name| regorus::unstable::BUILTINS.contains_key(name.as_str())),
        };
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
        } else if let Some(name) = builtin {
            (EvalErrorCode::Builtin, format!("{name}: {raw}"))
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
    /// Documents the fast path must not answer: those of modules that may
    /// reach a complete rule with several definitions that can disagree. OPA
    /// reports such a disagreement as `eval_conflict_error`; the RVM does not
    /// detect it, so these stay with the interpreter.
    conflict_prone: HashSet<String>,
    /// Packages whose documents the decision cache must not answer
    /// (`None`: the analysis failed, cache nothing).
    impure: Option<Vec<Vec<String>>>,
    /// A second `default` rule for the same document (OPA rejects these;
    /// regorus accepts them across modules): the document and where.
    duplicate_default: Option<(String, Location)>,
}

impl RuleIndex {
    fn build(engine: &mut Engine) -> RuleIndex {
        let mut index = RuleIndex::default();
        // Per module: its package and the documents it defines.
        let mut modules: Vec<(String, String, Vec<String>)> = Vec::new();
        // Complete rule -> the value text of each definition (None: not a constant).
        let mut complete: std::collections::HashMap<String, (String, Vec<Option<String>>)> =
            Default::default();
        let mut texts: Vec<(String, Vec<String>, String)> = Vec::new();
        let mut defaults: HashSet<String> = HashSet::new();
        for module in engine.get_modules().iter() {
            let Some(package) = ref_segments(&module.package.refr) else {
                continue;
            };
            let package_name = DataPath::from_segments(package.clone()).to_string();
            let mut documents = Vec::new();
            for rule in &module.policy {
                let (head, is_function) = match rule.as_ref() {
                    Rule::Spec { head, .. } => match head {
                        RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
                        RuleHead::Func { refr, .. } => (refr, true),
                    },
                    Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
                };
                let Some(head_segments) = ref_segments(head) else {
                    continue;
                };
                let mut path = package.clone();
                path.extend(head_segments);
                if let Rule::Default { span, .. } = rule.as_ref() {
                    let rendered = DataPath::from_segments(path.clone()).to_string();
                    if !defaults.insert(rendered.clone()) && index.duplicate_default.is_none() {
                        let location = Location {
                            file: span.source.get_path().clone(),
                            row: span.line,
                            col: span.col,
                        };
                        index.duplicate_default = Some((rendered, location));
                    }
                }
                if !is_function {
                    let rendered = DataPath::from_segments(path.clone()).to_string();
                    if let Rule::Spec {
                        head: RuleHead::Compr { refr, assign, .. },
                        ..
                    } = rule.as_ref()
                    {
                        if is_static_ref(refr) {
                            let value = match assign {
                                None => Some("true".to_string()),
                                Some(a) => {
                                    is_constant(&a.value).then(|| a.value.span().text().to_string())
                                }
                            };
                            complete
                                .entry(rendered.clone())
                                .or_insert_with(|| (package_name.clone(), Vec::new()))
                                .1
                                .push(value);
                        }
                    }
                    index.documents.insert(rendered.clone());
                    documents.push(rendered);
                }
                index.all.push(path);
            }
            let text = module.package.span.source.get_contents().clone();
            texts.push((
                module.package.span.source.get_path().clone(),
                package.clone(),
                text.clone(),
            ));
            modules.push((package_name, text, documents));
        }
        let module_texts: Vec<ModuleText> = texts
            .iter()
            .map(|(id, package, text)| ModuleText {
                id,
                package: package.clone(),
                text,
            })
            .collect();
        index.impure = impure_packages(&module_texts).ok();
        let prone_packages: HashSet<&str> = complete
            .values()
            .filter(|(_, defs)| {
                defs.len() > 1
                    && (defs.iter().any(Option::is_none)
                        || defs.iter().collect::<HashSet<_>>().len() > 1)
            })
            .map(|(package, _)| package.as_str())
            .collect();
        for (package, text, documents) in &modules {
            let touches = prone_packages
                .iter()
                .any(|p| p == package || mentions(text, p));
            if touches {
                index.conflict_prone.extend(documents.iter().cloned());
            }
        }
        index
    }

    /// Documents the fast path may answer.
    pub fn fast_candidates(&self) -> Vec<String> {
        let mut entries: Vec<String> = self
            .documents
            .difference(&self.conflict_prone)
            .cloned()
            .collect();
        entries.sort();
        entries
    }

    /// Whether the document at `path` is a function of input, data and policy
    /// alone, so that its answers may be cached (see `purity.rs`).
    pub fn cacheable(&self, path: &DataPath) -> bool {
        let Some(impure) = &self.impure else {
            return false;
        };
        let segments = path.segments();
        !impure
            .iter()
            .any(|p| p.starts_with(segments) || segments.starts_with(p))
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

/// Whether `text` refers to the package `package` (`data.p`), as `data.p.x`,
/// `data.p[...]` or `data.p` itself.
fn mentions(text: &str, package: &str) -> bool {
    text.match_indices(package).any(|(i, m)| {
        let next = text[i + m.len()..].chars().next();
        !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '_')
    })
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
    fast: Option<Arc<FastPath>>,
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
        let rules = RuleIndex::build(&mut engine);
        if let Some((path, at)) = &rules.duplicate_default {
            bail!(
                "--> {}:{}:{}\nerror: multiple default rules {path} found",
                at.file,
                at.row,
                at.col
            );
        }
        let entries = rules.fast_candidates();
        let (fast, rejected) = FastPath::build(&engine, &entries, &data);
        for r in &rejected {
            tracing::info!(entry = %r.entry, reason = %r.reason, "entry point left to the interpreter");
        }
        Ok(Evaluator {
            engine,
            rules,
            fast: fast.map(Arc::new),
        })
    }

    /// How many entry points run on the fast path.
    pub fn fast_entries(&self) -> usize {
        self.fast.as_ref().map_or(0, |f| f.len())
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
        if !options.strict_builtin_errors {
            let answer = self.fast_step(path, input.clone(), options.time_limit);
            match answer {
                Some(Ok(outcome)) => return Ok(outcome),
                // The interpreter gives the OPA-shaped answer or error.
                Some(Err(err)) => {
                    tracing::debug!(path = %path, error = %err, "fast path failed; interpreting")
                }
                None => {}
            }
        }
        self.evaluate_interpreted(path, input, options)
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
        self.fast_step(path, input, None)
    }

    /// The fast path's own answer, shared by [`Self::evaluate`] and
    /// [`Self::evaluate_fast`].
    fn fast_step(
        &self,
        path: &DataPath,
        input: Option<Value>,
        time_limit: Option<std::time::Duration>,
    ) -> Option<Result<Outcome, String>> {
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
        Ok(Outcome::from_value(value))
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
