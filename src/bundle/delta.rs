//! Delta bundles, as OPA defines them: a bundle whose `patch.json` holds at
//! least one operation (`{"data": [{"op", "path", "value"}, ...]}`) changes
//! the data under its roots instead of replacing it. The operations, on
//! paths from the data root (JSON pointers, each segment URL-unescaped and
//! then `~1`/`~0`-unescaped, as OPA's `ParsePatchPathEscaped`):
//!
//! - `upsert`: creates missing parent objects, then sets the value (in an
//!   array: inserts at the index, `-` appends);
//! - `remove`, `replace`: the document must exist
//!   (`storage_not_found_error: <path>: document does not exist`).
//!
//! Any other op is `bad patch operation: <op>`. The store applies the whole
//! list to a copy, so a list that fails half-way changes nothing.

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::policy::path::MAX_PATH_SEGMENTS;

/// One operation of `patch.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    pub op: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub value: Json,
}

#[derive(Deserialize)]
struct PatchFile {
    #[serde(default)]
    data: Vec<PatchOperation>,
}

/// The bytes of a `patch.json` holding `ops`.
pub fn write(ops: &[PatchOperation]) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({ "data": ops }))?)
}

/// The operations of a `patch.json` (an empty list makes a snapshot bundle).
pub fn parse(bytes: &[u8]) -> Result<Vec<PatchOperation>> {
    let file: PatchFile =
        serde_json::from_slice(bytes).map_err(|e| anyhow!("{}: {e}", "patch.json"))?;
    Ok(file.data)
}

/// A patch path as data path segments.
pub fn path_segments(path: &str) -> Result<Vec<String>> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.split('/').count() > MAX_PATH_SEGMENTS {
        bail!("bad patch path '{path}': more than {MAX_PATH_SEGMENTS} segments");
    }
    trimmed
        .split('/')
        .map(|raw| {
            let unescaped = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| anyhow!("bad patch path '{path}': not UTF-8 once unescaped"))?;
            Ok(unescaped.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

/// Applies `ops` in order to `data` (the root of the data document).
pub fn apply(data: &mut Map<String, Json>, ops: &[PatchOperation]) -> Result<()> {
    for op in ops {
        let path = path_segments(&op.path)?;
        apply_one(data, &op.op, &path, &op.value)?;
    }
    Ok(())
}

fn rendered(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

fn not_found(path: &[String]) -> anyhow::Error {
    anyhow!(
        "storage_not_found_error: {}: document does not exist",
        rendered(path)
    )
}

fn apply_one(data: &mut Map<String, Json>, op: &str, path: &[String], value: &Json) -> Result<()> {
    if !matches!(op, "upsert" | "remove" | "replace") {
        return Err(anyhow!("bad patch operation: {op}"));
    }
    let Some((last, parents)) = path.split_last() else {
        return match (op, value) {
            ("remove", _) => Err(anyhow!("root cannot be removed")),
            (_, Json::Object(map)) => {
                *data = map.clone();
                Ok(())
            }
            _ => Err(anyhow!("root must be object")),
        };
    };
    let mut root = Json::Object(std::mem::take(data));
    let result = apply_at(&mut root, op, path, last, parents, value);
    if let Json::Object(map) = root {
        *data = map;
    }
    result
}

fn apply_at(
    root: &mut Json,
    op: &str,
    path: &[String],
    last: &String,
    parents: &[String],
    value: &Json,
) -> Result<()> {
    let conflict = |at: &[String]| anyhow!("storage_write_conflict_error: {}", rendered(at));
    let mut node = root;
    for (i, segment) in parents.iter().enumerate() {
        node = match node {
            Json::Object(map) => {
                if op == "upsert" && !map.contains_key(segment) {
                    map.insert(segment.clone(), Json::Object(Map::new()));
                }
                map.get_mut(segment).ok_or_else(|| not_found(path))?
            }
            Json::Array(items) => index(segment, items.len())
                .and_then(|at| items.get_mut(at))
                .ok_or_else(|| not_found(path))?,
            _ if op == "upsert" => return Err(conflict(&path[..i])),
            _ => return Err(not_found(path)),
        };
    }
    match (node, op) {
        (Json::Object(map), "upsert") => {
            map.insert(last.clone(), value.clone());
        }
        (Json::Object(map), "replace") => {
            *map.get_mut(last).ok_or_else(|| not_found(path))? = value.clone();
        }
        (Json::Object(map), _) => {
            map.remove(last).ok_or_else(|| not_found(path))?;
        }
        (Json::Array(items), "upsert") => {
            let at = if last == "-" {
                items.len()
            } else {
                index(last, items.len() + 1).ok_or_else(|| not_found(path))?
            };
            items.insert(at, value.clone());
        }
        (Json::Array(items), "replace") => {
            let at = index(last, items.len()).ok_or_else(|| not_found(path))?;
            items[at] = value.clone();
        }
        (Json::Array(items), _) => {
            let at = index(last, items.len()).ok_or_else(|| not_found(path))?;
            items.remove(at);
        }
        // As OPA's store: a scalar parent is "not found" (a scalar further
        // up is a write conflict, above).
        _ => return Err(not_found(path)),
    }
    Ok(())
}

/// `segment` as an array index below `len` (as Go's `Atoi`: `01` is 1).
fn index(segment: &str, len: usize) -> Option<usize> {
    segment.parse::<usize>().ok().filter(|&i| i < len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    fn op(op: &str, path: &str, value: Json) -> PatchOperation {
        PatchOperation {
            op: op.into(),
            path: path.into(),
            value,
        }
    }

    #[test]
    fn upsert_creates_parents_and_inserts_into_arrays() {
        let mut data = doc(json!({"a": {"list": [1, 3]}}));
        apply(
            &mut data,
            &[
                op("upsert", "/a/b/c", json!(1)),
                op("upsert", "a/list/1", json!(2)),
                op("upsert", "/a/list/-", json!(4)),
                op("upsert", "/a/b/c", json!(5)),
            ],
        )
        .unwrap();
        assert_eq!(
            Json::Object(data),
            json!({"a": {"b": {"c": 5}, "list": [1, 2, 3, 4]}})
        );
    }

    #[test]
    fn remove_and_replace_need_the_document() {
        let mut data = doc(json!({"a": {"x": 1, "list": [1, 2]}}));
        apply(
            &mut data,
            &[
                op("replace", "/a/x", json!(2)),
                op("remove", "/a/list/0", Json::Null),
            ],
        )
        .unwrap();
        assert_eq!(
            Json::Object(data.clone()),
            json!({"a": {"x": 2, "list": [2]}})
        );
        for (o, path) in [
            ("remove", "/a/y"),
            ("replace", "/a/y"),
            ("remove", "/b/c"),
            ("remove", "/a/list/1"),
        ] {
            let err = apply(&mut data, &[op(o, path, json!(0))]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("storage_not_found_error: {path}: document does not exist")
            );
        }
        let err = apply(&mut data, &[op("add", "/a/z", json!(0))]).unwrap_err();
        assert_eq!(err.to_string(), "bad patch operation: add");
        let err = apply(&mut data, &[op("upsert", "/a/x/deeper/y", json!(0))]).unwrap_err();
        assert_eq!(err.to_string(), "storage_write_conflict_error: /a/x");
        let err = apply(&mut data, &[op("upsert", "/a/x/deeper", json!(0))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "storage_not_found_error: /a/x/deeper: document does not exist"
        );
        assert_eq!(Json::Object(data), json!({"a": {"x": 2, "list": [2]}}));
    }

    #[test]
    fn the_root_is_replaced_only_by_an_object() {
        let mut data = doc(json!({"a": 1}));
        assert_eq!(
            apply(&mut data, &[op("remove", "/", Json::Null)])
                .unwrap_err()
                .to_string(),
            "root cannot be removed"
        );
        assert!(apply(&mut data, &[op("replace", "", json!(1))]).is_err());
        apply(&mut data, &[op("upsert", "/", json!({"b": 2}))]).unwrap();
        assert_eq!(Json::Object(data), json!({"b": 2}));
    }

    #[test]
    fn paths_are_unescaped_like_opa() {
        assert_eq!(
            path_segments("/a%20b/c~1d/e~0f/").unwrap(),
            vec!["a b", "c/d", "e~f"]
        );
        assert!(path_segments("/").unwrap().is_empty());
        let deep = |n: usize| "/a".repeat(n);
        assert_eq!(path_segments(&deep(MAX_PATH_SEGMENTS)).unwrap().len(), 128);
        assert!(path_segments(&deep(MAX_PATH_SEGMENTS + 1)).is_err());
    }

    #[test]
    fn the_file_is_an_object_with_a_data_list() {
        assert_eq!(
            parse(br#"{"data": [{"op": "remove", "path": "/a"}]}"#).unwrap(),
            vec![op("remove", "/a", Json::Null)]
        );
        assert!(parse(br#"{}"#).unwrap().is_empty());
        assert!(parse(br#"[{"op": "remove", "path": "/a"}]"#).is_err());
    }
}
