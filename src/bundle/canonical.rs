//! The canonical JSON form OPA hashes structured bundle files in: object
//! keys sorted, no whitespace, numbers as written (Go's `json.Number`),
//! strings re-encoded as Go's encoder writes them.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{anyhow, Result};
use serde_json::value::RawValue;

/// JSON with object keys sorted and no whitespace, as OPA hashes it:
/// numbers keep their literal text (`0.50` stays `0.50`, as Go's
/// `json.Number`), strings are re-encoded as Go encodes them. One pass over
/// the text (after serde_json has checked it), so the cost grows with the
/// size of the document, not with its size times its depth.
pub fn canonical_json(text: &str) -> Result<String> {
    let _: &RawValue = serde_json::from_str(text)?;
    let mut at = 0;
    let node = parse(text, &mut at, 0)?;
    let mut out = String::with_capacity(text.len());
    write(&node, text, &mut out)?;
    Ok(out)
}

/// A value of checked JSON text: strings and scalars are spans of it.
enum Node {
    /// Members by decoded key; the last of duplicate keys wins, as in Go.
    Object(BTreeMap<String, Node>),
    Array(Vec<Node>),
    String(Range<usize>),
    /// A number, `true`, `false` or `null`: written as it stands.
    Scalar(Range<usize>),
}

fn skip_whitespace(text: &str, at: &mut usize) {
    let bytes = text.as_bytes();
    while bytes
        .get(*at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        *at += 1;
    }
}

/// Expects `byte` at `at` (after whitespace) and steps over it.
fn expect(text: &str, at: &mut usize, byte: u8) -> Result<()> {
    skip_whitespace(text, at);
    if text.as_bytes().get(*at) != Some(&byte) {
        return Err(anyhow!("expected `{}` at byte {at}", byte as char));
    }
    *at += 1;
    Ok(())
}

/// How deep a document may nest: serde_json's own limit for parsing. The
/// check above does not apply it (a `RawValue` is scanned without one), and
/// this parser, the writer and the tree's drop recurse once per level, so
/// an unbounded depth could overflow the stack.
const MAX_DEPTH: usize = 128;

fn parse(text: &str, at: &mut usize, depth: usize) -> Result<Node> {
    if depth > MAX_DEPTH {
        return Err(anyhow!("JSON nested deeper than {MAX_DEPTH} levels"));
    }
    skip_whitespace(text, at);
    let bytes = text.as_bytes();
    match bytes.get(*at) {
        Some(b'{') => {
            *at += 1;
            let mut members = BTreeMap::new();
            skip_whitespace(text, at);
            if bytes.get(*at) == Some(&b'}') {
                *at += 1;
                return Ok(Node::Object(members));
            }
            loop {
                skip_whitespace(text, at);
                let key = string_span(text, at)?;
                let key: String = serde_json::from_str(&text[key])?;
                expect(text, at, b':')?;
                members.insert(key, parse(text, at, depth + 1)?);
                skip_whitespace(text, at);
                match bytes.get(*at) {
                    Some(b',') => *at += 1,
                    _ => {
                        expect(text, at, b'}')?;
                        return Ok(Node::Object(members));
                    }
                }
            }
        }
        Some(b'[') => {
            *at += 1;
            let mut items = Vec::new();
            skip_whitespace(text, at);
            if bytes.get(*at) == Some(&b']') {
                *at += 1;
                return Ok(Node::Array(items));
            }
            loop {
                items.push(parse(text, at, depth + 1)?);
                skip_whitespace(text, at);
                match bytes.get(*at) {
                    Some(b',') => *at += 1,
                    _ => {
                        expect(text, at, b']')?;
                        return Ok(Node::Array(items));
                    }
                }
            }
        }
        Some(b'"') => Ok(Node::String(string_span(text, at)?)),
        Some(_) => {
            let start = *at;
            while bytes
                .get(*at)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                *at += 1;
            }
            Ok(Node::Scalar(start..*at))
        }
        None => Err(anyhow!("unexpected end of JSON")),
    }
}

/// The span of the string starting at `at`, quotes included.
fn string_span(text: &str, at: &mut usize) -> Result<Range<usize>> {
    let bytes = text.as_bytes();
    let start = *at;
    if bytes.get(start) != Some(&b'"') {
        return Err(anyhow!("expected a string at byte {start}"));
    }
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            Some(b'\\') => i += 2,
            Some(b'"') => {
                *at = i + 1;
                return Ok(start..*at);
            }
            Some(_) => i += 1,
            None => return Err(anyhow!("unterminated string at byte {start}")),
        }
    }
}

fn write(node: &Node, text: &str, out: &mut String) -> Result<()> {
    match node {
        Node::Object(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out)?;
                out.push(':');
                write(value, text, out)?;
            }
            out.push('}');
        }
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, text, out)?;
            }
            out.push(']');
        }
        Node::String(span) => {
            let string: String = serde_json::from_str(&text[span.clone()])?;
            write_string(&string, out)?;
        }
        Node::Scalar(span) => out.push_str(&text[span.clone()]),
    }
    Ok(())
}

/// A JSON string as Go's encoder (HTML escaping off) writes it: as
/// serde_json does, plus `\u2028` and `\u2029` escaped.
fn write_string(value: &str, out: &mut String) -> Result<()> {
    let encoded = serde_json::to_string(value)?;
    out.push_str(
        &encoded
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let text = r#"{"b": {"d": 1, "c": "x"}, "a": [true, null]}"#;
        assert_eq!(
            canonical_json(text).unwrap(),
            r#"{"a":[true,null],"b":{"c":"x","d":1}}"#
        );
        // Numbers keep their text; strings are re-encoded (as Go does).
        let text = "{\"n\": [0.50, 1e3, -0], \"s\": \"\\u00e9\\u2028\"}";
        assert_eq!(
            canonical_json(text).unwrap(),
            "{\"n\":[0.50,1e3,-0],\"s\":\"\u{e9}\\u2028\"}"
        );
        // Keys are compared decoded; the last duplicate wins; escapes and
        // brackets inside strings are not structure.
        let text = r#" { "\u0062" : 1 , "a\"]}" : [ {} , [ ] , "x,y" ] , "b" : 2 } "#;
        assert_eq!(
            canonical_json(text).unwrap(),
            r#"{"a\"]}":[{},[],"x,y"],"b":2}"#
        );
        assert!(canonical_json("{\"a\": 1,}").is_err());
        assert!(canonical_json("[1 2]").is_err());
    }

    #[test]
    fn deep_documents_are_written_in_one_pass() {
        let depth = 100;
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(canonical_json(&text).unwrap(), text);
        let text = format!(
            "{}{}",
            "{\"k\":".repeat(depth),
            "0".to_string() + &"}".repeat(depth)
        );
        assert_eq!(canonical_json(&text).unwrap(), text);
        // Deeper than serde_json parses: an error, not a stack overflow.
        let depth = 100_000;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let err = canonical_json(&text).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 128"), "{err}");
    }
}
