//! The canonical JSON form OPA hashes structured bundle files in: object
//! keys sorted, no whitespace, numbers as written (Go's `json.Number`),
//! strings re-encoded as Go's encoder writes them.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::value::RawValue;

/// JSON with object keys sorted and no whitespace, as OPA hashes it:
/// numbers keep their literal text (`0.50` stays `0.50`, as Go's
/// `json.Number`), strings are re-encoded as Go encodes them.
pub fn canonical_json(text: &str) -> Result<String> {
    let raw: &RawValue = serde_json::from_str(text)?;
    let mut out = String::new();
    write_canonical(raw, &mut out)?;
    Ok(out)
}

fn write_canonical(raw: &RawValue, out: &mut String) -> Result<()> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let map: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push('{');
            for (i, (key, value)) in map.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(&key, out)?;
                out.push(':');
                write_canonical(value, out)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Some(b'"') => {
            let string: String = serde_json::from_str(text)?;
            write_string(&string, out)?;
        }
        // Numbers, `true`, `false`, `null`: their text as written.
        _ => out.push_str(text),
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
    }
}
