//! YAML request bodies. OPA reads a decision request's body as YAML when its
//! `Content-Type` mentions `yaml` (`readInputPostV1`, `readInputV0`); Regent
//! converts such a body to the JSON text the JSON path reads, so everything
//! after (depth check, cache key, parsing, decision log) is the JSON path.
//!
//! YAML aliases let a small body stand for a huge document (each `*a` repeats
//! everything its anchor holds: the "billion laughs"), so the conversion is
//! budgeted by what it *writes*: it stops with an error as soon as the JSON
//! passes `max_bytes` or nests deeper than `max_depth`, whatever the aliases.
//! Conversion follows Go's YAML-to-JSON as OPA uses it: non-string mapping
//! keys become their text (`1: a` is `{"1": "a"}`), `~` and empty values are
//! `null`; NaN and infinities have no JSON form and are refused.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a YAML body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum YamlError {
    /// Not YAML, or YAML without a JSON form.
    Malformed(String),
    /// The JSON it stands for is over the byte budget.
    TooLarge,
}

/// The JSON text of the YAML document `body` (empty for an empty body, as
/// OPA reads no input then), written under the budget.
pub fn to_json(body: &[u8], max_bytes: usize, max_depth: usize) -> Result<Vec<u8>, YamlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut state = State {
        out: Vec::with_capacity(body.len() + 16),
        max_bytes,
        depth: 0,
        max_depth,
        too_large: false,
    };
    let result = Node {
        state: &mut state,
        prefix: None,
    }
    .deserialize(yaml_serde::Deserializer::from_slice(body));
    match result {
        Ok(()) => Ok(state.out),
        Err(_) if state.too_large => Err(YamlError::TooLarge),
        Err(err) => Err(YamlError::Malformed(err.to_string())),
    }
}

struct State {
    out: Vec<u8>,
    max_bytes: usize,
    depth: usize,
    max_depth: usize,
    too_large: bool,
}

impl State {
    fn write<E: de::Error>(&mut self, bytes: &[u8]) -> Result<(), E> {
        if self.out.len() + bytes.len() > self.max_bytes {
            self.too_large = true;
            return Err(E::custom("YAML document too large"));
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn write_string<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        let quoted = serde_json::to_string(s).map_err(E::custom)?;
        self.write(quoted.as_bytes())
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(E::custom(format!(
                "exceeded max depth of {}",
                self.max_depth
            )));
        }
        Ok(())
    }
}

/// One value; writes `prefix` (a `,` between items) before it.
struct Node<'s> {
    state: &'s mut State,
    prefix: Option<u8>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Node<'_> {
    fn scalar<E: de::Error>(self, json: &[u8]) -> Result<(), E> {
        if let Some(p) = self.prefix {
            self.state.write(&[p])?;
        }
        self.state.write(json)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value with a JSON form")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(if v { b"true" } else { b"false" })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(v.to_string().as_bytes())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(v.to_string().as_bytes())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if !v.is_finite() {
            return Err(E::custom(format!("{v} has no JSON form")));
        }
        let text = serde_json::to_string(&v).map_err(E::custom)?;
        self.scalar(text.as_bytes())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Some(p) = self.prefix {
            self.state.write(&[p])?;
        }
        self.state.write_string(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(b"null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar(b"null")
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.state;
        if let Some(p) = self.prefix {
            state.write(&[p])?;
        }
        state.enter()?;
        state.write(b"[")?;
        let mut prefix = None;
        while seq
            .next_element_seed(Node {
                state: &mut *state,
                prefix,
            })?
            .is_some()
        {
            prefix = Some(b',');
        }
        state.depth -= 1;
        state.write(b"]")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        if let Some(p) = self.prefix {
            state.write(&[p])?;
        }
        state.enter()?;
        state.write(b"{")?;
        let mut prefix = None;
        while map
            .next_key_seed(Key {
                state: &mut *state,
                prefix,
            })?
            .is_some()
        {
            state.write(b":")?;
            map.next_value_seed(Node {
                state: &mut *state,
                prefix: None,
            })?;
            prefix = Some(b',');
        }
        state.depth -= 1;
        state.write(b"}")
    }
}

/// A mapping key: written as a JSON string, whatever its YAML type.
struct Key<'s> {
    state: &'s mut State,
    prefix: Option<u8>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Key<'_> {
    fn text<E: de::Error>(self, text: &str) -> Result<(), E> {
        if let Some(p) = self.prefix {
            self.state.write(&[p])?;
        }
        self.state.write_string(text)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.text(if v { "true" } else { "false" })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.text(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.text(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.text(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.text(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.text("null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(yaml: &str) -> Result<serde_json::Value, YamlError> {
        let bytes = to_json(yaml.as_bytes(), 1 << 20, 64)?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn documents_convert_to_their_json_form() {
        assert_eq!(
            json("input:\n  user: alice\n  n: 3\n  f: 1.5\n  ok: true\n  none: ~\n  empty:\n  list: [1, two, {a: b}]\n  1: one\n").unwrap(),
            serde_json::json!({"input": {
                "user": "alice", "n": 3, "f": 1.5, "ok": true, "none": null,
                "empty": null, "list": [1, "two", {"a": "b"}], "1": "one"
            }})
        );
        assert_eq!(
            json("[yes, no, on]").unwrap(),
            serde_json::json!(["yes", "no", "on"])
        );
        assert_eq!(json("[]").unwrap(), serde_json::json!([]));
        assert_eq!(json("{}").unwrap(), serde_json::json!({}));
        assert_eq!(json("\"quo\\\"te\"").unwrap(), serde_json::json!("quo\"te"));
        assert_eq!(to_json(b" \n", 10, 10), Ok(Vec::new()));
    }

    #[test]
    fn aliases_expand_within_the_budget() {
        assert_eq!(
            json("a: &x [1, 2]\nb: *x\n").unwrap(),
            serde_json::json!({"a": [1, 2], "b": [1, 2]})
        );
    }

    #[test]
    fn an_alias_bomb_stops_at_the_byte_budget() {
        // Nine levels of ten aliases: 10^9 leaves from a few hundred bytes.
        let mut bomb = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h"][i];
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let result = to_json(bomb.as_bytes(), 1 << 20, 64);
        // yaml_serde may refuse the document itself before the budget is
        // reached; either way it is refused, never expanded.
        assert!(result.is_err(), "{:?}", result.map(|v| v.len()));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Three levels (1000 leaves, ~7 KB of JSON) from 250 bytes: within
        // what yaml_serde allows, stopped by the budget alone.
        let small: String = bomb.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(small.len() < 300);
        assert_eq!(
            to_json(small.as_bytes(), 4096, 64),
            Err(YamlError::TooLarge)
        );
        assert!(to_json(small.as_bytes(), 1 << 20, 64).unwrap().len() > 6000);
    }

    #[test]
    fn depth_and_non_json_values_are_refused() {
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        assert!(matches!(
            to_json(deep.as_bytes(), 1 << 20, 64),
            Err(YamlError::Malformed(m)) if m.contains("exceeded max depth of 64")
        ));
        assert!(matches!(json("x: .nan"), Err(YamlError::Malformed(_))));
        assert!(matches!(json("x: [1"), Err(YamlError::Malformed(_))));
        assert!(matches!(json("x: *nope"), Err(YamlError::Malformed(_))));
        assert_eq!(to_json(b"x: [1, 2, 3]", 8, 64), Err(YamlError::TooLarge));
    }
}
