//! YAML request bodies. OPA reads a decision request's body as YAML when its
//! `Content-Type` mentions `yaml` (`readInputPostV1`, `readInputV0`), through
//! `util.Unmarshal`: JSON stays JSON, anything else goes through Go's YAML
//! (goyaml v2, YAML 1.1 scalars) to JSON. Regent converts such a body to the
//! JSON text the JSON path reads, so everything after (depth check, cache
//! key, parsing, decision log) is the JSON path.
//!
//! The conversion reads the YAML as a stream of events (yaml-rust2's pull
//! parser: no document tree, no recursion) and writes JSON as it goes, under
//! a budget: the JSON written plus the copies kept for anchors may not pass
//! `max_bytes`, and nesting may not pass `max_depth`. YAML aliases let a small
//! body stand for a huge document (each `*a` repeats everything `&a` holds:
//! the "billion laughs"); the budget counts what aliases expand to, so such a
//! body stops at the limit.
//!
//! Plain scalars resolve as goyaml v2 resolves them: `y`/`yes`/`on` and
//! `n`/`no`/`off` (in their three cases) are booleans, `~`/`null`/empty are
//! null, integers may have `_`, `0x`, `0o`, `0b` or a leading `0` (octal);
//! quoted scalars are strings. Merge keys (`<<: *base`, `<<: [*a, *b]`,
//! `<<: {k: v}`) merge as goyaml v2 merges them into a map: in place, so an
//! explicit key after the merge wins over a merged one and a merged one wins
//! over an explicit key before it; a list merges last to first (earlier
//! mappings take precedence). The merged entries are written where the `<<`
//! stood and every reader of the JSON (Regent's input parser, the decision
//! log, the configuration) takes the last of duplicate keys, as Go does.
//! Refused with a clear error: tags other than the core ones, null,
//! `uint64`, float and non-scalar mapping keys, NaN and infinities (no JSON
//! form), aliases to an enclosing node, merge values that are not mappings,
//! and YAML bodies over [`MAX_YAML_BYTES`]. Timestamps stay strings
//! (goyaml v2 would make `2001-12-14` a time). Only the first document of a
//! stream is read, as goyaml's `Unmarshal` does.

use std::collections::HashMap;

mod scalar;

use scalar::{core_suffix, resolve, tag_text, Scalar};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// The largest YAML body converted (a JSON body sent as YAML is not bound
/// by it). yaml-rust2 reads a whole flow collection (`[...]`, `{...}`) ahead
/// before its first event, at ~100-200 bytes of memory per byte of YAML, so
/// the output budget alone would not bound memory: a YAML body is capped
/// before parsing. Inputs are small; large ones can be sent as JSON.
pub const MAX_YAML_BYTES: usize = 256 << 10;

/// Why a YAML body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum YamlError {
    /// Not YAML, or YAML without a JSON form.
    Malformed(String),
    /// The JSON it stands for is over the byte budget.
    TooLarge,
    /// The YAML itself is over [`MAX_YAML_BYTES`].
    TooLong,
}

/// The JSON text of the first YAML document in `body` (empty when there is
/// none: OPA then reads no input), written under the budget. A body that is
/// already JSON is returned as it is, as OPA's `util.Unmarshal` does.
pub fn to_json(body: &[u8], max_bytes: usize, max_depth: usize) -> Result<Vec<u8>, YamlError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return if body.len() > max_bytes {
            Err(YamlError::TooLarge)
        } else {
            Ok(body.to_vec())
        };
    }
    if body.len() > MAX_YAML_BYTES {
        return Err(YamlError::TooLong);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| YamlError::Malformed("the body is not UTF-8".into()))?;
    convert(text, max_bytes, max_depth)
}

/// The JSON text of a configuration file's YAML (or JSON), read as OPA reads
/// its configuration (goyaml v2: `persist: yes` is `true`). No size limit:
/// the operator wrote it.
pub fn config_to_json(text: &str) -> Result<Vec<u8>, YamlError> {
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        return Ok(text.as_bytes().to_vec());
    }
    convert(text, usize::MAX, 256)
}

fn convert(text: &str, max_bytes: usize, max_depth: usize) -> Result<Vec<u8>, YamlError> {
    Converter {
        parser: Parser::new_from_str(text),
        out: Vec::new(),
        kept: 0,
        moved: 0,
        max_bytes,
        max_depth,
        frames: Vec::new(),
        anchors: HashMap::new(),
    }
    .run()
}

/// An open sequence or mapping, and where its JSON text starts (for its
/// anchor, and for a merge to take it back).
struct Frame {
    mapping: bool,
    /// No item (or entry) written yet.
    first: bool,
    /// In a mapping: the next node is a key.
    key_next: bool,
    /// In a mapping: the next node is the value of a `<<` key.
    merge_next: bool,
    role: Role,
    anchor: usize,
    start: usize,
}

/// What an open node is to its parent.
enum Role {
    /// A value like any other.
    Node,
    /// The value of a `<<` key: a mapping whose entries join the parent's.
    MergeMap,
    /// The value of a `<<` key: a sequence of mappings, merged last to first;
    /// where each item's JSON text starts, from the frame's start.
    MergeList(Vec<usize>),
}

const WANT_MAP: &str = "map merge requires map or sequence of maps as the value";

/// What an anchor stands for: a scalar (usable as a key) or a node's JSON.
enum Anchor {
    Scalar(Scalar),
    Node(Vec<u8>),
}

struct Converter<'a> {
    parser: Parser<std::str::Chars<'a>>,
    out: Vec<u8>,
    /// Bytes kept in `anchors`, counted against the budget with `out`.
    kept: usize,
    /// Bytes merge lists have moved (each is rewritten in reverse order),
    /// bounded by the budget too: nested lists would otherwise move the
    /// same bytes once per level.
    moved: usize,
    max_bytes: usize,
    max_depth: usize,
    frames: Vec<Frame>,
    anchors: HashMap<usize, Anchor>,
}

fn malformed<T>(message: String) -> Result<T, YamlError> {
    Err(YamlError::Malformed(message))
}

impl Converter<'_> {
    fn run(mut self) -> Result<Vec<u8>, YamlError> {
        loop {
            let (event, mark) = self
                .parser
                .next_token()
                .map_err(|e| YamlError::Malformed(e.to_string()))?;
            let at = format!(" at line {} column {}", mark.line(), mark.col() + 1);
            let done = match event {
                Event::StreamStart | Event::DocumentStart | Event::Nothing => false,
                // No root node: an empty document or stream.
                Event::DocumentEnd | Event::StreamEnd => return Ok(Vec::new()),
                Event::Scalar(value, style, anchor, tag) => self
                    .scalar(&value, style, anchor, tag.as_ref())
                    .map_err(|e| with_place(e, &at))?,
                Event::Alias(id) => self.alias(id).map_err(|e| with_place(e, &at))?,
                Event::SequenceStart(anchor, tag) => {
                    self.open(false, anchor, tag.as_ref())
                        .map_err(|e| with_place(e, &at))?;
                    false
                }
                Event::MappingStart(anchor, tag) => {
                    self.open(true, anchor, tag.as_ref())
                        .map_err(|e| with_place(e, &at))?;
                    false
                }
                Event::SequenceEnd | Event::MappingEnd => self.close()?,
            };
            if done {
                break;
            }
        }
        // The root node is complete. yaml-rust2 ends the document there
        // whatever follows (`[1] ]` is read as `[1]`, as goyaml v2 reads
        // it); at most one more token is scanned and later documents are
        // never parsed.
        match self.parser.next_token() {
            Ok((Event::DocumentEnd | Event::StreamEnd, _)) => Ok(self.out),
            Ok((_, mark)) => malformed(format!(
                "unexpected content after the document at line {}",
                mark.line()
            )),
            Err(e) => malformed(e.to_string()),
        }
    }

    /// Writes a scalar as a key or a value; true when it was the root.
    fn scalar(
        &mut self,
        value: &str,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
    ) -> Result<bool, YamlError> {
        if self.key_next() && is_merge_key(value, style, tag) {
            if let Some(frame) = self.frames.last_mut() {
                frame.key_next = false;
                frame.merge_next = true;
            }
            return Ok(false);
        }
        if self.merge_source_next() {
            return malformed(WANT_MAP.into());
        }
        let scalar = resolve(value, style, tag)?;
        if self.key_next() {
            self.key(&scalar.key_text()?)?;
        } else {
            self.value_separator()?;
            self.write(scalar.json()?.as_bytes())?;
        }
        if anchor > 0 {
            self.keep(scalar.json().map_or(0, |j| j.len()))?;
            self.anchors.insert(anchor, Anchor::Scalar(scalar));
        }
        Ok(self.frames.is_empty())
    }

    fn alias(&mut self, id: usize) -> Result<bool, YamlError> {
        let Some(anchor) = self.anchors.get(&id) else {
            return malformed("an alias refers to a node that encloses it".into());
        };
        if self.merge_source_next()
            && !matches!(anchor, Anchor::Node(json) if json.starts_with(b"{"))
        {
            return malformed(WANT_MAP.into());
        }
        if let (Some(frame), Anchor::Node(json)) = (self.frames.last_mut(), anchor) {
            if frame.merge_next {
                frame.merge_next = false;
                frame.key_next = true;
                let json = json.clone();
                self.splice(&json)?;
                return Ok(false);
            }
        }
        match anchor {
            Anchor::Scalar(scalar) if self.key_next() => {
                let text = scalar.key_text()?;
                self.key(&text)?;
            }
            Anchor::Node(_) if self.key_next() => {
                return malformed("a mapping key must be a scalar".into());
            }
            Anchor::Scalar(scalar) => {
                let json = scalar.json()?;
                self.value_separator()?;
                self.write(json.as_bytes())?;
            }
            Anchor::Node(json) => {
                let json = json.clone();
                self.value_separator()?;
                self.write(&json)?;
            }
        }
        Ok(self.frames.is_empty())
    }

    fn open(&mut self, mapping: bool, anchor: usize, tag: Option<&Tag>) -> Result<(), YamlError> {
        let expected = if mapping { "map" } else { "seq" };
        if let Some(tag) = tag {
            if core_suffix(tag) != Some(expected) {
                return malformed(format!("unsupported YAML tag {}", tag_text(tag)));
            }
        }
        if self.key_next() {
            return malformed("a mapping key must be a scalar".into());
        }
        if !mapping && self.in_merge_list() {
            return malformed(WANT_MAP.into());
        }
        let role = match self.frames.last_mut() {
            Some(frame) if frame.merge_next => {
                frame.merge_next = false;
                if mapping {
                    Role::MergeMap
                } else {
                    Role::MergeList(Vec::new())
                }
            }
            _ => Role::Node,
        };
        if self.frames.len() >= self.max_depth {
            return malformed(format!("exceeded max depth of {}", self.max_depth));
        }
        self.value_separator()?;
        let start = self.out.len();
        self.write(if mapping { b"{" } else { b"[" })?;
        self.frames.push(Frame {
            mapping,
            first: true,
            key_next: mapping,
            merge_next: false,
            role,
            anchor,
            start,
        });
        Ok(())
    }

    /// Ends the open node; true when it was the root.
    fn close(&mut self) -> Result<bool, YamlError> {
        let Some(frame) = self.frames.pop() else {
            return malformed("unbalanced YAML events".into());
        };
        self.write(if frame.mapping { b"}" } else { b"]" })?;
        // The root's copy could never be used: no alias can follow it.
        if frame.anchor > 0 && !self.frames.is_empty() {
            let json = self.out[frame.start..].to_vec();
            self.keep(json.len())?;
            self.anchors.insert(frame.anchor, Anchor::Node(json));
        }
        match frame.role {
            Role::Node => {}
            Role::MergeMap => self.splice_in_place(frame.start),
            Role::MergeList(starts) => {
                self.moved += self.out.len() - frame.start;
                if self.moved > self.max_bytes {
                    return Err(YamlError::TooLarge);
                }
                let json = self.out.split_off(frame.start);
                // `[A,B,C]`: an item ends where the `,` before the next one
                // is, the last one before the `]`.
                let ends = starts.iter().skip(1).map(|next| next - 1);
                let items: Vec<_> = starts.iter().zip(ends.chain([json.len() - 1])).collect();
                for (&start, end) in items.into_iter().rev() {
                    self.splice(&json[start..end])?;
                }
            }
        }
        Ok(self.frames.is_empty())
    }

    /// The next node is what a `<<` key merges: the key's value, or an item
    /// of the list that value is.
    fn merge_source_next(&self) -> bool {
        self.frames.last().is_some_and(|f| f.merge_next) || self.in_merge_list()
    }

    fn in_merge_list(&self) -> bool {
        self.frames
            .last()
            .is_some_and(|f| matches!(f.role, Role::MergeList(_)))
    }

    /// Makes the mapping just written at `start` (the value of a `<<` key)
    /// part of the open mapping without moving it: its `{` becomes the `,`
    /// after the open mapping's last entry (a space when there is none) and
    /// its `}` goes.
    fn splice_in_place(&mut self, start: usize) {
        if self.out.len() - start == 2 {
            self.out.truncate(start);
            return;
        }
        self.out.pop();
        let first = self
            .frames
            .last_mut()
            .is_some_and(|f| std::mem::replace(&mut f.first, false));
        self.out[start] = if first { b' ' } else { b',' };
    }

    /// Writes the entries of `json`, a mapping's JSON text, as entries of
    /// the open mapping.
    fn splice(&mut self, json: &[u8]) -> Result<(), YamlError> {
        let entries = &json[1..json.len() - 1];
        if entries.is_empty() {
            return Ok(());
        }
        let first = self
            .frames
            .last_mut()
            .is_some_and(|f| std::mem::replace(&mut f.first, false));
        if !first {
            self.write(b",")?;
        }
        self.write(entries)
    }

    fn key_next(&self) -> bool {
        self.frames.last().is_some_and(|f| f.mapping && f.key_next)
    }

    /// Writes `text` as the next key of the open mapping, and the `:`.
    fn key(&mut self, text: &str) -> Result<(), YamlError> {
        let first = self.frames.last().is_some_and(|f| f.first);
        if !first {
            self.write(b",")?;
        }
        self.write_string(text)?;
        self.write(b":")?;
        if let Some(frame) = self.frames.last_mut() {
            frame.first = false;
            frame.key_next = false;
        }
        Ok(())
    }

    /// Before a value: a `,` between sequence items; in a mapping, the key
    /// and `:` are already written and the next node is a key again.
    fn value_separator(&mut self) -> Result<(), YamlError> {
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        if frame.mapping {
            frame.key_next = true;
            return Ok(());
        }
        let first = std::mem::replace(&mut frame.first, false);
        if !first {
            self.write(b",")?;
        }
        let at = self.out.len();
        if let Some(Frame {
            role: Role::MergeList(starts),
            start,
            ..
        }) = self.frames.last_mut()
        {
            starts.push(at - *start);
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), YamlError> {
        let needed = self.out.len() + bytes.len();
        if needed + self.kept > self.max_bytes {
            return Err(YamlError::TooLarge);
        }
        if needed > self.out.capacity() {
            // Grow by doubling, but never past the budget.
            let target = (self.out.capacity() * 2).max(needed).min(self.max_bytes);
            self.out.reserve_exact(target - self.out.len());
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn write_string(&mut self, s: &str) -> Result<(), YamlError> {
        // Escaping only lengthens a string: check before building it.
        if self.out.len() + s.len() + 2 + self.kept > self.max_bytes {
            return Err(YamlError::TooLarge);
        }
        self.write(json_string(s).as_bytes())
    }

    fn keep(&mut self, bytes: usize) -> Result<(), YamlError> {
        self.kept += bytes;
        if self.out.len() + self.kept > self.max_bytes {
            return Err(YamlError::TooLarge);
        }
        Ok(())
    }
}

/// A `<<` key: plain and untagged, or tagged `!!merge`, as goyaml v2's `isMerge`.
fn is_merge_key(value: &str, style: TScalarStyle, tag: Option<&Tag>) -> bool {
    value == "<<"
        && match tag {
            None => style == TScalarStyle::Plain,
            Some(tag) => core_suffix(tag) == Some("merge"),
        }
}

fn with_place(err: YamlError, at: &str) -> YamlError {
    match err {
        YamlError::Malformed(m) => YamlError::Malformed(format!("{m}{at}")),
        other => other,
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(yaml: &str) -> Result<serde_json::Value, YamlError> {
        let bytes = to_json(yaml.as_bytes(), 1 << 20, 64)?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    fn error(yaml: &str) -> String {
        match to_json(yaml.as_bytes(), 1 << 20, 64) {
            Err(YamlError::Malformed(m)) => m,
            other => panic!("{yaml:?} gave {other:?}"),
        }
    }

    #[test]
    fn documents_convert_to_their_json_form() {
        assert_eq!(
            convert("input:\n  user: alice\n  num: 3\n  f: 1.5\n  ok: true\n  none: ~\n  empty:\n  list: [1, two, {a: b}]\n  1: one\n  'q': \"s\\u00e9\"\n").unwrap(),
            json!({"input": {
                "user": "alice", "num": 3, "f": 1.5, "ok": true, "none": null,
                "empty": null, "list": [1, "two", {"a": "b"}], "1": "one", "q": "sé"
            }})
        );
        // YAML 1.1, as goyaml v2 reads it: the key `n` is the boolean false.
        assert_eq!(convert("n: 3\nno: 4").unwrap(), json!({"false": 4}));
        assert_eq!(convert("[]").unwrap(), json!([]));
        assert_eq!(
            convert("- a\n- - b\n  - {}\n").unwrap(),
            json!(["a", ["b", {}]])
        );
        assert_eq!(to_json(b" \n# only a comment\n", 10, 10), Ok(Vec::new()));
        // Only the first document is read.
        assert_eq!(convert("a: 1\n---\nb: [\n").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn json_bodies_stay_json() {
        // A surrogate pair, which YAML parsers refuse, and an exact decimal.
        let body = br#"{"input": {"e": "\ud83d\ude00", "n": 0.1000000000000000000001}}"#;
        assert_eq!(to_json(body, 1 << 20, 64).unwrap(), body.to_vec());
        assert_eq!(to_json(body, 10, 64), Err(YamlError::TooLarge));
    }

    #[test]
    fn aliases_expand_and_anchors_may_be_redefined() {
        assert_eq!(
            convert("a: &x [1, {b: 2}]\nc: *x\n").unwrap(),
            json!({"a": [1, {"b": 2}], "c": [1, {"b": 2}]})
        );
        // The latest definition of a name wins, as in YAML and goyaml.
        assert_eq!(
            convert("a: &x 1\nb: &x 2\nc: &y 3\nd: *x\n").unwrap(),
            json!({"a": 1, "b": 2, "c": 3, "d": 2})
        );
        assert_eq!(
            convert("&k key: v\nother: *k\n").unwrap(),
            json!({"key": "v", "other": "key"})
        );
        assert_eq!(
            convert("a: &n 5\n*n : six\n").unwrap(),
            json!({"a": 5, "5": "six"})
        );
    }

    #[test]
    fn an_alias_bomb_stops_at_the_byte_budget() {
        // Nine levels of ten aliases: 10^9 strings from about 450 bytes.
        let mut bomb = String::from("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, name) = (pair[0], pair[1]);
            let items = vec![format!("*{prev}"); 10].join(",");
            bomb.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        assert!(bomb.len() < 500);
        let started = std::time::Instant::now();
        assert_eq!(
            to_json(bomb.as_bytes(), 1 << 20, 64),
            Err(YamlError::TooLarge)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Three levels (1000 strings) fit a 1 MiB budget, not a 4 KiB one.
        let small: String = bomb.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(to_json(small.as_bytes(), 1 << 20, 64).unwrap().len() > 6000);
        assert_eq!(
            to_json(small.as_bytes(), 4096, 64),
            Err(YamlError::TooLarge)
        );
    }

    #[test]
    fn merge_keys_merge_as_goyaml_v2_merges_them() {
        let base = "b: &b {x: 1, v: 2}\nq: &q {x: 3, z: 4}\nscalar: &s 5\nempty: &e {}\n";
        let merged = |yaml: &str| convert(&format!("{base}m: {yaml}\n")).unwrap()["m"].clone();
        // In place: a key after the merge wins, a key before it loses.
        assert_eq!(merged("{<<: *b, v: 9}"), json!({"x": 1, "v": 9}));
        assert_eq!(merged("{v: 9, <<: *b}"), json!({"x": 1, "v": 2}));
        // A list: earlier mappings take precedence.
        assert_eq!(merged("{<<: [*b, *q]}"), json!({"x": 1, "v": 2, "z": 4}));
        assert_eq!(
            merged("{<<: [*q, *b], z: 0}"),
            json!({"x": 3, "v": 2, "z": 0})
        );
        // Inline mappings, in a list too; empty ones add nothing.
        assert_eq!(merged("{<<: {k: v}, j: 1}"), json!({"k": "v", "j": 1}));
        assert_eq!(
            merged("{<<: [{k: 1}, *q, {}]}"),
            json!({"k": 1, "x": 3, "z": 4})
        );
        assert_eq!(merged("{<<: *e}"), json!({}));
        assert_eq!(merged("{a: 1, <<: *e, <<: {}}"), json!({"a": 1}));
        assert_eq!(merged("{<<: []}"), json!({}));
        // Block style, a tagged key, and a quoted `<<` (an ordinary key).
        assert_eq!(
            merged("\n  !!merge <<: *b\n  w: 0"),
            json!({"x": 1, "v": 2, "w": 0})
        );
        assert_eq!(merged("{\"<<\": *b}"), json!({"<<": {"x": 1, "v": 2}}));
        // A merged mapping can be anchored, and itself merge.
        let doc = convert("a: &a {<<: {p: 1}, q: 2}\nb: {<<: *a, r: 3}\nc: *a\n").unwrap();
        assert_eq!(doc["b"], json!({"p": 1, "q": 2, "r": 3}));
        assert_eq!(doc["c"], json!({"p": 1, "q": 2}));
        let doc = convert("a: {<<: &i {p: 1}}\nb: *i\n").unwrap();
        assert_eq!(doc, json!({"a": {"p": 1}, "b": {"p": 1}}));
        // Only mappings merge.
        for bad in ["1", "*s", "[1]", "[*s]", "[[1]]", "[x]", "", "[*b, 2]"] {
            let message = error(&format!("{base}m: {{<<: {bad}}}\n"));
            assert!(message.contains(WANT_MAP), "{bad}: {message}");
        }
        // Merged entries count against the budget as any alias does.
        let least_budget = |doc: String| {
            (0..4096)
                .find(|&budget| to_json(doc.as_bytes(), budget, 64).is_ok())
                .unwrap()
        };
        let plain = least_budget(format!("{base}m: {{}}\n"));
        let merging = least_budget(format!("{base}m: {{<<: *b}}\n"));
        assert_eq!(merging - plain, r#""x":1,"v":2"#.len());
        // Merged mappings stay where they were written; a list is moved
        // once per level, and what lists move counts against the budget.
        let inner = format!("{{k: {}}}", "x".repeat(200));
        let nested = |levels: usize, open: &str, close: &str| {
            format!(
                "m: {}{inner}{}\n",
                open.repeat(levels),
                close.repeat(levels)
            )
        };
        let maps = least_budget(nested(8, "{<<: ", "}"));
        assert!(maps < 300, "{maps}");
        let lists = least_budget(nested(8, "{<<: [", "]}"));
        assert!(lists >= 8 * 200, "{lists}");
    }

    #[test]
    fn what_has_no_json_form_is_refused() {
        let deep = format!("x: {}1{}", "[".repeat(70), "]".repeat(70));
        assert!(error(&deep).contains("exceeded max depth of 64"));
        // Deeper than any stack: refused early (by the depth limit, or by
        // the scanner's own nesting limit, which looks ahead), no recursion.
        for deeper in ["[".repeat(200_000), "- ".repeat(100_000)] {
            let message = error(&deeper);
            assert!(
                message.contains("exceeded max depth of 64") || message.contains("recursion limit"),
                "{message}"
            );
        }
        assert!(error("x: .nan").contains("has no JSON form"));
        assert!(error("x: [1").contains("line"));
        assert!(error("x: *nope").contains("unknown anchor"));
        assert!(error("a: &a [1, *a]").contains("encloses it"));
        assert!(error("x: !custom 1").contains("unsupported YAML tag"));
        assert!(error("x: !!binary aGk=").contains("unsupported YAML tag"));
        assert!(error("x: !!int abc").contains("!!int"));
        assert!(error("? [a]\n: b\n").contains("must be a scalar"));
        assert!(error("a: 1\nb: [\n").contains("line"));
        assert_eq!(to_json(b"x: [1, 2, 3]", 8, 64), Err(YamlError::TooLarge));
        let long = format!("x: [{}]", "1,".repeat(MAX_YAML_BYTES / 2));
        assert_eq!(
            to_json(long.as_bytes(), usize::MAX, 64),
            Err(YamlError::TooLong)
        );
        // An anchored root is not kept: it fits a budget of its own size.
        let root = b"&r [1, 2, 3]";
        assert_eq!(to_json(root, 7, 64).unwrap(), b"[1,2,3]".to_vec());
        assert_eq!(
            to_json(&[b'a', b':', b' ', 0xff], 100, 64),
            Err(YamlError::Malformed("the body is not UTF-8".into()))
        );
    }
}
