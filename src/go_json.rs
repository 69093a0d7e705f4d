//! JSON text as Go's `encoding/json` reads it, which is how OPA reads
//! request bodies, data files and bundles: bytes that are not UTF-8, and
//! escaped UTF-16 surrogates that are not half of a pair, are U+FFFD.
//! serde_json refuses both; the text is mended before it parses.

use std::borrow::Cow;

/// JSON text from bytes, as Go's decoder reads it (a request body, a data
/// file): every byte that is not
/// part of valid UTF-8 is U+FFFD (which Go's decoder puts in a string in its
/// place; outside strings it is a syntax error either way). Valid UTF-8, the
/// usual body, is checked once and borrowed: serde_json would check every
/// string it reads from bytes, which costs several times more.
pub fn go_text(body: &[u8]) -> Cow<'_, str> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let mut text = String::with_capacity(body.len() + 16);
            for chunk in body.utf8_chunks() {
                text.push_str(chunk.valid());
                // One U+FFFD per byte, as Go's `utf8.DecodeRune` steps.
                text.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
            }
            Cow::Owned(text)
        }
    };
    match lone_surrogates(&text) {
        Some(fixed) => Cow::Owned(fixed),
        None => text,
    }
}

/// JSON text with its escaped lone surrogates read as Go reads them (see
/// [`lone_surrogates`]): for text that did not come through [`go_text`].
pub fn go_escapes(text: &str) -> Cow<'_, str> {
    lone_surrogates(text).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// `text` with every escaped UTF-16 surrogate that is not half of a pair
/// (`"\ud800"`, a low one first, a high one before anything but a low one)
/// escaped as U+FFFD instead (`\ufffd`, as long: error columns do not
/// move), as Go's decoder reads it (serde_json refuses it); `None` when there
/// is none. A pair (`\ud83d\ude00`) stays.
fn lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u32> {
        let escape = bytes.get(at..at + 6)?;
        if escape[..2] != *b"\\u" || !escape[2..].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&escape[2..]).ok()?, 16).ok()
    };
    let (mut out, mut copied, mut at) = (None::<String>, 0, 0);
    while let Some(found) = bytes.get(at..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        at += found;
        let Some(first) = unit(at) else {
            // Another escape (`\\`, `\"`): its next byte is not a backslash.
            at += 2;
            continue;
        };
        let pair = (0xD800..0xDC00).contains(&first)
            && unit(at + 6).is_some_and(|second| (0xDC00..0xE000).contains(&second));
        if pair {
            at += 12;
            continue;
        }
        if (0xD800..0xE000).contains(&first) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..at]);
            out.push_str("\\ufffd");
            copied = at + 6;
        }
        at += 6;
    }
    out.map(|mut out| {
        out.push_str(&text[copied..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_lone_surrogates_are_read_as_go_reads_them() {
        let read =
            |text: &str| -> serde_json::Value { serde_json::from_str(&go_escapes(text)).unwrap() };
        let value = |text: &str| -> serde_json::Value { serde_json::from_str(text).unwrap() };
        assert_eq!(read(r#""\ud800""#), value(r#""\ufffd""#));
        // A low one alone, a high one before a non-surrogate (kept), a
        // pair, a high one before another high one, an escaped backslash.
        assert_eq!(
            read(r#"["\udc00x", "\uD800\u0041", "\ud83d\ude00", "\ud800\ud800\udc00", "\\ud800"]"#),
            value(r#"["\ufffdx", "\ufffdA", "\ud83d\ude00", "\ufffd\ud800\udc00", "\\ud800"]"#)
        );
        assert_eq!(lone_surrogates(r#"{"a": "\u00e9\\"}"#), None);
        // A backslash at the very end (malformed: an error later, no panic).
        assert_eq!(lone_surrogates("\"\\"), None);
        assert_eq!(lone_surrogates("\"\\u"), None);
        assert_eq!(lone_surrogates("\"\\u+d80\""), None);
        assert_eq!(go_text(b"\"\xff\\udfff\""), "\"\u{fffd}\\ufffd\"");
        assert_eq!(go_text(b"ok"), Cow::Borrowed("ok"));
    }
}
