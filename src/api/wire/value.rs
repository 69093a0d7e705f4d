//! JSON text to `regorus::Value` for request inputs, with fewer allocations
//! than regorus's own `Deserialize`: a string is one allocation (regorus
//! makes a `String`, then copies it into an `Arc<str>`), and object keys come
//! from a table of the keys seen before ([`Keys`]), so the keys every input
//! repeats (`auth`, `user`, `id`, `scope`, ...) cost a reference count, not an
//! allocation. The values built are equal to regorus's (unit tests compare
//! them; the differential tests compare decisions over the generated inputs)
//! with one exception, on purpose: regorus reads an object whose first key is
//! `"$serde_json::private::Number"` as a number (serde_json's private
//! encoding of arbitrary-precision numbers, which this build does not use);
//! here, as in OPA, it is an object like any other.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use regorus::Value;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use thread_local::ThreadLocal;

/// Longest key kept in a table.
const KEY_MAX: usize = 64;
/// Most keys kept in a table (at most ~100 KiB).
const KEYS: usize = 1024;

/// A table of keys, hashed with foldhash (randomly seeded per table): SipHash
/// cost more than the rest of a key's lookup. The table's bound caps what
/// colliding keys could cost.
type KeyTable = HashSet<Arc<str>, foldhash::fast::RandomState>;

/// Object keys seen in earlier inputs, one bounded table per thread that
/// parses (keys of at most [`KEY_MAX`] bytes, at most [`KEYS`] of them; a
/// full table is emptied and refilled from the keys that come next, so keys
/// that never repeat, such as ids used as keys, cannot keep the common ones
/// out for good). Owned by whoever parses: the server's state, a batch, a
/// bench. Clones share the tables.
#[derive(Clone, Default)]
pub struct Keys(Arc<ThreadLocal<RefCell<KeyTable>>>);

impl Keys {
    /// Runs `parse` with this thread's table.
    pub(super) fn with<R>(&self, parse: impl FnOnce(InputValue<'_>) -> R) -> R {
        match self.0.get_or_default().try_borrow_mut() {
            Ok(mut table) => parse(InputValue { keys: &mut table }),
            // Only if a parse re-entered itself: a table of its own.
            Err(_) => parse(InputValue {
                keys: &mut KeyTable::default(),
            }),
        }
    }
}

/// Deserializes one JSON value as a `regorus::Value`.
pub struct InputValue<'t> {
    keys: &'t mut KeyTable,
}

impl InputValue<'_> {
    /// A seed for one more value, sharing this one's table.
    pub(super) fn reborrow(&mut self) -> InputValue<'_> {
        InputValue {
            keys: &mut *self.keys,
        }
    }
}

impl<'de> DeserializeSeed<'de> for InputValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { keys: self.keys })
    }
}

struct ValueVisitor<'t> {
    keys: &'t mut KeyTable,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if !v.is_finite() {
            return Err(E::custom(format!(
                "invalid non-finite number in input: {v}"
            )));
        }
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(Arc::from(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(InputValue {
            keys: &mut *self.keys,
        })? {
            items.push(item);
        }
        Ok(Value::from(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = BTreeMap::new();
        while let Some(name) = map.next_key_seed(Key {
            keys: &mut *self.keys,
        })? {
            let value = map.next_value_seed(InputValue {
                keys: &mut *self.keys,
            })?;
            object.insert(Value::String(name), value);
        }
        Ok(Value::from(object))
    }
}

/// An object key, from the table when it was seen before.
struct Key<'t> {
    keys: &'t mut KeyTable,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Arc<str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Arc<str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Arc<str>, E> {
        if text.len() > KEY_MAX {
            return Ok(Arc::from(text));
        }
        if let Some(found) = self.keys.get(text) {
            return Ok(Arc::clone(found));
        }
        let made: Arc<str> = Arc::from(text);
        if self.keys.len() >= KEYS {
            self.keys.clear();
        }
        self.keys.insert(Arc::clone(&made));
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(keys: &Keys, text: &str) -> Result<Value, String> {
        keys.with(|seed| {
            let mut de = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
                .map_err(|e| e.to_string())
        })
    }

    #[test]
    fn values_equal_regorus_own() {
        let keys = Keys::default();
        let long_key = "k".repeat(KEY_MAX + 1);
        for text in [
            "null",
            "true",
            "0",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1.5e300",
            "0.1",
            "-0.0",
            "12345678901234567890123",
            r#""""#,
            r#""a\"b\\c\u00e9\ud83d\ude00\n""#,
            "[]",
            "{}",
            r#"[1, "x", [null, {}], {"a": []}]"#,
            r#"{"b": 1, "a": {"b": [1, 2, {"c": "d"}]}, "": 0}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"auth": {"user": {"id": 1, "privilege": "admin"}}, "scope": "view"}"#,
            &format!(r#"{{"{long_key}": {{"{long_key}": 1}}}}"#),
        ] {
            let ours = parse(&keys, text).unwrap();
            let theirs = Value::from_json_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(ours.to_json_str().unwrap(), theirs.to_json_str().unwrap());
        }
        for bad in ["", "{", r#"{"a" 1}"#, "[1,]", "1e400", r#""\ud800""#] {
            assert!(parse(&keys, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_json_private_number_key_is_an_ordinary_key_as_in_opa() {
        let text = r#"{"$serde_json::private::Number": "5"}"#;
        assert_eq!(Value::from_json_str(text).unwrap(), Value::from(5u64));
        let ours = parse(&Keys::default(), text).unwrap();
        let object = ours.as_object().unwrap();
        assert_eq!(object.len(), 1);
        assert_eq!(
            object.get(&Value::from("$serde_json::private::Number")),
            Some(&Value::from("5"))
        );
    }

    #[test]
    fn keys_are_shared_between_inputs_up_to_the_bound() {
        let keys = Keys::default();
        let key_of = |v: &Value| match v.as_object().unwrap().keys().next() {
            Some(Value::String(k)) => Arc::clone(k),
            other => panic!("{other:?}"),
        };
        let a = parse(&keys, r#"{"scope": 1}"#).unwrap();
        let b = parse(&keys, r#"{"scope": 2}"#).unwrap();
        assert!(
            Arc::ptr_eq(&key_of(&a), &key_of(&b)),
            "a known key is reused"
        );
        let long = format!(r#"{{"{}": 1}}"#, "k".repeat(KEY_MAX + 1));
        let (c, d) = (parse(&keys, &long).unwrap(), parse(&keys, &long).unwrap());
        assert!(
            !Arc::ptr_eq(&key_of(&c), &key_of(&d)),
            "long keys are not kept"
        );
        // A full table is emptied, then keeps the keys that come next.
        for i in 0..KEYS - 1 {
            parse(&keys, &format!(r#"{{"k{i}": {i}}}"#)).unwrap();
        }
        assert_eq!(keys.0.get().unwrap().borrow().len(), KEYS);
        let late = r#"{"late": true}"#;
        let (e, f) = (parse(&keys, late).unwrap(), parse(&keys, late).unwrap());
        assert_eq!(e, f);
        assert!(Arc::ptr_eq(&key_of(&e), &key_of(&f)));
        assert_eq!(keys.0.get().unwrap().borrow().len(), 1);
        // Another thread has a table of its own.
        let other = keys.clone();
        std::thread::spawn(move || {
            parse(&other, r#"{"scope": 3}"#).unwrap();
            assert_eq!(other.0.get().unwrap().borrow().len(), 1);
        })
        .join()
        .unwrap();
    }
}
