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

/// The name of the function whose call encloses `location` (or starts at
/// it), read from the source excerpt regorus puts in its error text
/// (`3 | a := to_number("x")`): regorus reports a failing built-in at its
/// call or at the argument it rejected.
pub fn called_at(text: &str, location: &Location) -> Option<String> {
    let prefix = format!("{} | ", location.row);
    let line: Vec<char> = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))?
        .chars()
        .collect();
    let at = (location.col.saturating_sub(1) as usize).min(line.len());
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_' || *c == '.';
    // A call starting at the location.
    let len = line[at..].iter().take_while(|c| is_name(c)).count();
    if len > 0 && line.get(at + len) == Some(&'(') {
        return Some(line[at..at + len].iter().collect());
    }
    // The innermost call open at the location.
    let mut depth = 0usize;
    for open in (0..at).rev() {
        match line[open] {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let start = line[..open]
                    .iter()
                    .rposition(|c| !is_name(c))
                    .map_or(0, |i| i + 1);
                return (start < open).then(|| line[start..open].iter().collect());
            }
            _ => {}
        }
    }
    None
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
    fn the_function_called_at_the_location_is_found() {
        let text = "\n--> p.rego:3:6\n  |\n3 | a := to_number(\"x\")\n  |      ^\nerror: bad";
        let d = Diagnostic::from_text(text);
        let at = d.location.unwrap();
        assert_eq!(called_at(text, &at).as_deref(), Some("to_number"));
        // At an argument: the innermost enclosing call.
        let text = "\n--> p.rego:3:30\n  |\n3 | a := to_number(concat(\",\", [x]), f(1))\n";
        let at = Diagnostic::from_text(text).location.unwrap();
        assert_eq!(called_at(text, &at).as_deref(), Some("concat"));
        let text = "\n--> p.rego:3:6\n  |\n3 | a := 1 / 0\n  |      ^\nerror: bad";
        let at = Diagnostic::from_text(text).location.unwrap();
        assert_eq!(called_at(text, &at), None);
    }
}
