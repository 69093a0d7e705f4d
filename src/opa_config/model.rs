//! The typed OPA configuration: serde structs mirroring the OPA keys Regent
//! implements (unknown keys are rejected), with accessors that apply OPA's
//! defaults. [`super::load`] also writes the defaults OPA injects (a bundle's
//! service and resource, polling delays, a key's algorithm) into the fields.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// OPA's default polling delays.
pub const DEFAULT_MIN_DELAY_SECONDS: u64 = 60;
pub const DEFAULT_MAX_DELAY_SECONDS: u64 = 120;
/// OPA's default bundle size limit (1 GiB).
pub const DEFAULT_SIZE_LIMIT_BYTES: u64 = 1 << 30;
/// OPA's default wait for a service's response headers.
pub const DEFAULT_RESPONSE_HEADER_TIMEOUT_SECONDS: u64 = 10;
/// OPA's default signing algorithm for a key.
pub const DEFAULT_KEY_ALGORITHM: &str = "RS256";

/// The whole configuration (`--config-file` plus `--set`/`--set-file`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpaConfig {
    /// Accepted as a map or (OPA's Helm-friendly form) a list of services
    /// each with a `name`; always a map here.
    pub services: BTreeMap<String, ServiceConfig>,
    pub bundles: BTreeMap<String, BundleConfig>,
    pub keys: BTreeMap<String, KeyConfig>,
    pub persistence_directory: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    /// `/system/main` or `system/main`; see [`OpaConfig::default_decision_path`].
    pub default_decision: Option<String>,
    /// The decision `--authorization=basic` asks; see
    /// [`OpaConfig::default_authorization_decision_path`].
    pub default_authorization_decision: Option<String>,
    /// `None`: no `decision_logs` section, no decision logging (as OPA,
    /// which starts the plugin only when the section is present).
    pub decision_logs: Option<DecisionLogsConfig>,
    /// Regent's own section (OPA has none).
    pub decision_cache: DecisionCacheConfig,
    /// The configuration as `GET /v1/config` shows it, secrets removed
    /// (`raw::active`); not a key of its own.
    #[serde(skip)]
    pub active: serde_json::Map<String, serde_json::Value>,
}

impl OpaConfig {
    /// OPA's `ActiveConfig`: [`Self::active`] with the defaults OPA injects
    /// (`default_decision`, `default_authorization_decision`) and `labels`,
    /// which are this instance's (with its `id` and `version`).
    pub fn active_config(&self, labels: &BTreeMap<String, String>) -> serde_json::Value {
        let mut active = self.active.clone();
        for (key, default) in [
            ("default_decision", "/system/main"),
            ("default_authorization_decision", "/system/authz/allow"),
        ] {
            active
                .entry(key)
                .or_insert_with(|| serde_json::Value::from(default));
        }
        let labels = labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        active.insert("labels".into(), serde_json::Value::Object(labels));
        serde_json::Value::Object(active)
    }
}

impl OpaConfig {
    /// `persistence_directory`, by default `.opa` in the working directory.
    pub fn persistence_dir(&self) -> PathBuf {
        match &self.persistence_directory {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().unwrap_or_default().join(".opa"),
        }
    }

    /// The decision `POST /` answers, without a leading `/`: `system/main`
    /// by default.
    pub fn default_decision_path(&self) -> &str {
        let path = self.default_decision.as_deref().unwrap_or("/system/main");
        path.trim_start_matches('/')
    }

    /// The decision that admits requests with `--authorization=basic`,
    /// without a leading `/`: `system/authz/allow` by default.
    pub fn default_authorization_decision_path(&self) -> &str {
        let path = self
            .default_authorization_decision
            .as_deref()
            .unwrap_or("/system/authz/allow");
        path.trim_start_matches('/')
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// An `http://` or `https://` URL, trailing `/` removed (as OPA does).
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    #[serde(default)]
    pub response_header_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub allow_insecure_tls: Option<bool>,
}

impl ServiceConfig {
    /// How long to wait for response headers: 10s by default, `None` (no
    /// limit) when configured as 0, as in OPA.
    pub fn response_header_timeout(&self) -> Option<Duration> {
        let secs = self
            .response_header_timeout_seconds
            .unwrap_or(DEFAULT_RESPONSE_HEADER_TIMEOUT_SECONDS);
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    pub fn bearer(&self) -> Option<&Bearer> {
        self.credentials.as_ref()?.bearer.as_ref()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    pub bearer: Option<Bearer>,
}

/// `Authorization: <scheme> <token>`, the token given inline or read from
/// `token_path` (at most one of the two).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bearer {
    pub token: Option<String>,
    pub token_path: Option<PathBuf>,
    pub scheme: Option<String>,
}

impl Bearer {
    /// The scheme, `Bearer` by default.
    pub fn auth_scheme(&self) -> &str {
        self.scheme.as_deref().unwrap_or("Bearer")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub ca_cert: Option<PathBuf>,
    pub system_ca_required: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BundleConfig {
    /// Set after loading: the one configured service when omitted.
    pub service: Option<String>,
    /// Set after loading: `bundles/<name>` when omitted.
    pub resource: Option<String>,
    pub polling: Polling,
    pub persist: bool,
    /// Set after loading to the default (any configured key) when omitted
    /// while `keys` is not empty: OPA then verifies every bundle.
    pub signing: Option<Signing>,
    pub size_limit_bytes: Option<u64>,
    /// Only `periodic` (the default) is supported.
    pub trigger: Option<String>,
}

impl BundleConfig {
    pub fn min_delay(&self) -> Duration {
        Duration::from_secs(
            self.polling
                .min_delay_seconds
                .unwrap_or(DEFAULT_MIN_DELAY_SECONDS),
        )
    }

    pub fn max_delay(&self) -> Duration {
        Duration::from_secs(
            self.polling
                .max_delay_seconds
                .unwrap_or(DEFAULT_MAX_DELAY_SECONDS),
        )
    }

    /// `Some` when the service should be asked to long-poll.
    pub fn long_polling_timeout(&self) -> Option<Duration> {
        self.polling
            .long_polling_timeout_seconds
            .map(Duration::from_secs)
    }

    /// The file a `file:` resource names, as Go's `url.Parse` reads its path
    /// (scheme in any case; a host part, a query and a fragment are left
    /// out: `file:///srv/b.tar.gz` and `file:/srv/b.tar.gz` are
    /// `/srv/b.tar.gz`); `None` for a resource of a service.
    pub fn file_path(&self) -> Option<PathBuf> {
        let resource = self.resource.as_deref()?;
        if !resource.get(..5)?.eq_ignore_ascii_case("file:") {
            return None;
        }
        let rest = resource[5..].split(['?', '#']).next().unwrap_or("");
        let path = match rest.strip_prefix("//") {
            Some(authority) => authority.find('/').map_or("", |slash| &authority[slash..]),
            None => rest,
        };
        let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
        Some(PathBuf::from(path.as_ref()))
    }

    /// The size limit, 1 GiB when unset or 0 (as in OPA).
    pub fn size_limit(&self) -> u64 {
        match self.size_limit_bytes {
            Some(limit) if limit > 0 => limit,
            _ => DEFAULT_SIZE_LIMIT_BYTES,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Polling {
    pub min_delay_seconds: Option<u64>,
    pub max_delay_seconds: Option<u64>,
    pub long_polling_timeout_seconds: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signing {
    /// Must name an entry of `keys`.
    pub keyid: Option<String>,
    pub scope: Option<String>,
    pub exclude_files: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    pub key: Option<String>,
    pub private_key: Option<String>,
    /// Set after loading: `RS256` when omitted.
    pub algorithm: Option<String>,
    pub scope: Option<String>,
}

/// OPA's `decision_logs`: the console, and uploads to a service.
/// [`super::load`] resolves `service` (the first service by name when none
/// is named and the console is off), `resource` and the reporting defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionLogsConfig {
    pub console: bool,
    /// After loading: the service uploads go to, if any.
    pub service: Option<String>,
    /// After loading: `/logs`, or `/logs/<partition_name>`.
    pub resource: Option<String>,
    pub partition_name: Option<String>,
    pub reporting: ReportingConfig,
}

/// OPA's `decision_logs.reporting`; after loading every field that has a
/// default holds it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportingConfig {
    pub min_delay_seconds: Option<u64>,
    pub max_delay_seconds: Option<u64>,
    pub upload_size_limit_bytes: Option<i64>,
    /// `size` (the default) or `event`.
    pub buffer_type: Option<String>,
    pub buffer_size_limit_bytes: Option<i64>,
    pub buffer_size_limit_events: Option<i64>,
    /// `periodic` (the only trigger Regent implements).
    pub trigger: Option<String>,
}

/// OPA's defaults for decision log uploads.
pub const DEFAULT_LOG_MIN_DELAY_SECONDS: u64 = 300;
pub const DEFAULT_LOG_MAX_DELAY_SECONDS: u64 = 600;
pub const DEFAULT_UPLOAD_SIZE_LIMIT_BYTES: i64 = 32768;
pub const MIN_UPLOAD_SIZE_LIMIT_BYTES: i64 = 90;
pub const MAX_UPLOAD_SIZE_LIMIT_BYTES: i64 = 4_294_967_296;
pub const DEFAULT_BUFFER_SIZE_LIMIT_EVENTS: i64 = 10000;

/// Regent's decision cache bounds; `None`: not set in this configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionCacheConfig {
    pub enabled: Option<bool>,
    pub max_entries: Option<u64>,
    pub max_size_bytes: Option<u64>,
    pub ttl_seconds: Option<u64>,
}
