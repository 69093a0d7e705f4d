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

    /// OPA's code for this error of a module that parses:
    /// `rego_type_error` for what OPA's type checker finds (a call to an
    /// undefined function, `calls.rs`), `rego_recursion_error` for a rule
    /// that depends on itself (`recursion.rs`), else `rego_compile_error`.
    pub fn compile_code(&self) -> &'static str {
        if self.message.starts_with("undefined function ") {
            "rego_type_error"
        } else if self.message.starts_with("rule ") && self.message.contains(" is recursive: ") {
            "rego_recursion_error"
        } else {
            "rego_compile_error"
        }
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

/// The name of the innermost call whose arguments hold `location`, read
/// from the source excerpt regorus puts in its error text
/// (`3 | a := to_number("x")`): regorus reports a failing built-in at the
/// argument it was given. Columns follow regorus's lexer (a tab is 4
/// columns); a line with non-ASCII text before the location is ambiguous
/// (regorus counts string contents in bytes) and gives `None`. Parentheses
/// inside string literals are skipped.
pub fn called_at(text: &str, location: &Location) -> Option<String> {
    let prefix = format!("{} | ", location.row);
    let line = text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))?;
    let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
    let bytes = line.as_bytes();
    // Open calls at the current position: the name before each `(`.
    let mut open: Vec<Option<&str>> = Vec::new();
    let (mut col, mut i) = (1u32, 0usize);
    let mut quote: Option<u8> = None;
    while i < bytes.len() && col < location.col {
        let c = bytes[i];
        if !c.is_ascii() {
            return None;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(b'"') if c == b'\\' => {
                i += 1;
                col += 1;
            }
            Some(_) => {}
            None => match c {
                b'"' | b'`' => quote = Some(c),
                b'(' => {
                    let start = bytes[..i]
                        .iter()
                        .rposition(|&b| !is_name(b))
                        .map_or(0, |p| p + 1);
                    open.push((start < i).then(|| &line[start..i]));
                }
                b')' => {
                    open.pop();
                }
                _ => {}
            },
        }
        col += if c == b'\t' { 4 } else { 1 };
        i += 1;
    }
    if col != location.col {
        return None;
    }
    open.last().copied().flatten().map(str::to_string)
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

    #[test]
    fn the_call_enclosing_the_location_is_found() {
        let at = |text: &str| {
            let location = Diagnostic::from_text(text).location.unwrap();
            called_at(text, &location)
        };
        // At the rejected argument.
        let text = "\n--> p.rego:3:16\n  |\n3 | a := to_number(\"x\")\n";
        assert_eq!(at(text).as_deref(), Some("to_number"));
        // Tabs are 4 columns; `(` inside strings does not count.
        let text = "\n--> p.rego:3:33\n  |\n3 | \tx := concat(\"(\", [to_number(s)])\n";
        assert_eq!(at(text).as_deref(), Some("to_number"));
        // An argument that is a call: the enclosing call is blamed.
        let text = "\n--> p.rego:3:16\n  |\n3 | a := to_number(lower(s))\n";
        assert_eq!(at(text).as_deref(), Some("to_number"));
        // Not inside a call; non-ASCII before the location.
        let text = "\n--> p.rego:3:6\n  |\n3 | a := 1 / 0\n";
        assert_eq!(at(text), None);
        let text = "\n--> p.rego:3:22\n  |\n3 | a := \"\u{65e5}\" + to_number(s)\n";
        assert_eq!(at(text), None);
    }
}
