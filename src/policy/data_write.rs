//! OPA's data writes on the data document: `PUT` (create or overwrite,
//! creating missing parents), `PATCH` (JSON Patch, RFC 6902, applied to the
//! document at the path) and `DELETE`. Pure functions on a JSON object; the
//! store applies them to a copy and activates the result.

use serde_json::{Map, Value as Json};

use super::path::{MAX_DOCUMENT_DEPTH, MAX_PATH_SEGMENTS};

/// One data write.
#[derive(Debug)]
pub enum DataWrite {
    Put {
        path: Vec<String>,
        value: Json,
        /// `If-None-Match: *`: do nothing when the document exists.
        if_none_match: bool,
    },
    Patch {
        path: Vec<String>,
        ops: json_patch::Patch,
    },
    Delete {
        path: Vec<String>,
    },
}

impl DataWrite {
    /// The path the write changes.
    pub fn path(&self) -> &[String] {
        match self {
            DataWrite::Put { path, .. }
            | DataWrite::Patch { path, .. }
            | DataWrite::Delete { path } => path,
        }
    }
}

/// Why a data write was not applied.
#[derive(Debug, PartialEq, Eq)]
pub enum DataWriteError {
    /// The document (or a parent) does not exist: 404.
    NotFound(String),
    /// `If-None-Match: *` and the document exists: 304.
    NotModified,
    /// A bad value or patch: 400.
    Invalid(String),
}

fn rendered(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

/// Applies `write` to `data` (the root object).
pub fn apply(data: &mut Map<String, Json>, write: DataWrite) -> Result<(), DataWriteError> {
    match write {
        DataWrite::Put {
            path,
            value,
            if_none_match,
        } => {
            if path.len() > MAX_PATH_SEGMENTS {
                return Err(DataWriteError::Invalid(format!(
                    "path has more than {MAX_PATH_SEGMENTS} segments"
                )));
            }
            let Some((last, parents)) = path.split_last() else {
                let Json::Object(value) = value else {
                    return Err(DataWriteError::Invalid(
                        "the root document must be an object".into(),
                    ));
                };
                if if_none_match {
                    return Err(DataWriteError::NotModified);
                }
                *data = value;
                return Ok(());
            };
            let mut node = data;
            for (i, segment) in parents.iter().enumerate() {
                let child = node
                    .entry(segment.clone())
                    .or_insert_with(|| Json::Object(Map::new()));
                node = match child {
                    Json::Object(map) => map,
                    _ => {
                        return Err(DataWriteError::Invalid(format!(
                            "storage_write_conflict: {}",
                            rendered(&path[..=i])
                        )))
                    }
                };
            }
            if if_none_match && node.contains_key(last) {
                return Err(DataWriteError::NotModified);
            }
            node.insert(last.clone(), value);
            Ok(())
        }
        DataWrite::Delete { path } => {
            let Some((last, parents)) = path.split_last() else {
                // OPA's store refuses this too (`updateRoot`).
                return Err(DataWriteError::Invalid(
                    "storage_invalid_patch_error: root cannot be removed".into(),
                ));
            };
            let missing =
                || DataWriteError::NotFound(format!("{}: document missing", rendered(&path)));
            let parent = object_at(data, parents).ok_or_else(missing)?;
            parent.remove(last).map(|_| ()).ok_or_else(missing)
        }
        DataWrite::Patch { path, ops } => {
            let mut root = Json::Object(std::mem::take(data));
            let result = patch_at(&mut root, &path, &ops);
            if let Json::Object(map) = root {
                *data = map;
            }
            result
        }
    }
}

fn object_at<'a>(
    data: &'a mut Map<String, Json>,
    path: &[String],
) -> Option<&'a mut Map<String, Json>> {
    let mut node = data;
    for segment in path {
        node = match node.get_mut(segment)? {
            Json::Object(map) => map,
            _ => return None,
        };
    }
    Some(node)
}

fn patch_at(
    root: &mut Json,
    path: &[String],
    ops: &json_patch::Patch,
) -> Result<(), DataWriteError> {
    let mut target = root;
    for segment in path {
        target = match target {
            Json::Object(map) => map.get_mut(segment),
            Json::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| DataWriteError::NotFound(format!("{}: document missing", rendered(path))))?;
    }
    // One operation at a time, so that the depth is checked after each: a
    // `copy` of a document into itself doubles its depth, and a few of them
    // would nest it deep enough to overflow the stack when it is cloned,
    // serialized or dropped. All or nothing: on any error the document is
    // put back as it was.
    let before = target.clone();
    let applied = apply_ops(target, path, ops);
    if applied.is_err() {
        *target = before;
    }
    applied
}

fn apply_ops(
    target: &mut Json,
    path: &[String],
    ops: &json_patch::Patch,
) -> Result<(), DataWriteError> {
    for op in ops.iter() {
        json_patch::patch(target, std::slice::from_ref(op)).map_err(|err| match err.kind {
            json_patch::PatchErrorKind::InvalidPointer => DataWriteError::NotFound(format!(
                "{}{}: document missing",
                rendered(path).trim_end_matches('/'),
                err.path
            )),
            _ => DataWriteError::Invalid(err.to_string()),
        })?;
        if path.len() + nesting_depth(target) > MAX_DOCUMENT_DEPTH {
            return Err(DataWriteError::Invalid(format!(
                "the patched document would be nested more than {MAX_DOCUMENT_DEPTH} levels deep"
            )));
        }
    }
    Ok(())
}

/// The deepest nesting of objects and arrays in `value` (a scalar is 0),
/// found without recursion.
fn nesting_depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Json::Object(map) => stack.extend(map.values().map(|child| (child, depth + 1))),
            Json::Array(items) => stack.extend(items.iter().map(|child| (child, depth + 1))),
            _ => continue,
        }
        deepest = deepest.max(depth + 1);
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn path(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn put_creates_parents_and_honours_if_none_match() {
        let mut data = doc(json!({}));
        let put = |p: &str, v: Json, inm| DataWrite::Put {
            path: path(p),
            value: v,
            if_none_match: inm,
        };
        apply(&mut data, put("a/b/c", json!(1), false)).unwrap();
        assert_eq!(Json::Object(data.clone()), json!({"a": {"b": {"c": 1}}}));
        assert_eq!(
            apply(&mut data, put("a/b/c", json!(2), true)),
            Err(DataWriteError::NotModified)
        );
        assert!(matches!(
            apply(&mut data, put("a/b/c/d", json!(2), false)),
            Err(DataWriteError::Invalid(_))
        ));
        // A PATCH that copies a document into itself doubles its depth: it
        // stops at the bound instead of nesting without end.
        let mut data = doc(json!({"a": []}));
        let original = data.clone();
        // `a` is a chain of one-element arrays; copying it into its innermost
        // array doubles its depth.
        let doubling = |ops: u32| {
            json_patch::Patch(
                (0..ops)
                    .map(|k| {
                        let to = format!("/a{}", "/0".repeat(1 << k));
                        serde_json::from_value(json!({"op": "copy", "from": "/a", "path": to}))
                            .unwrap()
                    })
                    .collect(),
            )
        };
        let patch = |ops| DataWrite::Patch { path: vec![], ops };
        assert_eq!(
            apply(&mut data, patch(doubling(12))),
            Err(DataWriteError::Invalid(
                "the patched document would be nested more than 256 levels deep".into()
            ))
        );
        assert_eq!(data, original, "nothing applied");
        apply(&mut data, patch(doubling(6))).unwrap();
        assert_eq!(nesting_depth(&Json::Object(data.clone())), 1 + 64);
        let deep = |n: usize| "x/".repeat(n);
        apply(&mut data, put(&deep(MAX_PATH_SEGMENTS), json!(1), false)).unwrap();
        assert_eq!(
            apply(
                &mut data,
                put(&deep(MAX_PATH_SEGMENTS + 1), json!(1), false)
            ),
            Err(DataWriteError::Invalid(
                "path has more than 128 segments".into()
            ))
        );
    }

    #[test]
    fn patch_and_delete_need_the_document_to_exist() {
        let mut data = doc(json!({"users": {"alice": {"roles": ["a"]}}}));
        let ops: json_patch::Patch = serde_json::from_value(json!([
            {"op": "add", "path": "/alice/roles/-", "value": "b"},
            {"op": "replace", "path": "/alice/name", "value": "Alice"}
        ]))
        .unwrap();
        // `replace` of a missing member fails: nothing is applied.
        let err = apply(
            &mut data,
            DataWrite::Patch {
                path: path("users"),
                ops,
            },
        );
        assert!(matches!(err, Err(DataWriteError::NotFound(_))), "{err:?}");
        assert_eq!(data["users"]["alice"]["roles"], json!(["a"]));
        let ops: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/alice/roles/-", "value": "b"}]))
                .unwrap();
        apply(
            &mut data,
            DataWrite::Patch {
                path: path("users"),
                ops,
            },
        )
        .unwrap();
        assert_eq!(data["users"]["alice"]["roles"], json!(["a", "b"]));
        let ops: json_patch::Patch = serde_json::from_value(json!([])).unwrap();
        let err = apply(
            &mut data,
            DataWrite::Patch {
                path: path("nobody"),
                ops,
            },
        );
        assert!(matches!(err, Err(DataWriteError::NotFound(_))));
        apply(
            &mut data,
            DataWrite::Delete {
                path: path("users/alice"),
            },
        )
        .unwrap();
        assert_eq!(
            apply(
                &mut data,
                DataWrite::Delete {
                    path: path("users/alice")
                }
            ),
            Err(DataWriteError::NotFound(
                "/users/alice: document missing".into()
            ))
        );
    }
}
