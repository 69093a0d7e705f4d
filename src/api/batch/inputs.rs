//! Reading a batch's `inputs` object under the batch-size limit: entries are
//! counted as they are read, and reading stops at the first one over the
//! limit, so an oversized batch costs no more memory than an allowed one
//! (a 256 MiB body of tiny entries would otherwise become tens of millions
//! of map entries before the count could be checked).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why the `inputs` object was not read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum InputsError {
    /// More than the limit of entries.
    TooMany,
    /// Not an object of JSON values (serde's message).
    Malformed(String),
}

const TOO_MANY: &str = "regent: too many batch inputs";

/// The entries of the raw `inputs` object, at most `limit` of them. A key
/// given twice keeps its last value, as serde's maps do.
pub(super) fn read(
    raw: &RawValue,
    limit: usize,
) -> Result<BTreeMap<String, &RawValue>, InputsError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Bounded(limit).deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(TOO_MANY) {
            InputsError::TooMany
        } else {
            InputsError::Malformed(e.to_string())
        }
    })
}

struct Bounded(usize);

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = BTreeMap<String, &'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = BTreeMap<String, &'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of inputs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some(id) = map.next_key::<String>()? {
            let input: &'de RawValue = map.next_value()?;
            entries.insert(id, input);
            if entries.len() > self.0 {
                return Err(A::Error::custom(TOO_MANY));
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn reads_up_to_the_limit_and_stops_past_it() {
        let three = raw(r#"{"a": 1, "b": {"x": [2]}, "a": 3}"#);
        let read3 = read(&three, 2).unwrap();
        assert_eq!(read3.len(), 2);
        assert_eq!(read3["a"].get(), "3");
        assert_eq!(read3["b"].get(), r#"{"x": [2]}"#);
        let many = raw(&format!(
            "{{{}\"last\": 0}}",
            (0..1000)
                .map(|i| format!("\"k{i}\": 0, "))
                .collect::<String>()
        ));
        assert_eq!(read(&many, 10).unwrap_err(), InputsError::TooMany);
        assert!(matches!(
            read(&raw("[1]"), 10),
            Err(InputsError::Malformed(_))
        ));
    }
}
