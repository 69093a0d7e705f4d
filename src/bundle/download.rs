//! One downloader per configured bundle: poll the service, activate what
//! changed. As OPA's downloader: `If-None-Match` with the last ETag (a 304
//! changes nothing), a uniformly random delay between the polling bounds
//! after a success, exponential backoff (100 ms × 1.6ⁿ, ±20% jitter, capped
//! at the max delay) after an error, long polling when configured
//! (`Prefer: modes=snapshot,delta;wait=N`, kept while the service answers
//! with `application/vnd.openpolicyagent.bundles`), a response-header
//! timeout, and the body bounded by the bundle's size limit. Delta bundles
//! patch the active data (see `bundle/delta.rs`); as OPA, a delta is
//! refused when the bundle is persisted. A download that does not read,
//! verify or build is reported and the active policies stay.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Result};
use rand::Rng;
use sha2::Digest;

use super::configured::ServiceEndpoint;
use super::fetch::{client, download, DownloadError, HttpClient};
use super::signing::Verification;
use super::{archive, persist, Bundle};
use crate::policy::store::PolicyStore;

/// Everything one downloader needs, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct BundleSource {
    pub name: String,
    /// The service URL joined with the resource.
    pub url: String,
    /// Headers, credentials, TLS trust and timeout of the bundle's service.
    pub service: ServiceEndpoint,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub long_polling_timeout: Option<Duration>,
    pub size_limit: u64,
    /// Where to persist the bundle (`persist: true`).
    pub persist_dir: Option<PathBuf>,
    pub verification: Option<Verification>,
}

/// `(scheme, token)`, or the token file read before every request.
#[derive(Clone, Debug)]
pub enum Bearer {
    Token { scheme: String, token: String },
    File { scheme: String, path: PathBuf },
}

/// Joins a service URL and a resource as OPA does (one `/` between).
pub fn join_url(service: &str, resource: &str) -> String {
    format!(
        "{}/{}",
        service.trim_end_matches('/'),
        resource.trim_start_matches('/')
    )
}

/// Loads the persisted copy of `source` (if any) and activates it; its ETag
/// goes into the bundle's status, so the first poll can be answered with 304.
pub fn activate_persisted(store: &PolicyStore, source: &BundleSource) {
    let Some(dir) = source.persist_dir.as_ref() else {
        return;
    };
    let (bytes, etag) = match persist::load(dir) {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(bundle = %source.name, error = %format!("{err:#}"), "cannot read the persisted bundle");
            return;
        }
    };
    match activate(store, source, &bytes, etag.as_deref()) {
        Ok(revision) => {
            tracing::info!(bundle = %source.name, revision = %revision, "activated the persisted bundle");
            store
                .bundle_statuses()
                .update(&source.name, |s| s.etag = etag);
        }
        Err(err) => {
            let message = format!("{err:#}");
            tracing::warn!(bundle = %source.name, error = %message, "persisted bundle not activated");
        }
    }
}

/// Starts polling `source` on the current tokio runtime.
pub fn spawn(store: PolicyStore, source: BundleSource) {
    let statuses = store.bundle_statuses();
    statuses.register(&source.name);
    let etag = statuses.get(&source.name).and_then(|s| s.etag);
    tokio::spawn(poll_forever(store, source, etag));
}

async fn poll_forever(store: PolicyStore, source: BundleSource, mut etag: Option<String>) {
    let client = match client(
        source.service.ca_cert.as_deref(),
        source.service.system_ca_required,
    ) {
        Ok(client) => client,
        Err(err) => {
            let message = format!("{err:#}");
            tracing::error!(bundle = %source.name, error = %message, "bundle downloader cannot start");
            store.bundle_statuses().failed(&source.name, message, None);
            return;
        }
    };
    let mut retries: u32 = 0;
    let mut long_polling = false;
    loop {
        let polled = poll_once(&client, &store, &source, &mut etag, long_polling).await;
        let delay = match polled {
            Ok(Polled { long_poll: true }) => {
                retries = 0;
                long_polling = true;
                Duration::ZERO
            }
            Ok(Polled { long_poll: false }) => {
                retries = 0;
                long_polling = false;
                random_delay(source.min_delay, source.max_delay)
            }
            Err(err) => {
                let message = format!("{err:#}");
                tracing::warn!(bundle = %source.name, error = %message, "bundle download failed");
                let delay = backoff(retries, source.max_delay);
                retries = retries.saturating_add(1);
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

struct Polled {
    /// The service holds requests open: ask again at once.
    long_poll: bool,
}

async fn poll_once(
    client: &HttpClient,
    store: &PolicyStore,
    source: &BundleSource,
    etag: &mut Option<String>,
    long_polling: bool,
) -> Result<Polled> {
    let statuses = store.bundle_statuses().clone();
    statuses.update(&source.name, |s| s.last_request = Some(SystemTime::now()));
    let result = download(client, source, etag.as_deref(), long_polling).await;
    let downloaded = match result {
        Ok(downloaded) => downloaded,
        Err(DownloadError { message, http_code }) => {
            statuses.failed(&source.name, message.clone(), http_code);
            bail!("{message}");
        }
    };
    statuses.update(&source.name, |s| {
        s.last_successful_request = Some(SystemTime::now());
        if downloaded.body.is_none() {
            // 304: the active bundle is current, the last error is over.
            s.error = None;
        }
    });
    let Some(body) = downloaded.body else {
        // 304: a new ETag in it replaces the one sent.
        etag.clone_from(&downloaded.etag);
        return Ok(Polled {
            long_poll: downloaded.long_poll,
        });
    };
    let digest: [u8; 32] = sha2::Sha256::digest(&body).into();
    if statuses.get(&source.name).and_then(|s| s.digest) == Some(digest) {
        *etag = downloaded.etag.clone();
        statuses.update(&source.name, |s| {
            s.last_successful_download = Some(SystemTime::now());
            s.error = None;
        });
        return Ok(Polled {
            long_poll: downloaded.long_poll,
        });
    }
    let (store2, source2, new_etag) = (store.clone(), source.clone(), downloaded.etag.clone());
    let activated = tokio::task::spawn_blocking(move || {
        activate(&store2, &source2, &body, new_etag.as_deref()).map(|revision| (revision, body))
    })
    .await
    .map_err(|e| anyhow!("activation task failed: {e}"))?;
    match activated {
        Ok((revision, body)) => {
            tracing::info!(bundle = %source.name, revision = %revision, "bundle activated");
            *etag = downloaded.etag.clone();
            statuses.update(&source.name, |s| {
                s.etag = downloaded.etag.clone();
                s.digest = Some(digest);
            });
            if let Some(dir) = &source.persist_dir {
                if let Err(err) = persist::save(dir, &body, downloaded.etag.as_deref()) {
                    tracing::warn!(bundle = %source.name, error = %format!("{err:#}"), "cannot persist the bundle");
                }
            }
            Ok(Polled {
                long_poll: downloaded.long_poll,
            })
        }
        Err(err) => Err(err),
    }
}

/// Reads, verifies and activates bundle bytes; returns the revision. A
/// failure is recorded in the bundle's status (by the store when the
/// activation itself fails, with the compile errors listed).
fn activate(
    store: &PolicyStore,
    source: &BundleSource,
    bytes: &[u8],
    etag: Option<&str>,
) -> Result<String> {
    let read = archive::read_tarball(bytes, source.size_limit)
        .and_then(|files| Bundle::from_files(&source.name, files, source.verification.as_ref()))
        .and_then(|bundle| {
            if bundle.patch.is_some() && source.persist_dir.is_some() {
                bail!("'persist' property is true in config. persisting delta bundle to disk is not supported");
            }
            Ok(bundle)
        });
    let bundle = match read {
        Ok(bundle) => {
            // Downloaded means read and verified, as OPA counts it.
            store.bundle_statuses().update(&source.name, |s| {
                s.last_successful_download = Some(SystemTime::now());
            });
            bundle
        }
        Err(err) => {
            store
                .bundle_statuses()
                .failed(&source.name, format!("{err:#}"), None);
            return Err(err);
        }
    };
    let revision = bundle.revision_or(etag.map(unquote));
    store
        .activate_bundle(bundle, revision.clone())
        .map_err(|e| anyhow!("{}", crate::policy::store::describe(&e)))?;
    Ok(revision)
}

/// `"abc"` and `W/"abc"` as `abc`.
fn unquote(etag: &str) -> &str {
    etag.trim_start_matches("W/").trim_matches('"')
}

/// Uniform in `[min, max]`.
pub(crate) fn random_delay(min: Duration, max: Duration) -> Duration {
    if max <= min {
        return min;
    }
    rand::rng().random_range(min..=max)
}

/// OPA's `DefaultBackoff`: 0 on the first retry, then 100 ms × 1.6ⁿ with
/// ±20% jitter, capped at `max`.
pub(crate) fn backoff(retries: u32, max: Duration) -> Duration {
    if retries == 0 {
        return Duration::ZERO;
    }
    let base = 0.1 * 1.6f64.powi(i32::try_from(retries).unwrap_or(i32::MAX));
    let capped = base.min(max.as_secs_f64());
    let jitter = rand::rng().random_range(0.8..=1.2);
    Duration::from_secs_f64((capped * jitter).min(max.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(join_url("http://h:1/", "/api/x"), "http://h:1/api/x");
        assert_eq!(join_url("http://h:1", "bundles/b"), "http://h:1/bundles/b");
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let max = Duration::from_secs(15);
        assert_eq!(backoff(0, max), Duration::ZERO);
        assert!(backoff(1, max) <= Duration::from_millis(200));
        assert!(backoff(5, max) > backoff(1, max));
        assert!(backoff(100, max) <= max);
        let d = random_delay(Duration::from_secs(5), Duration::from_secs(15));
        assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(15));
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("W/\"abc\""), "abc");
    }
}
