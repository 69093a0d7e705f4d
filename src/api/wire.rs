//! Wire formats of OPA's REST API: query parameters, request bodies and
//! response bodies. JSON is written the way Go's `encoding/json` writes it
//! (`<`, `>`, `&`, U+2028 and U+2029 escaped; compact with a trailing newline,
//! or indented by two spaces with `?pretty`), so responses match OPA's bytes.

use std::collections::BTreeMap;
use std::io;

use regorus::Value;
use serde::de::{DeserializeSeed, MapAccess};
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

pub(super) mod go_struct;
mod value;
pub use crate::go_json::{go_escapes, go_text};
use go_struct::GoStruct;
use value::InputValue;
pub use value::Keys;

/// The boolean query options of the data API, parsed as OPA's `getBoolParam`:
/// a bare `?x` or `?x=` is true, otherwise only a value equal to `true`.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub pretty: bool,
    pub metrics: bool,
    pub instrument: bool,
    pub provenance: bool,
    pub strict_builtin_errors: bool,
    /// The last `input` value of a GET request, still undecoded.
    pub input: Option<String>,
    /// Every parameter's values, for endpoints with options of their own
    /// (`/health?bundles`).
    values: BTreeMap<String, Vec<String>>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if key == "input" {
                params.input = Some(value.to_string());
            }
            values
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
        params.values = values;
        params.pretty = params.flag("pretty");
        params.metrics = params.flag("metrics");
        params.instrument = params.flag("instrument");
        params.provenance = params.flag("provenance");
        params.strict_builtin_errors = params.flag("strict-builtin-errors");
        params
    }

    /// A boolean option as OPA's `getBoolParam` reads it: absent is false;
    /// given once without a value (`?x`, `?x=`) is true; otherwise true when
    /// any of its values is `true` (any case), so `?x&x=false` is false.
    pub fn flag(&self, name: &str) -> bool {
        match self.values.get(name).map(Vec::as_slice) {
            None => false,
            Some([only]) if only.is_empty() => true,
            Some(values) => values.iter().any(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// Every value given for `name`, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Why a request body could not be read as an input document.
#[derive(Debug)]
pub struct MalformedInput(pub String);

/// Parses a `POST /v1/data` body: an object whose `input` key (matched
/// case-insensitively, as Go does) holds the input. Returns `None` when there
/// is no input (empty body, `null`, `{}`, `{"input": null}`). Bytes after the
/// first JSON value are ignored, as OPA's decoder does. `keys`: the object
/// keys seen before (see [`Keys`]). The body is read as text ([`go_text`]).
pub fn parse_data_request(body: &[u8], keys: &Keys) -> Result<Option<Value>, MalformedInput> {
    let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Ok(None);
    };
    let kind = match first {
        b'{' | b'n' => None,
        b'[' => Some("array"),
        b'"' => Some("string"),
        b't' | b'f' => Some("bool"),
        b'-' | b'0'..=b'9' => Some("number"),
        _ => None,
    };
    if let Some(kind) = kind {
        return Err(MalformedInput(format!(
            "json: cannot unmarshal {kind} into Go value of type types.DataRequestV1"
        )));
    }
    let text = go_text(body);
    keys.with(|value| {
        let request = DataRequest { value, input: None };
        go_struct::read(request, &mut serde_json::Deserializer::from_str(&text))
            .map(|request| request.input)
            .map_err(|e| MalformedInput(e.to_string()))
    })
}

/// OPA's `DataRequestV1`, its input read straight into a `regorus::Value`.
struct DataRequest<'t> {
    value: InputValue<'t>,
    input: Option<Value>,
}

impl<'de> GoStruct<'de> for DataRequest<'_> {
    const FIELDS: &'static [&'static str] = &["input"];

    fn field<A: MapAccess<'de>>(&mut self, _: &str, map: &mut A) -> Result<(), A::Error> {
        self.input = match map.next_value_seed(self.value.reborrow())? {
            Value::Null => None,
            v => Some(v),
        };
        Ok(())
    }
}

/// Parses a body that is the input itself (`/v0/data`, `POST /`). An empty
/// body is the input `null`, as in OPA. Read as text ([`go_text`]).
pub fn parse_raw_input(body: &[u8], keys: &Keys) -> Result<Value, MalformedInput> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    let text = go_text(body);
    keys.with(|value| {
        value
            .deserialize(&mut serde_json::Deserializer::from_str(&text))
            .map_err(|e| MalformedInput(e.to_string()))
    })
}

/// Parses the `?input=` parameter of a GET request (trailing data rejected).
pub fn parse_query_input(text: &str, keys: &Keys) -> Result<Value, MalformedInput> {
    if text.trim().is_empty() {
        return Err(MalformedInput("EOF".to_string()));
    }
    let text = go_escapes(text);
    keys.with(|value| {
        let mut de = serde_json::Deserializer::from_str(&text);
        value
            .deserialize(&mut de)
            .and_then(|value| de.end().map(|()| value))
            .map_err(|e| MalformedInput(e.to_string()))
    })
}

/// The deepest nesting of arrays and objects in a JSON text, stopping early
/// once `limit` is exceeded. Strings are skipped, escapes included.
pub fn json_depth_exceeds(body: &[u8], limit: usize) -> bool {
    // The depth is at most the number of opening brackets, in strings or
    // not: counting them is a fast loop, and settles most bodies. `[` (0x5b)
    // and `{` (0x7b) are the only bytes that are `{` with bit 0x20 set: one
    // comparison a byte, counted in bytes over chunks short enough not to
    // overflow one, which the compiler turns into 16 bytes an instruction.
    let brackets: usize = body
        .chunks(255)
        .map(|chunk| {
            let count = chunk
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')));
            usize::from(count)
        })
        .sum();
    if brackets <= limit {
        return false;
    }
    let mut depth = 0usize;
    let mut strings = Strings::default();
    for &b in body {
        if !strings.outside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Follows a JSON text byte by byte and tells which bytes lie between tokens
/// rather than in a string literal (escapes included), for scans that look
/// at structure or whitespace only. Bytes, not chars: quotes, backslashes
/// and JSON whitespace are ASCII, and no byte of a multi-byte UTF-8
/// character is.
#[derive(Default)]
pub struct Strings {
    in_string: bool,
    escaped: bool,
}

impl Strings {
    /// Whether `b`, the next byte, lies outside every string literal (a
    /// literal's quotes belong to it).
    #[inline]
    pub fn outside(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            false
        } else if b == b'"' {
            self.in_string = true;
            false
        } else {
            true
        }
    }
}

/// `provenance` in a data response: OPA's fields (`bundles` with each active
/// bundle's revision, absent without bundles) and `revision`, Regent's
/// policy revision (the bundles' revision, or a content hash without them).
#[derive(Serialize)]
pub struct Provenance<'a> {
    pub version: &'a str,
    pub build_commit: &'a str,
    pub build_timestamp: &'a str,
    pub build_hostname: &'a str,
    pub revision: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub bundles: BTreeMap<&'a str, BundleRevision<'a>>,
}

/// One bundle in `provenance.bundles`.
#[derive(Serialize)]
pub struct BundleRevision<'a> {
    pub revision: &'a str,
}

/// `warning` in a data response.
#[derive(Serialize)]
pub struct Warning {
    pub code: &'static str,
    pub message: &'static str,
}

/// The API usage warning OPA attaches when a POST has no `input` key.
pub const MISSING_INPUT: Warning = Warning {
    code: "api_usage_warning",
    message: "'input' key missing from the request",
};

/// A `/v1/data` response, fields in OPA's order.
#[derive(Serialize, Default)]
pub struct DataResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<&'a BTreeMap<&'static str, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<Warning>,
}

/// Serializes `value` as Go's `json.Encoder` does: compact (or indented by two
/// spaces when `pretty`), HTML-escaped, with a trailing newline.
pub fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let result = if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            GoEscape(PrettyFormatter::with_indent(b"  ")),
        );
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoEscape(CompactFormatter));
        value.serialize(&mut ser)
    };
    if let Err(err) = result {
        // Only a non-string map key can fail here; regorus values never have one.
        out.clear();
        out.extend_from_slice(format!("{{\"error\":{:?}}}", err.to_string()).as_bytes());
    }
    out.push(b'\n');
    out
}

/// A formatter that adds Go's HTML-safe escapes to another formatter.
struct GoEscape<F>(F);

impl<F: Formatter> Formatter for GoEscape<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
            return w.write_all(bytes);
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&bytes[start..i])?;
            w.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&bytes[start..])
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn bool_params_follow_opa() {
        let p = Params::parse(Some(
            "pretty&metrics=1&provenance=TRUE&strict-builtin-errors=",
        ));
        assert!(p.pretty && !p.metrics && p.provenance && p.strict_builtin_errors);
        // Repeated: a lone bare key is true, otherwise some value must be `true`.
        let p = Params::parse(Some("pretty&pretty=false&metrics=false&metrics=true"));
        assert!(!p.pretty && p.metrics);
        assert!(!p.flag("bundles"));
        assert_eq!(p.all("metrics"), ["false", "true"]);
    }

    #[test]
    fn request_body_input_key_is_case_insensitive_and_trailing_bytes_ignored() {
        let keys = Keys::default();
        let v = parse_data_request(br#"{"x": 1, "INPUT": {"a": [1]}} trailing"#, &keys).unwrap();
        assert_eq!(v, Some(Value::from_json_str(r#"{"a": [1]}"#).unwrap()));
        assert_eq!(parse_data_request(b"  ", &keys).unwrap(), None);
        assert_eq!(parse_data_request(b"null", &keys).unwrap(), None);
        assert_eq!(
            parse_data_request(br#"{"input": null}"#, &keys).unwrap(),
            None
        );
        let err = parse_data_request(b"[1]", &keys).unwrap_err();
        assert_eq!(
            err.0,
            "json: cannot unmarshal array into Go value of type types.DataRequestV1"
        );
        assert!(parse_data_request(b"{\"input\": ", &keys).is_err());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_go_reads_them() {
        let keys = Keys::default();
        let value = |text: &str| Value::from_json_str(text).unwrap();
        // Invalid UTF-8 after the value is ignored, as any trailing bytes are.
        let v = parse_data_request(b"{\"input\": {\"a\": \"b\"}} \xff", &keys).unwrap();
        assert_eq!(v, Some(value(r#"{"a": "b"}"#)));
        // In a string (a key too), each byte is U+FFFD, as Go's decoder
        // reads it: a truncated sequence is one per byte.
        let v = parse_data_request(b"{\"input\": {\"a\xff\": \"\xe2\x82z\"}}", &keys).unwrap();
        assert_eq!(v, Some(value(r#"{"a\ufffd": "\ufffd\ufffdz"}"#)));
        assert_eq!(
            parse_raw_input(b"[\"\xc3\", \"\xc3\xa9\"]", &keys).unwrap(),
            value(r#"["\ufffd", "\u00e9"]"#)
        );
        // Outside strings it is a syntax error, as in Go.
        assert!(parse_data_request(b"{\"input\": \xff}", &keys).is_err());
        assert_eq!(go_text(b"ok"), Cow::Borrowed("ok"));
    }

    #[test]
    fn escaped_lone_surrogates_are_read_as_go_reads_them() {
        // (The mending itself is tested in `go_json.rs`.)
        let keys = Keys::default();
        let value = |text: &str| Value::from_json_str(text).unwrap();
        let v = parse_data_request(br#"{"input": ["\ud800", "\ud83d\ude00"]}"#, &keys).unwrap();
        assert_eq!(v, Some(value(r#"["\ufffd", "\ud83d\ude00"]"#)));
        assert_eq!(
            parse_raw_input(br#""\udc00""#, &keys).unwrap(),
            value(r#""\ufffd""#)
        );
        assert_eq!(
            parse_query_input(r#"{"k\udfff": 1}"#, &keys).unwrap(),
            value(r#"{"k\ufffd": 1}"#)
        );
        // A backslash at the very end: malformed, no panic.
        assert!(parse_raw_input(b"\"\\", &keys).is_err());
        assert!(parse_query_input("\"\\", &keys).is_err());
    }

    #[test]
    fn depth_counts_containers_not_brackets_in_strings() {
        assert!(!json_depth_exceeds(br#"{"a": "[[[[[["}"#, 1));
        assert!(json_depth_exceeds(br#"{"a": [[1]]}"#, 2));
        // More brackets than one counting chunk holds (255).
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(json_depth_exceeds(deep.as_bytes(), 299));
        assert!(!json_depth_exceeds(deep.as_bytes(), 300));
        let quoted = format!("{{\"a\": \"{}\"}}", "{".repeat(600));
        assert!(!json_depth_exceeds(quoted.as_bytes(), 64));
        assert!(!json_depth_exceeds(br#"{"a": [[1]]}"#, 3));
        assert!(!json_depth_exceeds(br#"{"a": "\"[[[["}"#, 1));
        // Few brackets in all: settled by counting them.
        assert!(!json_depth_exceeds(br#"{"a": {"b": [1]}}"#, 3));
        assert!(json_depth_exceeds(br#"{"a": {"b": [1]}}"#, 2));
        assert!(json_depth_exceeds(b"[", 0));
    }

    #[test]
    fn json_is_written_as_go_writes_it() {
        let v = Value::from_json_str(r#"{"b": "<a&b>", "a": [1, {}]}"#).unwrap();
        assert_eq!(
            String::from_utf8(to_json(&v, false)).unwrap(),
            "{\"a\":[1,{}],\"b\":\"\\u003ca\\u0026b\\u003e\"}\n"
        );
        assert_eq!(
            String::from_utf8(to_json(&v, true)).unwrap(),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"\\u003ca\\u0026b\\u003e\"\n}\n"
        );
    }
}
