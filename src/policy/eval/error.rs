//! Evaluation errors in OPA's topdown terms: their codes, their location,
//! the reading of regorus's error text into them, and the error a caught
//! panic of regorus becomes.

use crate::policy::diagnostic::Diagnostic;

/// Where in a policy an error arose; serializes as OPA's `location`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub file: String,
    pub row: u32,
    pub col: u32,
}

impl Location {
    /// Where `span` starts.
    pub fn at(span: &regorus::unstable::Span) -> Location {
        Location {
            file: span.source.get_path().clone(),
            row: span.line,
            col: span.col,
        }
    }

    /// A compile error at this location, in regorus's error text (what
    /// [`Diagnostic`] reads back).
    pub fn compile_error(&self, message: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "--> {}:{}:{}\nerror: {message}",
            self.file,
            self.row,
            self.col
        )
    }
}

/// OPA's topdown error codes that Regent can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalErrorCode {
    Conflict,
    Type,
    Builtin,
    Internal,
    /// The evaluation overran [`EvalOptions::time_limit`] (OPA's code for a
    /// query stopped before it finished).
    Cancel,
}

impl EvalErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalErrorCode::Conflict => "eval_conflict_error",
            EvalErrorCode::Type => "eval_type_error",
            EvalErrorCode::Builtin => "eval_builtin_error",
            EvalErrorCode::Internal => "eval_internal_error",
            EvalErrorCode::Cancel => "eval_cancel_error",
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

/// Runs `run`, which calls into regorus, catching a panic: `Err` with the
/// text it was raised with. The caller drops (or replaces) whatever `run`
/// left half-changed.
pub(in crate::policy) fn catch_panic<T>(run: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string())
    })
}

impl EvalError {
    /// The evaluation overran its time limit.
    pub fn time_limit(limit: std::time::Duration) -> EvalError {
        EvalError {
            code: EvalErrorCode::Cancel,
            message: format!("query evaluation exceeded its time limit of {limit:?}"),
            location: None,
        }
    }

    /// regorus panicked during the evaluation (an `expect` on input it did
    /// not foresee, such as a `sprintf` precision beyond what Rust's
    /// formatting takes): the request is answered with this error rather
    /// than losing its connection.
    pub fn panicked(message: &str) -> EvalError {
        EvalError {
            code: EvalErrorCode::Internal,
            message: format!("evaluation failed: regorus panicked: {message}"),
            location: None,
        }
    }

    /// Whether this is the error of an overrun time limit.
    pub fn is_time_limit(&self) -> bool {
        self.code == EvalErrorCode::Cancel
    }

    /// Classifies a regorus error. regorus reports errors as text of the form
    /// `--> file:row:col ... error: message`; the location and message are
    /// taken from it and the code from its wording.
    pub(super) fn from_regorus(err: &anyhow::Error) -> EvalError {
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
                .and_then(|at| crate::policy::diagnostic::called_at(&text, at))
                .filter(|name| regorus::unstable::BUILTINS.contains_key(name.as_str())),
        };
        // regorus words a conflict several ways: `rule conflicts with rule
        // at ...`, `rules must not produce multiple outputs`, `complete rules
        // should not ...`, `function produced multiple outputs ...`.
        let (code, message) = if raw.contains("conflicts with") || raw.contains("multiple outputs")
        {
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
