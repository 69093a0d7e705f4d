//! Request bodies read as Go's `encoding/json` reads them into OPA's request
//! structs: field names match in any case (Unicode's simple case folding,
//! as Go's `bytes.EqualFold`), the last of duplicate fields wins, unknown
//! fields are ignored, and `null` in place of the object leaves every field
//! as it was. A derived `Deserialize` differs on all four (it also refuses
//! the duplicates a YAML merge key makes). Bytes that are not UTF-8 are
//! U+FFFD, as in Go, because bodies are read through `wire::go_text`, and
//! so is an escaped lone surrogate (`"\ud800"`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};

/// A request struct with its fields' names and how each is read.
pub(in crate::api) trait GoStruct<'de> {
    /// The JSON names of the fields, as Go's struct tags give them.
    const FIELDS: &'static [&'static str];

    /// Reads the value of the field `name` (one of `FIELDS`) from `map`.
    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Reads `fields` from JSON text or bytes, starting from its values as
/// given (what stays when the body is `null` or leaves a field out).
pub(in crate::api) fn read<'de, T, D>(fields: T, d: D) -> Result<T, D::Error>
where
    T: GoStruct<'de>,
    D: de::Deserializer<'de>,
{
    d.deserialize_option(GoStructVisitor(fields))
}

struct GoStructVisitor<T>(T);

impl<'de, T: GoStruct<'de>> Visitor<'de> for GoStructVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(self.0)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<T, A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match T::FIELDS.iter().find(|name| go_fold_eq(&key, name)) {
                Some(name) => self.0.field(name, &mut map)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(self.0)
    }
}

/// Whether `key` names the field `name` (lower-case ASCII) as Go's decoder
/// matches them: by simple case folding, under which `ſ` (U+017F) is an `s`
/// and the Kelvin sign (U+212A) a `k`; no other character folds to ASCII.
fn go_fold_eq(key: &str, name: &str) -> bool {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .eq(name.chars())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two fields of the kinds OPA's structs have: a Go `string` (a `null`
    /// value leaves it as it was) and a pointer (`null` makes it nil).
    #[derive(Debug, Default, PartialEq)]
    struct Request {
        name: Option<String>,
        count: Option<u32>,
    }

    impl<'de> GoStruct<'de> for Request {
        const FIELDS: &'static [&'static str] = &["name", "tasks"];

        fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
            match name {
                "name" => {
                    if let Some(name) = map.next_value()? {
                        self.name = Some(name);
                    }
                }
                "tasks" => self.count = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }

    fn parse(text: &str) -> Result<Request, String> {
        read(
            Request::default(),
            &mut serde_json::Deserializer::from_str(text),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn fields_are_read_as_go_reads_a_struct() {
        let both = Request {
            name: Some("a".into()),
            count: Some(2),
        };
        assert_eq!(parse(r#"{"NaMe": "a", "TASKS": 2}"#), Ok(both));
        // Go's folding: `ſ` is an `s`, the Kelvin sign a `k`.
        assert_eq!(
            parse("{\"ta\u{17f}\u{212a}\u{17f}\": 3}"),
            Ok(Request {
                name: None,
                count: Some(3)
            })
        );
        assert_eq!(
            parse(r#"{"name": "a", "name": "b", "other": [1, {}]}"#),
            Ok(Request {
                name: Some("b".into()),
                count: None
            })
        );
        // `null`: a string keeps its value, a pointer is cleared.
        assert_eq!(
            parse(r#"{"name": "a", "name": null, "tasks": 1, "tasks": null}"#),
            Ok(Request {
                name: Some("a".into()),
                count: None
            })
        );
        assert_eq!(parse("null"), Ok(Request::default()));
        assert_eq!(parse("{}"), Ok(Request::default()));
        // Errors keep their place in the whole text.
        assert_eq!(
            parse(r#"{"name": 5}"#).unwrap_err(),
            "invalid type: integer `5`, expected a string at line 1 column 10"
        );
        assert_eq!(
            parse("[]").unwrap_err(),
            "invalid type: sequence, expected an object at line 1 column 0"
        );
    }
}
