//! Turning regorus's error text into structured diagnostics. regorus reports
//! parse, compile and evaluation errors as text of the form
//! `--> file:row:col ... error: message`; this pulls out the location and the
//! message so they can be shown as `file:row:col: message` or sent as OPA's
//! `location` object.

use super::eval::Location;

/// One error with its location, when regorus gave one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Option<Location>,
    pub message: String,
}

impl Diagnostic {
    pub fn from_regorus(err: &anyhow::Error) -> Diagnostic {
        Diagnostic::from_text(&format!("{err:#}"))
    }

    pub fn from_text(text: &str) -> Diagnostic {
        let location = text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("--> ")?;
            let mut parts = rest.rsplitn(3, ':');
            let col = parts.next()?.trim().parse().ok()?;
            let row = parts.next()?.trim().parse().ok()?;
            let file = parts.next()?.to_string();
            Some(Location { file, row, col })
        });
        let message = text
            .rfind("error: ")
            .map(|i| text[i + "error: ".len()..].trim())
            .unwrap_or(text.trim())
            .to_string();
        Diagnostic { location, message }
    }
}

/// A diagnostic with OPA's error code, as OPA lists compile errors:
/// `{"code", "message", "location": {"file", "row", "col"}}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CodedDiagnostic {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    pub fn with_code(&self, code: &'static str) -> CodedDiagnostic {
        CodedDiagnostic {
            code,
            message: self.message.clone(),
            location: self.location.clone(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{}:{}:{}: {}", l.file, l.row, l.col, self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_and_message_are_extracted() {
        let d = Diagnostic::from_text(
            "\n--> dir/bad.rego:4:1\n  |\n4 | }\n  | ^\nerror: expecting expression",
        );
        assert_eq!(d.to_string(), "dir/bad.rego:4:1: expecting expression");
        let d = Diagnostic::from_text("not a valid rule path");
        assert_eq!(
            (d.location, d.message.as_str()),
            (None, "not a valid rule path")
        );
    }
}
