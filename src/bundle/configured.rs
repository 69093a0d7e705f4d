//! From configuration to bundle sources: the downloaders' settings resolved
//! from OPA's `services`, `bundles` and `keys` sections, and the signature
//! check for `-b` bundles from `--verification-key` and friends.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use super::download::{join_url, Bearer, BundleSource};
use super::local::FileSource;
use super::persist;
use super::signing::{self, KeySpec, Verification};
use crate::opa_config::{BundleConfig, OpaConfig};

/// One [`BundleSource`] per configured bundle downloaded from a service.
pub fn bundle_sources(config: &OpaConfig) -> Result<Vec<BundleSource>> {
    let keys = key_specs(config)?;
    let mut out = Vec::new();
    for (name, bundle) in &config.bundles {
        if bundle.file_path().is_some() {
            continue;
        }
        let service_name = bundle
            .service
            .as_deref()
            .ok_or_else(|| anyhow!("bundles.{name}.service: no service configured"))?;
        let service = service_endpoint(config, service_name)
            .map_err(|e| anyhow!("bundles.{name}.service: {e:#}"))?;
        let resource = bundle
            .resource
            .clone()
            .unwrap_or_else(|| format!("bundles/{name}"));
        let verification = verification(bundle, &keys);
        out.push(BundleSource {
            name: name.clone(),
            url: join_url(&service.url, &resource),
            service,
            min_delay: bundle.min_delay(),
            max_delay: bundle.max_delay(),
            long_polling_timeout: bundle.long_polling_timeout(),
            size_limit: bundle.size_limit(),
            persist_dir: bundle
                .persist
                .then(|| persist::bundle_dir(&config.persistence_dir(), name)),
            verification,
        });
    }
    Ok(out)
}

/// One [`FileSource`] per configured bundle with a `file://` resource.
pub fn file_sources(config: &OpaConfig) -> Result<Vec<FileSource>> {
    let keys = key_specs(config)?;
    Ok(config
        .bundles
        .iter()
        .filter_map(|(name, bundle)| {
            Some(FileSource {
                name: name.clone(),
                path: bundle.file_path()?,
                size_limit: bundle.size_limit(),
                verification: verification(bundle, &keys),
            })
        })
        .collect())
}

/// How a configured bundle's signatures are checked (`signing`).
fn verification(bundle: &BundleConfig, keys: &BTreeMap<String, KeySpec>) -> Option<Verification> {
    bundle.signing.as_ref().map(|s| Verification {
        keys: keys.clone(),
        keyid: s.keyid.clone().unwrap_or_default(),
        scope: s.scope.clone(),
        exclude_files: s.exclude_files.clone(),
    })
}

/// A configured service, resolved for requests (bundle downloads, decision
/// log uploads).
#[derive(Clone, Debug)]
pub struct ServiceEndpoint {
    pub name: String,
    /// `http://` or `https://`, without a trailing `/`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub bearer: Option<Bearer>,
    /// `None`: no limit (OPA's `response_header_timeout_seconds: 0`).
    pub response_header_timeout: Option<std::time::Duration>,
    /// PEM CA certificates to trust (`tls.ca_cert`); `None`: the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Trust the system's roots as well as `ca_cert`.
    pub system_ca_required: bool,
}

/// The service named `name`, or an error naming what is wrong with it (an
/// unknown name, an unreadable CA, `allow_insecure_tls`).
pub fn service_endpoint(config: &OpaConfig, name: &str) -> Result<ServiceEndpoint> {
    let service = config
        .services
        .get(name)
        .ok_or_else(|| anyhow!("unknown service {name:?}"))?;
    if service.allow_insecure_tls == Some(true) {
        bail!("services.{name}.allow_insecure_tls: not supported (give the CA with `tls.ca_cert`)");
    }
    let ca_cert = service.tls.as_ref().and_then(|t| t.ca_cert.clone());
    let system_ca_required = service
        .tls
        .as_ref()
        .and_then(|t| t.system_ca_required)
        .unwrap_or(false);
    if let Some(path) = &ca_cert {
        // Fail at start-up, not in the downloader.
        super::fetch::client::<http_body_util::Empty<bytes::Bytes>>(Some(path), false)
            .map_err(|e| anyhow!("services.{name}.tls.ca_cert: {e:#}"))?;
    }
    let bearer = service.bearer().and_then(|b| {
        let scheme = b.auth_scheme().to_string();
        match (&b.token, &b.token_path) {
            (Some(token), _) => Some(Bearer::Token {
                scheme,
                token: token.clone(),
            }),
            (None, Some(path)) => Some(Bearer::File {
                scheme,
                path: path.clone(),
            }),
            (None, None) => None,
        }
    });
    Ok(ServiceEndpoint {
        name: name.to_string(),
        url: service.url.clone(),
        headers: service
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        bearer,
        response_header_timeout: service.response_header_timeout(),
        ca_cert,
        system_ca_required,
    })
}

fn key_specs(config: &OpaConfig) -> Result<BTreeMap<String, KeySpec>> {
    config
        .keys
        .iter()
        .map(|(id, key)| {
            let text = key
                .key
                .clone()
                .or_else(|| key.private_key.clone())
                .ok_or_else(|| {
                    anyhow!("invalid keys configuration: no keys provided for key ID {id}")
                })?;
            let algorithm = signing::parse_algorithm(key.algorithm.as_deref().unwrap_or("RS256"))?;
            Ok((
                id.clone(),
                KeySpec {
                    key: text,
                    algorithm,
                    scope: key.scope.clone(),
                },
            ))
        })
        .collect()
}

/// The check for `-b` bundles: `--verification-key` (a file or the key
/// itself) under `--verification-key-id` with `--signing-alg`.
pub fn local_verification(
    key: Option<&str>,
    keyid: &str,
    algorithm: &str,
    scope: Option<&str>,
    exclude_files: &[String],
) -> Result<Option<Verification>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let mut keys = BTreeMap::new();
    keys.insert(
        keyid.to_string(),
        KeySpec {
            key: signing::key_text(key)?,
            algorithm: signing::parse_algorithm(algorithm)?,
            scope: None,
        },
    );
    Ok(Some(Verification {
        keys,
        keyid: keyid.to_string(),
        scope: scope.map(str::to_string),
        exclude_files: exclude_files.to_vec(),
    }))
}

/// The persistence directory of bundle `name` (for tests and tools).
pub fn persisted_path(config: &OpaConfig, name: &str) -> PathBuf {
    persist::bundle_dir(&config.persistence_dir(), name)
}
