//! The untyped stage: the merged JSON tree before it meets the typed model.
//!
//! Here live the steps that need the raw tree: `${VAR}` substitution, OPA's
//! deep merge of overrides, Go's "null means unset", the list form of
//! `services`, and a clear error for the OPA options Regent does not
//! implement (rather than a bare "unknown key").

use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// Keys OPA accepts but Regent does not implement; `*` is any map key.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("bundle", " (use `bundles`)"),
    ("caching", ""),
    ("discovery", ""),
    ("distributed_tracing", ""),
    ("extra", ""),
    ("nd_builtin_cache", ""),
    ("plugins", ""),
    ("server", ""),
    ("status", ""),
    ("storage", ""),
    ("services.*.type", ""),
    ("services.*.credentials.oauth2", ""),
    ("services.*.credentials.client_tls", ""),
    ("services.*.credentials.s3_signing", ""),
    ("services.*.credentials.gcp_metadata", ""),
    ("services.*.credentials.azure_managed_identity", ""),
    ("services.*.credentials.plugin", ""),
    ("decision_logs.reporting.max_decisions_per_second", ""),
    ("decision_logs.request_context", ""),
    ("decision_logs.mask_decision", ""),
    ("decision_logs.drop_decision", ""),
    ("decision_logs.plugin", ""),
    ("decision_logs.nd_builtin_cache", ""),
];

/// Where the model has a struct: serde would also accept a list there
/// (fields by position), which OPA rejects, so lists are refused up front.
const STRUCTS: &[&str] = &[
    "services.*",
    "services.*.credentials",
    "services.*.credentials.bearer",
    "services.*.tls",
    "bundles.*",
    "bundles.*.polling",
    "bundles.*.signing",
    "keys.*",
    "decision_logs",
    "decision_logs.reporting",
    "decision_cache",
];

/// Replaces each `${NAME}` with `env(NAME)`; an unset or empty variable
/// stays literal, as in OPA 1.x.
pub(super) fn substitute_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let end = start + 2 + len;
        out.push_str(&rest[..start]);
        match env(&rest[start + 2..end]) {
            Some(value) if !value.is_empty() => out.push_str(&value),
            _ => out.push_str(&rest[start..=end]),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Merges `src` over `dest` as OPA does: objects merge key by key, anything
/// else (lists included) is replaced.
pub(super) fn merge(dest: &mut Map<String, Value>, src: Map<String, Value>) {
    for (key, value) in src {
        match (dest.get_mut(&key), value) {
            (Some(Value::Object(dest_inner)), Value::Object(src_inner)) => {
                merge(dest_inner, src_inner)
            }
            (_, value) => {
                dest.insert(key, value);
            }
        }
    }
}

/// Gets the tree ready for typing: drops null members (Go leaves a field
/// unset for `null`, so `--set x=null` unsets `x`), turns a `services` list
/// into a map and rejects OPA options Regent does not implement.
pub(super) fn prepare(root: &mut Map<String, Value>) -> Result<()> {
    for value in root.values_mut() {
        drop_nulls(value);
    }
    root.retain(|_, v| !v.is_null());
    services_as_map(root)?;
    for (pattern, hint) in UNSUPPORTED {
        if let Some(key) = find(root, pattern, "", &|_| true) {
            bail!("config: config key \"{key}\" is an OPA option Regent does not support{hint}");
        }
    }
    for pattern in STRUCTS {
        if let Some(key) = find(root, pattern, "", &Value::is_array) {
            bail!("config: {key}: invalid type: sequence, expected a map");
        }
    }
    Ok(())
}

/// The configuration as OPA's `GET /v1/config` shows it (`ActiveConfig`):
/// the merged tree as given (nulls dropped, `services` in the form it was
/// written), without service credentials and key material (`key`,
/// `private_key`). OPA redacts exactly these.
pub(super) fn active(root: &Map<String, Value>) -> Map<String, Value> {
    let mut active = root.clone();
    for value in active.values_mut() {
        drop_nulls(value);
    }
    active.retain(|_, v| !v.is_null());
    let remove = |item: &mut Value, keys: &[&str]| {
        if let Value::Object(item) = item {
            keys.iter().for_each(|k| {
                item.remove(*k);
            });
        }
    };
    match active.get_mut("services") {
        Some(Value::Object(services)) => services
            .values_mut()
            .for_each(|s| remove(s, &["credentials"])),
        Some(Value::Array(services)) => services
            .iter_mut()
            .for_each(|s| remove(s, &["credentials"])),
        _ => {}
    }
    if let Some(Value::Object(keys)) = active.get_mut("keys") {
        keys.values_mut()
            .for_each(|k| remove(k, &["key", "private_key"]));
    }
    active
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(list) => list.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// OPA accepts `services` as a list of objects with a `name`; a `name`
/// inside the map form is ignored, as in OPA.
fn services_as_map(root: &mut Map<String, Value>) -> Result<()> {
    match root.get_mut("services") {
        Some(Value::Array(list)) => {
            let mut services = Map::new();
            for (i, item) in std::mem::take(list).into_iter().enumerate() {
                let Value::Object(mut service) = item else {
                    bail!("config: services[{i}]: expected a service object");
                };
                let name = match service.remove("name") {
                    Some(Value::String(name)) if !name.is_empty() => name,
                    Some(_) => bail!("config: services[{i}].name: expected a non-empty string"),
                    None => bail!("config: services[{i}]: missing `name`"),
                };
                if services.contains_key(&name) {
                    bail!("config: services[{i}].name: duplicate service name `{name}`");
                }
                services.insert(name, Value::Object(service));
            }
            root.insert("services".to_owned(), Value::Object(services));
        }
        Some(Value::Object(services)) => {
            for service in services.values_mut() {
                if let Value::Object(service) = service {
                    service.remove("name");
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The dotted key of the first member matching `pattern` (dotted, `*` for
/// any key) whose value passes `test`, if any.
fn find(
    map: &Map<String, Value>,
    pattern: &str,
    prefix: &str,
    test: &dyn Fn(&Value) -> bool,
) -> Option<String> {
    let (first, rest) = match pattern.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (pattern, None),
    };
    for (key, value) in map {
        if first != "*" && first != key {
            continue;
        }
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (rest, value) {
            (None, value) if test(value) => return Some(path),
            (Some(rest), Value::Object(inner)) => {
                if let Some(found) = find(inner, rest, &path, test) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("cvat".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_substitution() {
        assert_eq!(
            substitute_env("url: http://${HOST}:${PORT}/${EMPTY}", &env),
            "url: http://cvat:${PORT}/${EMPTY}"
        );
        assert_eq!(substitute_env("a ${HOST", &env), "a ${HOST");
        assert_eq!(
            substitute_env("$HOST ${HOST}${HOST}", &env),
            "$HOST cvatcvat"
        );
    }

    #[test]
    fn merge_is_deep_and_replaces_lists() {
        let mut dest = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        let src = serde_json::json!({"a": {"c": [3], "e": 2}, "d": {"x": 1}});
        let (Value::Object(dest_map), Value::Object(src_map)) = (&mut dest, src) else {
            unreachable!()
        };
        merge(dest_map, src_map);
        assert_eq!(
            dest,
            serde_json::json!({"a": {"b": 1, "c": [3], "e": 2}, "d": {"x": 1}})
        );
    }
}
