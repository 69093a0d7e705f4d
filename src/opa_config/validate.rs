//! Checks across the typed configuration that serde cannot express, and the
//! defaults OPA injects, following OPA's `validateAndInjectDefaults` for
//! services (`plugins/rest`), keys (`keys`) and bundles (`plugins/bundle`,
//! `download`). Every error names the offending key.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use hyper::Uri;

use super::model::{
    BundleConfig, DecisionLogsConfig, KeyConfig, OpaConfig, ServiceConfig, Signing,
    DEFAULT_BUFFER_SIZE_LIMIT_EVENTS, DEFAULT_KEY_ALGORITHM, DEFAULT_LOG_MAX_DELAY_SECONDS,
    DEFAULT_LOG_MIN_DELAY_SECONDS, DEFAULT_MAX_DELAY_SECONDS, DEFAULT_MIN_DELAY_SECONDS,
    DEFAULT_UPLOAD_SIZE_LIMIT_BYTES, MAX_UPLOAD_SIZE_LIMIT_BYTES, MIN_UPLOAD_SIZE_LIMIT_BYTES,
};

/// OPA's algorithms, less ES512 (which the JWT library lacks).
const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384",
];

pub(super) fn validate(config: &mut OpaConfig) -> Result<()> {
    for (name, service) in &mut config.services {
        service_defaults(name, service)?;
    }
    for (id, key) in &mut config.keys {
        key_defaults(id, key)?;
    }
    let services: Vec<&str> = config.services.keys().map(String::as_str).collect();
    for (name, bundle) in &mut config.bundles {
        bundle_defaults(name, bundle, &services, &config.keys)?;
    }
    if let Some(logs) = &mut config.decision_logs {
        decision_logs_defaults(logs, &services)?;
    }
    Ok(())
}

/// OPA's `plugins/logs` `validateAndInjectDefaults`, with its messages.
fn decision_logs_defaults(logs: &mut DecisionLogsConfig, services: &[&str]) -> Result<()> {
    match &logs.service {
        Some(service) if !services.contains(&service.as_str()) => bail!(
            "config: decision_logs.service: invalid service name \"{service}\" in decision_logs (configured services: {})",
            list(services)
        ),
        Some(_) => {}
        // As OPA: without a service named, the first one, unless the
        // console is on (then the console only). OPA's "first" is the
        // order of its services map; here, the first by name.
        None if !logs.console => logs.service = services.first().map(|s| (*s).to_owned()),
        None => {}
    }
    logs.resource = Some(match (&logs.partition_name, logs.resource.as_deref()) {
        (Some(partition), _) => format!("/logs/{partition}"),
        (None, None) => "/logs".to_owned(),
        (None, Some(resource)) => resource.to_owned(),
    });
    let reporting = &mut logs.reporting;
    match (reporting.min_delay_seconds, reporting.max_delay_seconds) {
        (Some(min), Some(max)) if max < min => bail!(
            "config: decision_logs.reporting: max reporting delay must be >= min reporting delay in decision_logs"
        ),
        (Some(_), Some(_)) => {}
        (Some(_), None) => bail!(
            "config: decision_logs.reporting: reporting configuration missing 'max_delay_seconds' in decision_logs"
        ),
        (None, Some(_)) => bail!(
            "config: decision_logs.reporting: reporting configuration missing 'min_delay_seconds' in decision_logs"
        ),
        (None, None) => {
            reporting.min_delay_seconds = Some(DEFAULT_LOG_MIN_DELAY_SECONDS);
            reporting.max_delay_seconds = Some(DEFAULT_LOG_MAX_DELAY_SECONDS);
        }
    }
    // OPA clamps the upload limit (with a warning), it does not refuse it.
    let limit = reporting
        .upload_size_limit_bytes
        .unwrap_or(DEFAULT_UPLOAD_SIZE_LIMIT_BYTES);
    let clamped = limit.clamp(MIN_UPLOAD_SIZE_LIMIT_BYTES, MAX_UPLOAD_SIZE_LIMIT_BYTES);
    if clamped != limit {
        tracing::warn!(
            configured = limit,
            limit = clamped,
            "the configured `upload_size_limit_bytes` is out of range and has been clamped"
        );
    }
    reporting.upload_size_limit_bytes = Some(clamped);
    let invalid = "config: decision_logs.reporting: invalid decision_log config";
    match reporting.buffer_type.get_or_insert_with(|| "size".to_owned()).as_str() {
        "size" => {
            if reporting.buffer_size_limit_events.is_some() {
                bail!("{invalid}, 'buffer_size_limit_events' isn't supported for the size buffer type");
            }
            if reporting.buffer_size_limit_bytes.is_some_and(|n| n <= 0) {
                bail!("{invalid}, 'buffer_size_limit_bytes' must be higher than 0");
            }
        }
        "event" => {
            if reporting.buffer_size_limit_bytes.is_some() {
                bail!("{invalid}, 'buffer_size_limit_bytes' isn't supported for the event buffer type");
            }
            let events = reporting
                .buffer_size_limit_events
                .get_or_insert(DEFAULT_BUFFER_SIZE_LIMIT_EVENTS);
            if *events <= 0 {
                bail!("{invalid}, 'buffer_size_limit_entries' must be higher than 0");
            }
        }
        other => bail!(
            "config: decision_logs.reporting.buffer_type: invalid buffer type \"{other}\", expected \"event\" or \"size\""
        ),
    }
    match reporting.trigger.as_deref() {
        None | Some("periodic") => {}
        Some(mode @ ("manual" | "immediate")) => bail!(
            "config: config key \"decision_logs.reporting.trigger\" set to \"{mode}\" is an OPA option Regent does not support (use \"periodic\")"
        ),
        Some(other) => bail!(
            "config: decision_logs.reporting.trigger: invalid decision_log config: invalid trigger mode \"{other}\" (want \"periodic\")"
        ),
    }
    Ok(())
}

fn service_defaults(name: &str, service: &mut ServiceConfig) -> Result<()> {
    let url = service.url.trim_end_matches('/');
    let valid = url.parse::<Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    });
    if !valid {
        bail!(
            "config: services.{name}.url: invalid URL \"{}\": expected http://HOST[:PORT][/PATH] or https://...",
            service.url
        );
    }
    service.url = url.to_owned();
    if let Some(bearer) = service.bearer() {
        if bearer.token.is_some() && bearer.token_path.is_some() {
            bail!(
                "config: services.{name}.credentials.bearer: specify either \"token\" or \"token_path\", not both"
            );
        }
    }
    Ok(())
}

fn key_defaults(id: &str, key: &mut KeyConfig) -> Result<()> {
    if key.key.is_none() && key.private_key.is_none() {
        bail!("config: keys.{id}: no key provided for key ID {id} (set `key` or `private_key`)");
    }
    let algorithm = key
        .algorithm
        .get_or_insert_with(|| DEFAULT_KEY_ALGORITHM.to_owned());
    if !ALGORITHMS.contains(&algorithm.as_str()) {
        bail!(
            "config: keys.{id}.algorithm: unsupported algorithm '{algorithm}' (supported: {})",
            ALGORITHMS.join(", ")
        );
    }
    Ok(())
}

fn bundle_defaults(
    name: &str,
    bundle: &mut BundleConfig,
    services: &[&str],
    keys: &BTreeMap<String, KeyConfig>,
) -> Result<()> {
    let invalid = format!("invalid configuration for bundle \"{name}\"");
    if bundle.resource.as_deref().unwrap_or("").is_empty() {
        bundle.resource = Some(format!("bundles/{name}"));
    }
    // A `file://` bundle is read from disk: OPA neither needs nor checks a
    // service for it.
    let from_file = bundle.file_path().is_some();
    match (&bundle.service, services) {
        _ if from_file => {}
        (Some(service), _) if services.contains(&service.as_str()) => {}
        (Some(service), _) => bail!(
            "config: bundles.{name}.service: {invalid}: unknown service \"{service}\" (configured services: {})",
            list(services)
        ),
        (None, [only]) => bundle.service = Some((*only).to_owned()),
        (None, []) => bail!(
            "config: bundles.{name}.service: {invalid}: no service configured (set services.NAME.url)"
        ),
        (None, _) => bail!(
            "config: bundles.{name}.service: {invalid}: several services are configured, name one of {}",
            list(services)
        ),
    }

    match &mut bundle.signing {
        Some(Signing {
            keyid: Some(keyid), ..
        }) if !keys.contains_key(keyid.as_str()) => {
            bail!("config: bundles.{name}.signing.keyid: {invalid}: key id {keyid} not found")
        }
        Some(_) => {}
        None if !keys.is_empty() => bundle.signing = Some(Signing::default()),
        None => {}
    }

    match bundle.trigger.as_deref() {
        None | Some("periodic") => {}
        Some("manual") => bail!(
            "config: config key \"bundles.{name}.trigger\" set to \"manual\" is an OPA option Regent does not support (use \"periodic\")"
        ),
        Some(other) => bail!(
            "config: bundles.{name}.trigger: {invalid}: invalid trigger mode \"{other}\" (want \"periodic\")"
        ),
    }

    let polling = &mut bundle.polling;
    match (polling.min_delay_seconds, polling.max_delay_seconds) {
        (Some(min), Some(max)) if max < min => bail!(
            "config: bundles.{name}.polling: max_delay_seconds ({max}) must be >= min_delay_seconds ({min})"
        ),
        (Some(_), Some(_)) => {}
        (Some(_), None) => bail!("config: bundles.{name}.polling: missing 'max_delay_seconds'"),
        (None, Some(_)) => bail!("config: bundles.{name}.polling: missing 'min_delay_seconds'"),
        (None, None) => {
            polling.min_delay_seconds = Some(DEFAULT_MIN_DELAY_SECONDS);
            polling.max_delay_seconds = Some(DEFAULT_MAX_DELAY_SECONDS);
        }
    }
    if polling.long_polling_timeout_seconds == Some(0) {
        bail!("config: bundles.{name}.polling.long_polling_timeout_seconds: must be at least 1");
    }
    Ok(())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    quoted.join(", ")
}
