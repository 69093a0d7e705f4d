//! Configured bundles whose `resource` is a `file://` URL, as OPA's file
//! loader reads them: no service, a `.tar.gz` or a directory read once at
//! start-up, signatures and size limit checked as for a download, never
//! polled. A bundle that does not load is logged and recorded in its
//! status, so `/health?bundles` stays not ready, as in OPA.

use std::path::PathBuf;
use std::time::SystemTime;

use super::signing::Verification;
use super::{archive, Bundle};
use crate::policy::store::PolicyStore;

/// One `file://` bundle, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct FileSource {
    pub name: String,
    /// The URL's path.
    pub path: PathBuf,
    pub size_limit: u64,
    pub verification: Option<Verification>,
}

/// Reads `source` and activates it; a failure stays in its status.
pub fn load(store: &PolicyStore, source: &FileSource) {
    let statuses = store.bundle_statuses();
    statuses.register(&source.name);
    statuses.update(&source.name, |s| s.last_request = Some(SystemTime::now()));
    let read = archive::read_path(&source.path, source.size_limit)
        .and_then(|files| Bundle::from_files(&source.name, files, source.verification.as_ref()));
    let bundle = match read {
        Ok(bundle) => bundle,
        Err(err) => {
            let message = format!("{err:#}");
            tracing::error!(name = %source.name, plugin = "bundle", error = %message, "Bundle load failed");
            statuses.failed(&source.name, message, None);
            return;
        }
    };
    statuses.update(&source.name, |s| {
        let now = Some(SystemTime::now());
        s.last_successful_request = now;
        s.last_successful_download = now;
    });
    let revision = bundle.revision_or(None);
    match store.activate_bundle(bundle, revision.clone()) {
        Ok(()) => {
            tracing::info!(name = %source.name, plugin = "bundle", revision = %revision, "Bundle loaded and activated successfully.");
        }
        Err(err) => {
            let message = crate::policy::store::describe(&err);
            tracing::error!(name = %source.name, plugin = "bundle", error = %message, "Bundle activation failed");
        }
    }
}
