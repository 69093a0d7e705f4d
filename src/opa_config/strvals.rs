//! The `--set` / `--set-file` syntax (Helm's "strvals", as vendored by OPA in
//! `internal/strvals/parser.go`), parsed into a JSON object.
//!
//! One line holds `key=value` assignments separated by `,`: keys are dotted
//! (`a.b.c=v`), may index lists (`a[0]=v`, `a[1].b=v`, `a[0][1]=v`), and a
//! value in braces is a list (`a={x,y}`). `\` takes the next character
//! literally (`a\.b=x\,y` sets key `a.b` to `x,y`). `--set` values are typed
//! (see [`typed_value`]); `--set-file` values name a file whose trimmed
//! content becomes the string value.
//!
//! Where OPA's parser panics (assigning through a key that holds another
//! type) or silently drops input (an empty key, `a[0]` with no `=`), this one
//! returns an error instead.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// The largest list index accepted, as in OPA.
const MAX_INDEX: i64 = 65536;

/// Parses one `--set` line into `dest`, typing values with [`typed_value`].
pub(super) fn parse_into(line: &str, dest: &mut Map<String, Value>) -> Result<()> {
    let mut to_value = |raw: String| Ok(typed_value(&raw));
    Parser::new(line, &mut to_value).parse(dest)
}

/// Parses one `--set-file` line into `dest`: every value is a path, and
/// `read` turns it into the (string) value.
pub(super) fn parse_file_into(
    line: &str,
    dest: &mut Map<String, Value>,
    read: &mut dyn FnMut(&str) -> Result<String>,
) -> Result<()> {
    let mut to_value = |raw: String| read(&raw).map(Value::String);
    Parser::new(line, &mut to_value).parse(dest)
}

/// OPA's value typing: `true`/`false` in any case are booleans, `null` is
/// null (OPA makes it `{}`), `0` and integers that do not start with `0` are
/// integers, anything else (`007`, `1.5`, text) stays a string.
pub(super) fn typed_value(raw: &str) -> Value {
    if raw.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if raw.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if raw.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if raw == "0" {
        return Value::from(0_i64);
    }
    if !raw.is_empty() && !raw.starts_with('0') {
        if let Ok(n) = raw.parse::<i64>() {
            return Value::from(n);
        }
    }
    Value::String(raw.to_owned())
}

/// What follows a `=`.
enum ValueList {
    List(Vec<Value>),
    /// The line ended right after `=`.
    End,
    /// Not a `{...}` list: a plain value follows.
    NotList,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    to_value: &'a mut dyn FnMut(String) -> Result<Value>,
}

impl<'a> Parser<'a> {
    fn new(line: &str, to_value: &'a mut dyn FnMut(String) -> Result<Value>) -> Parser<'a> {
        Parser {
            chars: line.chars().collect(),
            pos: 0,
            to_value,
        }
    }

    fn parse(mut self, dest: &mut Map<String, Value>) -> Result<()> {
        while self.pos < self.chars.len() {
            self.key(dest)?;
        }
        Ok(())
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to (and consumes) the first unescaped `stop` character, which
    /// is returned; `None` when the line ended first.
    fn until(&mut self, stop: &[char]) -> (String, Option<char>) {
        let mut out = String::new();
        while let Some(c) = self.next_char() {
            if stop.contains(&c) {
                return (out, Some(c));
            }
            if c == '\\' {
                match self.next_char() {
                    Some(escaped) => out.push(escaped),
                    None => return (out, None),
                }
            } else {
                out.push(c);
            }
        }
        (out, None)
    }

    /// Parses one assignment (a key path and its value) into `data`.
    fn key(&mut self, data: &mut Map<String, Value>) -> Result<()> {
        let (key, last) = self.until(&['=', '[', ',', '.']);
        let Some(last) = last else {
            if key.is_empty() {
                return Ok(());
            }
            bail!("key `{key}` has no value");
        };
        if key.is_empty() {
            bail!("empty key before `{last}`");
        }
        match last {
            '[' => {
                let index = self.index()?;
                let list = match data.remove(&key) {
                    None => Vec::new(),
                    Some(Value::Array(list)) => list,
                    Some(_) => bail!("key `{key}` is not a list"),
                };
                let list = self.list_item(list, index)?;
                data.insert(key, Value::Array(list));
            }
            '=' => {
                let value = self.value()?;
                data.insert(key, value);
            }
            ',' => bail!("key `{key}` has no value (cannot end with `,`)"),
            _ => {
                let mut inner = match data.remove(&key) {
                    None => Map::new(),
                    Some(Value::Object(inner)) => inner,
                    Some(_) => bail!("key `{key}` is not a map"),
                };
                self.key(&mut inner)?;
                if inner.is_empty() {
                    bail!("key map `{key}` has no value");
                }
                data.insert(key, Value::Object(inner));
            }
        }
        Ok(())
    }

    /// The value after `=`: a `{...}` list, a plain value, or `""` at the end.
    fn value(&mut self) -> Result<Value> {
        Ok(match self.value_list()? {
            ValueList::List(list) => Value::Array(list),
            ValueList::End => Value::String(String::new()),
            ValueList::NotList => {
                let (raw, _) = self.until(&[',']);
                (self.to_value)(raw)?
            }
        })
    }

    /// The index inside `[...]`, the `[` already consumed.
    fn index(&mut self) -> Result<i64> {
        let (raw, last) = self.until(&[']']);
        if last.is_none() {
            bail!("error parsing index: missing `]`");
        }
        let index: i64 = raw
            .parse()
            .map_err(|_| anyhow!("error parsing index: `{raw}` is not an integer"))?;
        if index < 0 {
            bail!("negative index {index} not allowed");
        }
        if index > MAX_INDEX {
            bail!("index of {index} is greater than maximum supported index of {MAX_INDEX}");
        }
        Ok(index)
    }

    /// What follows `list[index]`: `=value`, `.key...` or another `[index]`.
    fn list_item(&mut self, mut list: Vec<Value>, index: i64) -> Result<Vec<Value>> {
        let (rest, last) = self.until(&['[', '.', '=']);
        if !rest.is_empty() {
            bail!("unexpected data at end of array index: `{rest}`");
        }
        let slot = usize::try_from(index)?;
        let value = match last {
            None => bail!("list item [{index}] has no value"),
            Some('=') => self.value()?,
            Some('[') => {
                let next = self.index()?;
                let inner = match list.get_mut(slot).map(Value::take) {
                    Some(Value::Array(inner)) => inner,
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => bail!("list item [{index}] is not a list"),
                };
                Value::Array(self.list_item(inner, next)?)
            }
            Some(_) => {
                let mut inner = match list.get_mut(slot).map(Value::take) {
                    Some(Value::Object(inner)) => inner,
                    _ => Map::new(),
                };
                self.key(&mut inner)?;
                Value::Object(inner)
            }
        };
        if list.len() <= slot {
            list.resize(slot + 1, Value::Null);
        }
        list[slot] = value;
        Ok(list)
    }

    /// A `{a,b}` list, if one starts here.
    fn value_list(&mut self) -> Result<ValueList> {
        match self.next_char() {
            None => return Ok(ValueList::End),
            Some('{') => {}
            Some(_) => {
                self.pos -= 1;
                return Ok(ValueList::NotList);
            }
        }
        let mut list = Vec::new();
        loop {
            let (raw, last) = self.until(&[',', '}']);
            match last {
                None => bail!("list must terminate with `}}`"),
                Some('}') => {
                    if self.chars.get(self.pos) == Some(&',') {
                        self.pos += 1;
                    }
                    list.push((self.to_value)(raw)?);
                    return Ok(ValueList::List(list));
                }
                Some(_) => list.push((self.to_value)(raw)?),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(lines: &[&str]) -> Result<Value> {
        let mut out = Map::new();
        for line in lines {
            parse_into(line, &mut out)?;
        }
        Ok(Value::Object(out))
    }

    #[test]
    fn dotted_keys_and_several_assignments() {
        assert_eq!(
            parse(&["a.b.c=x,a.b.d=y", "e=z"]).unwrap(),
            json!({"a": {"b": {"c": "x", "d": "y"}}, "e": "z"})
        );
    }

    #[test]
    fn value_typing() {
        let got =
            parse(&["i=42,neg=-3,zero=0,t=TRUE,f=false,n=null,oct=007,fl=1.5,s=abc,e="]).unwrap();
        assert_eq!(
            got,
            json!({"i": 42, "neg": -3, "zero": 0, "t": true, "f": false, "n": null,
                   "oct": "007", "fl": "1.5", "s": "abc", "e": ""})
        );
    }

    #[test]
    fn huge_integer_stays_a_string() {
        assert_eq!(
            parse(&["a=99999999999999999999"]).unwrap(),
            json!({"a": "99999999999999999999"})
        );
    }

    #[test]
    fn brace_lists() {
        assert_eq!(
            parse(&["a={x,2,true},b=c"]).unwrap(),
            json!({"a": ["x", 2, true], "b": "c"})
        );
    }

    #[test]
    fn list_indices() {
        assert_eq!(
            parse(&["a[1]=y", "a[0]=x", "b[0].name=n,b[0].url=u", "c[0][1]=z"]).unwrap(),
            json!({"a": ["x", "y"], "b": [{"name": "n", "url": "u"}], "c": [[null, "z"]]})
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            parse(&[r"a\.b=x\,y,c=http://h\,i"]).unwrap(),
            json!({"a.b": "x,y", "c": "http://h,i"})
        );
    }

    #[test]
    fn equals_in_value_is_kept() {
        assert_eq!(parse(&["a=b=c"]).unwrap(), json!({"a": "b=c"}));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "a", "a.b", "a,b=1", "a[x]=1", "a[-1]=1", "a[0]", "a={x", ".a=1", "a[0]b=1",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse(&["a[65537]=1"]).is_err());
    }

    #[test]
    fn assigning_through_another_type_is_an_error() {
        let err = parse(&["a=1", "a.b=2"]).unwrap_err();
        assert!(err.to_string().contains("key `a` is not a map"), "{err}");
        assert!(parse(&["a=1", "a[0]=2"]).is_err());
    }

    #[test]
    fn file_values_are_strings_from_the_reader() {
        let mut out = Map::new();
        let mut read = |path: &str| Ok(format!("content of {path}"));
        parse_file_into("a.b=p1,c={p2,p3}", &mut out, &mut read).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"a": {"b": "content of p1"}, "c": ["content of p2", "content of p3"]})
        );
    }
}
