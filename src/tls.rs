//! HTTPS for the listeners, as `opa run` sets it up: the certificate and key
//! (`--tls-cert-file`, `--tls-private-key-file`), client certificates
//! required and verified for `--authentication=tls` (against
//! `--tls-ca-cert-file`, or the system's roots), `--min-tls-version` and
//! `--tls-cipher-suites`. The files are read again every
//! `--tls-cert-refresh-period`, or, without one, whenever they change on
//! disk; new connections get the new configuration, and a reload that fails
//! keeps the last good one (logged, as OPA does).

pub mod subject;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::policy::watch;

/// The lowest TLS version served (`--min-tls-version`). rustls serves TLS
/// 1.2 and 1.3 only, so OPA's `1.0` and `1.1` serve 1.2 and up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    /// Reads OPA's values (`1.0`, `1.1`, `1.2`, `1.3`); the `bool` says
    /// whether the version asked is older than any Regent serves.
    pub fn parse(text: &str) -> Result<(MinVersion, bool)> {
        match text {
            "1.0" | "1.1" => Ok((MinVersion::Tls12, true)),
            "1.2" => Ok((MinVersion::Tls12, false)),
            "1.3" => Ok((MinVersion::Tls13, false)),
            _ => bail!(
                "invalid argument {text:?} for \"--min-tls-version\" flag: must be one of {{1.0,1.1,1.2,1.3}}"
            ),
        }
    }
}

/// Everything the TLS configuration is built from.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// `--authentication=tls`: a client must present a certificate that
    /// chains to the CA file (or, without one, to the system's roots).
    pub client_auth: bool,
    pub min_version: MinVersion,
    /// `--min-tls-version` asked for 1.0 or 1.1, which rustls does not serve.
    pub older_version_asked: bool,
    /// `--tls-cipher-suites`: the TLS 1.2 suites offered (TLS 1.3 suites are
    /// not configurable, as in Go); `None`: rustls's defaults.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
    /// `--tls-cert-refresh-period`: read the files this often; `None`:
    /// whenever they change.
    pub refresh: Option<Duration>,
}

/// The TLS 1.2 suites Regent can serve, by their IANA names (Go's).
pub fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>> {
    let available: Vec<SupportedCipherSuite> = rustls::crypto::ring::default_provider()
        .cipher_suites
        .into_iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        .collect();
    let name_of = |s: &SupportedCipherSuite| format!("{:?}", s.suite());
    names
        .iter()
        .map(|name| {
            let name = name.trim();
            if let Some(suite) = available.iter().find(|s| name_of(s) == name) {
                return Ok(*suite);
            }
            if matches!(
                name,
                "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256"
            ) {
                bail!("invalid --tls-cipher-suites: {name} is a TLS 1.3 suite; only TLS 1.0-1.2 suites can be configured");
            }
            let known: Vec<String> = available.iter().map(name_of).collect();
            bail!(
                "invalid --tls-cipher-suites: {name} is not a suite Regent serves (it serves {})",
                known.join(", ")
            )
        })
        .collect()
}

/// The server's TLS configuration, swapped whole on reload.
pub struct ServerTls {
    settings: TlsSettings,
    config: ArcSwap<ServerConfig>,
    /// SHA-256 of the certificate, key and CA files last loaded.
    loaded: Mutex<[Option<[u8; 32]>; 3]>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads the CA file as start-up does, for its errors.
    pub fn check_ca_file(path: &Path) -> Result<()> {
        ca_pool(path).map(drop)
    }
}

impl ServerTls {
    /// Reads the files; any problem is an error (at start-up, fatal).
    pub fn load(settings: TlsSettings) -> Result<Arc<ServerTls>> {
        let hashes = hashes(&settings)?;
        let config = build(&settings)?;
        Ok(Arc::new(ServerTls {
            settings,
            config: ArcSwap::from_pointee(config),
            loaded: Mutex::new(hashes),
        }))
    }

    /// The acceptor for a new connection, with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }

    /// Reads the files again when any of them changed; returns whether the
    /// configuration was replaced. On error the current one stays.
    pub fn reload(&self) -> Result<bool> {
        let hashes = hashes(&self.settings)?;
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| anyhow!("TLS reload state poisoned"))?;
        if *loaded == hashes {
            return Ok(false);
        }
        if (loaded[0] == hashes[0]) != (loaded[1] == hashes[1]) {
            let (changed, unchanged) = if loaded[0] == hashes[0] {
                ("key", "certificate")
            } else {
                ("certificate", "key")
            };
            tracing::warn!(
                "Server {changed} file changed but server {unchanged} file did not change."
            );
        }
        let config = build(&self.settings)?;
        self.config.store(Arc::new(config));
        *loaded = hashes;
        Ok(true)
    }

    /// Starts reloading in the background (needs a tokio runtime): every
    /// refresh period, or on changes to the files' directories.
    pub fn spawn_reloader(self: &Arc<Self>) -> Result<()> {
        let tls = Arc::clone(self);
        if let Some(period) = self.settings.refresh {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    tls.reload_logged(1).await;
                }
            });
            return Ok(());
        }
        let (mut watcher, mut rx) =
            watch::changes().context("failed to create tls path watcher")?;
        // The directories, not the files: a Kubernetes secret is updated by
        // swapping a symlink, which a watch on the old file never sees.
        let mut dirs: Vec<PathBuf> = self.files().map(watch::parent_dir).collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive)
                .with_context(|| format!("failed to create tls path watcher: {}", dir.display()))?;
        }
        tokio::spawn(async move {
            let _watcher = watcher;
            while watch::next_burst(&mut rx).await {
                tls.reload_logged(5).await;
            }
        });
        Ok(())
    }

    /// Reloads, trying up to `attempts` times 100 ms apart (a file may be
    /// half written), and logs the outcome as OPA does.
    async fn reload_logged(self: &Arc<Self>, attempts: u32) {
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let tls = Arc::clone(self);
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(true)) => {
                    tracing::info!("TLS config reloaded");
                    return;
                }
                Ok(Ok(false)) => return,
                Ok(Err(err)) => last = Some(format!("{err:#}")),
                Err(err) => last = Some(err.to_string()),
            }
        }
        if let Some(err) = last {
            tracing::error!(error = %err, "Failed to reload TLS config");
        }
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(self.settings.cert_file.as_path()),
            Some(self.settings.key_file.as_path()),
            self.settings.ca_file.as_deref(),
        ]
        .into_iter()
        .flatten()
    }
}

fn hashes(settings: &TlsSettings) -> Result<[Option<[u8; 32]>; 3]> {
    let hash = |path: &Path, what: &str| -> Result<[u8; 32]> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to hash {what} file {}", path.display()))?;
        Ok(Sha256::digest(bytes).into())
    };
    Ok([
        Some(hash(&settings.cert_file, "server certificate")?),
        Some(hash(&settings.key_file, "server key")?),
        match &settings.ca_file {
            Some(path) => Some(hash(path, "CA cert pool")?),
            None => None,
        },
    ])
}

/// Builds the rustls configuration from the files.
fn build(settings: &TlsSettings) -> Result<ServerConfig> {
    let cert_file = &settings.cert_file;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow!("open {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        bail!(
            "tls: failed to find any PEM data in certificate input ({})",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| anyhow!("open {}: {e}", settings.key_file.display()))?;
    let roots = match &settings.ca_file {
        Some(path) => Some(ca_pool(path)?),
        None => None,
    };

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = &settings.cipher_suites {
        provider
            .cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || suites.contains(s));
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .context("TLS versions")?;
    let builder = if settings.client_auth {
        let roots = match roots {
            Some(roots) => roots,
            None => system_roots(),
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("client certificate verification")?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("tls: the certificate and private key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The CA file's certificates, with OPA's messages.
fn ca_pool(path: &Path) -> Result<RootCertStore> {
    let text = std::fs::read(path).map_err(|e| anyhow!("read CA cert file: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!("failed to parse CA cert {:?}", path.display().to_string());
    }
    Ok(roots)
}

/// The system's roots, which Go verifies client certificates against when
/// no CA file is given.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}
