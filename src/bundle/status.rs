//! What operators see of each configured bundle: OPA's bundle status fields
//! (`name`, `active_revision`, `last_request`, `last_successful_request`,
//! `last_successful_download`, `last_successful_activation`, `code`,
//! `message`, `http_code`, `errors`), kept per bundle name. The downloaders
//! and the policy store write it; `GET /health?bundles` and `GET /v1/status`
//! read it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::policy::diagnostic::CodedDiagnostic;

/// One bundle's status. Times are `None` until the event first happens.
#[derive(Clone, Debug, Default)]
pub struct BundleStatus {
    pub active_revision: Option<String>,
    pub last_request: Option<SystemTime>,
    pub last_successful_request: Option<SystemTime>,
    pub last_successful_download: Option<SystemTime>,
    pub last_successful_activation: Option<SystemTime>,
    /// The last error (cleared by the next success).
    pub error: Option<StatusError>,
    /// The ETag of the active download (or persisted copy), for `If-None-Match`.
    pub etag: Option<String>,
    /// SHA-256 of the active download: the same bytes again (a service
    /// without ETags) are not re-activated, so the decision cache survives.
    pub digest: Option<[u8; 32]>,
    /// `snapshot` or `delta`: the type of the last bundle activated or tried.
    pub bundle_type: Option<&'static str>,
}

#[derive(Clone, Debug)]
pub struct StatusError {
    pub message: String,
    pub http_code: Option<u16>,
    /// Compile errors, each with OPA's code (`rego_parse_error`,
    /// `rego_compile_error`) and its location.
    pub errors: Vec<CodedDiagnostic>,
}

/// Shared by the downloaders, the store and the API; cheap to clone.
#[derive(Clone, Default)]
pub struct BundleStatuses {
    inner: Arc<Mutex<BTreeMap<String, BundleStatus>>>,
}

impl BundleStatuses {
    /// Declares a bundle that must activate before `/health?bundles` is 200.
    pub fn register(&self, name: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.entry(name.to_string()).or_default();
        }
    }

    /// Changes one bundle's status.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut BundleStatus)) {
        if let Ok(mut map) = self.inner.lock() {
            change(map.entry(name.to_string()).or_default());
        }
    }

    /// Records an error (download, verification or activation).
    pub fn failed(&self, name: &str, message: String, http_code: Option<u16>) {
        self.update(name, |s| {
            s.error = Some(StatusError {
                message,
                http_code,
                errors: Vec::new(),
            });
        });
    }

    pub fn get(&self, name: &str) -> Option<BundleStatus> {
        self.inner.lock().ok().and_then(|m| m.get(name).cloned())
    }

    /// Whether any bundle is configured.
    pub fn any(&self) -> bool {
        self.inner.lock().is_ok_and(|m| !m.is_empty())
    }

    /// Whether every registered bundle has been activated at least once (OPA's
    /// bundle plugin turns ready then and stays ready).
    pub fn all_activated(&self) -> bool {
        self.inner
            .lock()
            .is_ok_and(|m| m.values().all(|s| s.last_successful_activation.is_some()))
    }

    /// The statuses as OPA's status API shows them, by bundle name.
    pub fn to_json(&self) -> BTreeMap<String, StatusBody> {
        let Ok(map) = self.inner.lock() else {
            return BTreeMap::new();
        };
        map.iter()
            .map(|(name, s)| {
                (
                    name.clone(),
                    StatusBody {
                        name: name.clone(),
                        active_revision: s.active_revision.clone().filter(|r| !r.is_empty()),
                        bundle_type: s.bundle_type,
                        last_successful_activation: rfc3339(s.last_successful_activation),
                        last_successful_download: rfc3339(s.last_successful_download),
                        last_request: rfc3339(s.last_request),
                        last_successful_request: rfc3339(s.last_successful_request),
                        error: PluginError {
                            code: s.error.as_ref().map(|_| "bundle_error"),
                            message: s.error.as_ref().map(|e| e.message.clone()),
                            http_code: s.error.as_ref().and_then(|e| e.http_code),
                        },
                        errors: s
                            .error
                            .as_ref()
                            .map(|e| e.errors.clone())
                            .unwrap_or_default(),
                    },
                )
            })
            .collect()
    }
}

/// One bundle in `GET /v1/status`, with OPA's field names.
#[derive(Clone, Debug, Serialize)]
pub struct StatusBody {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub bundle_type: Option<&'static str>,
    pub last_successful_activation: String,
    pub last_successful_download: String,
    pub last_request: String,
    pub last_successful_request: String,
    #[serde(flatten)]
    pub error: PluginError,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CodedDiagnostic>,
}

/// A plugin's last error as OPA's status shows it (`code`, `message`,
/// `http_code`), every field absent when there is none: bundles here,
/// decision log uploads in `decision_log/upload.rs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PluginError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_code: Option<u16>,
}

/// RFC 3339 in UTC; Go's zero time when it never happened, as OPA prints it.
fn rfc3339(time: Option<SystemTime>) -> String {
    match time {
        Some(time) => chrono::DateTime::<chrono::Utc>::from(time)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}
