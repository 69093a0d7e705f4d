//! Data paths: the `a/b/c` of `/v1/data/a/b/c`, decoded into segments and
//! rendered as a Rego reference (`data.a.b.c`, `data.x["a-b"]`, `data.x[0]`).

use std::fmt;

/// The most segments a path that creates documents may have (a data `PUT`,
/// a bundle file's directory, a delta bundle's patch path). Each segment is
/// a level of nesting, and deeply nested values are dropped, cloned and
/// serialized recursively: without a bound, one crafted path could overflow
/// the stack. The same bound as JSON nesting in bundles.
pub const MAX_PATH_SEGMENTS: usize = 128;

/// The deepest a data document written through the API may nest (its path
/// plus the nesting of its value); `PATCH` operations that copy or move a
/// document can otherwise double its depth with each operation.
pub const MAX_DOCUMENT_DEPTH: usize = 2 * MAX_PATH_SEGMENTS;

/// A reference into the data document, rooted at `data`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DataPath {
    segments: Vec<String>,
    rendered: String,
}

const KEYWORDS: &[&str] = &[
    "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in", "input",
    "not", "null", "package", "some", "true", "with",
];

impl DataPath {
    /// The root document, `data`.
    pub fn root() -> DataPath {
        DataPath::from_segments(Vec::new())
    }

    /// Parses a slash-separated, already percent-decoded path. Empty segments
    /// (from `a//b` or a trailing slash) are ignored.
    pub fn parse(path: &str) -> DataPath {
        DataPath::from_segments(
            path.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// Parses a path as sent in a URL: split on its slashes first, then each
    /// segment percent-decoded, as OPA does (`a%2Fb` is the one key `a/b`).
    /// `None` when a segment does not decode to UTF-8.
    pub fn parse_escaped(raw: &str) -> Option<DataPath> {
        let segments = raw
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned())
            })
            .collect::<Option<Vec<String>>>()?;
        Some(DataPath::from_segments(segments))
    }

    /// Parses a dotted rule reference such as `data.system.main` or `system.main`.
    pub fn from_dotted(dotted: &str) -> DataPath {
        let rest = dotted.strip_prefix("data").unwrap_or(dotted);
        DataPath::from_segments(
            rest.split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    pub fn from_segments(segments: Vec<String>) -> DataPath {
        // Room for `.segment` or `["segment"]` each: one allocation for
        // the usual path.
        let room = segments.iter().map(|s| s.len() + 4).sum::<usize>();
        let mut rendered = String::with_capacity(4 + room);
        rendered.push_str("data");
        for segment in &segments {
            render_segment(&mut rendered, segment);
        }
        DataPath { segments, rendered }
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The Rego reference text, e.g. `data.a["b-c"]`.
    pub fn as_ref_str(&self) -> &str {
        &self.rendered
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &DataPath) -> bool {
        self.segments.starts_with(&other.segments)
    }
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

fn render_segment(out: &mut String, segment: &str) {
    if is_identifier(segment) {
        out.push('.');
        out.push_str(segment);
    } else if is_index(segment) {
        out.push('[');
        out.push_str(canonical_index(segment));
        out.push(']');
    } else {
        out.push('[');
        // A JSON string literal is a valid Rego string literal.
        out.push_str(&serde_json::Value::String(segment.to_string()).to_string());
        out.push(']');
    }
}

/// The number a segment of digits stands for, as OPA reads it (`strconv.Atoi`:
/// `007` is 7), without the leading zeros Rego's lexer refuses.
pub(crate) fn canonical_index(segment: &str) -> &str {
    let trimmed = segment.trim_start_matches('0');
    if trimmed.is_empty() {
        "0"
    } else {
        trimmed
    }
}

/// A segment rendered as a number (`data.x[0]`), not as a string key.
pub(crate) fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.len() < 16 && segment.bytes().all(|b| b.is_ascii_digit())
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !KEYWORDS.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_identifiers_strings_and_indices() {
        assert_eq!(DataPath::parse("a/b").as_ref_str(), "data.a.b");
        assert_eq!(DataPath::parse("/x/a-b/").as_ref_str(), r#"data.x["a-b"]"#);
        assert_eq!(DataPath::parse("x/0").as_ref_str(), "data.x[0]");
        assert_eq!(DataPath::parse("x/007/00").as_ref_str(), "data.x[7][0]");
        assert_eq!(DataPath::parse("x/if").as_ref_str(), r#"data.x["if"]"#);
        assert_eq!(
            DataPath::parse(r#"x/a"b"#).as_ref_str(),
            r#"data.x["a\"b"]"#
        );
        assert_eq!(DataPath::root().as_ref_str(), "data");
        assert_eq!(
            DataPath::from_dotted("data.system.main"),
            DataPath::parse("system/main")
        );
    }
}
