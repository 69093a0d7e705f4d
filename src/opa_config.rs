//! OPA's configuration, read as `opa run` reads it (`internal/config`):
//! an optional YAML/JSON file with `${VAR}` substituted, then every `--set`
//! (Helm strvals syntax, `${VAR}` substituted too) and every `--set-file`,
//! deep-merged over the file, then typed and checked.
//!
//! The stages: [`raw`] builds and prepares the untyped tree (with
//! [`strvals`] for the overrides), [`model`] types it with unknown keys
//! rejected, [`validate`] checks references and injects OPA's defaults.
//! Every error names the dotted key at fault.
//!
//! One deliberate difference from OPA: `--set x=null` yields null, which
//! unsets `x` (OPA writes `{}`, which merges as a no-op into a map).

mod model;
mod raw;
mod strvals;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

pub use model::{
    Bearer, BundleConfig, Credentials, DecisionCacheConfig, DecisionLogsConfig, KeyConfig,
    OpaConfig, Polling, ServiceConfig, Signing, Tls, DEFAULT_BUFFER_SIZE_LIMIT_EVENTS,
    DEFAULT_KEY_ALGORITHM, DEFAULT_MAX_DELAY_SECONDS, DEFAULT_MIN_DELAY_SECONDS,
    DEFAULT_RESPONSE_HEADER_TIMEOUT_SECONDS, DEFAULT_SIZE_LIMIT_BYTES,
    DEFAULT_UPLOAD_SIZE_LIMIT_BYTES,
};

/// Loads `config_file` (if any) with the `--set` and `--set-file` overrides,
/// reading environment variables for `${VAR}`.
pub fn load(config_file: Option<&Path>, set: &[String], set_file: &[String]) -> Result<OpaConfig> {
    let text = match config_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file `{}`", path.display()))?,
        ),
        None => None,
    };
    let label = config_file.map(|p| format!("config file `{}`", p.display()));
    let file = label.as_deref().zip(text.as_deref());
    assemble(file, set, set_file, &process_env)
}

/// [`load`] from in-memory text: `file_text` is YAML (JSON is YAML).
pub fn from_parts(
    file_text: Option<&str>,
    set: &[String],
    set_file: &[String],
) -> Result<OpaConfig> {
    from_parts_with_env(file_text, set, set_file, &process_env)
}

/// [`from_parts`] with `${VAR}` looked up in `env`.
pub(crate) fn from_parts_with_env(
    file_text: Option<&str>,
    set: &[String],
    set_file: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpaConfig> {
    assemble(file_text.map(|t| ("config", t)), set, set_file, env)
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `file` is `(label for errors, text)`.
fn assemble(
    file: Option<(&str, &str)>,
    set: &[String],
    set_file: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpaConfig> {
    let mut root = match file {
        Some((label, text)) => parse_file(label, &raw::substitute_env(text, env))?,
        None => Map::new(),
    };
    let mut overrides = Map::new();
    for line in set {
        strvals::parse_into(&raw::substitute_env(line, env), &mut overrides)
            .with_context(|| format!("invalid `--set` value `{line}`"))?;
    }
    for line in set_file {
        strvals::parse_file_into(line, &mut overrides, &mut read_trimmed)
            .with_context(|| format!("invalid `--set-file` value `{line}`"))?;
    }
    raw::merge(&mut root, overrides);
    let active = raw::active(&root);
    raw::prepare(&mut root)?;
    let mut config = typed(Value::Object(root))?;
    validate::validate(&mut config)?;
    config.active = active;
    Ok(config)
}

/// A configuration file, YAML or JSON, read as OPA reads it: YAML 1.1
/// scalars, as goyaml v2 resolves them (`yes`, `on`: `true`).
fn parse_file(label: &str, text: &str) -> Result<Map<String, Value>> {
    let json = crate::api::yaml::config_to_json(text).map_err(|err| match err {
        crate::api::yaml::YamlError::Malformed(message) => {
            anyhow!("failed to parse {label}: {message}")
        }
        other => anyhow!("failed to parse {label}: {other:?}"),
    })?;
    let value: Value = if json.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&json).with_context(|| format!("failed to parse {label}"))?
    };
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => bail!("failed to parse {label}: expected a mapping at the top level, got {other}"),
    }
}

fn read_trimmed(path: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read file `{path}`"))?;
    Ok(text.trim().to_owned())
}

/// Types the tree; errors name the full dotted key.
fn typed(tree: Value) -> Result<OpaConfig> {
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let path = err.path().to_string();
        let message = err.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            // The path already ends with the unknown key.
            let key = if path.ends_with(field) {
                path
            } else {
                join(&path, field)
            };
            let expected = expected.trim_start_matches(", ");
            return anyhow!("config: unknown key {key} ({expected})");
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.trim_end_matches('`');
            return anyhow!("config: missing required key {}", join(&path, field));
        }
        if path == "." {
            anyhow!("config: {message}")
        } else {
            anyhow!("config: {path}: {message}")
        }
    })
}

/// `parent.child`, where serde_path_to_error writes the root as `.`.
fn join(parent: &str, child: &str) -> String {
    if parent == "." || parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}
