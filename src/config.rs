//! The checked run configuration: every flag validated and the OPA
//! configuration (`-c`, `--set`, `--set-file`) read and typed. Policies and
//! bundles are not read yet, so bad flags and bad configuration fail before
//! any other I/O.

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::api::authz::{Auth, Authentication, Authorization};
use crate::api::Limits;
use crate::bundle::configured::local_verification;
use crate::bundle::signing::Verification;
use crate::cache::CacheConfig;
use crate::cli::{Cli, Command, RunArgs};
use crate::logging::{Layout, LogFormat, LogLevel};
use crate::opa_config::{self, OpaConfig};
use crate::policy::DataPath;
use crate::tls::{MinVersion, TlsSettings};

/// The deepest nesting the JSON parser itself supports.
const PARSER_MAX_DEPTH: usize = 128;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub addrs: Vec<String>,
    /// `--diagnostic-addr`: listeners for the diagnostic routes only.
    pub diagnostic_addrs: Vec<String>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub shutdown_wait: Duration,
    pub limits: Limits,
    pub cache: CacheConfig,
    pub max_batch_inputs: usize,
    /// `--eval-timeout`: the longest one evaluation may run (`None`: no limit).
    pub eval_timeout: Option<Duration>,
    /// Reload `paths` when they change.
    pub watch: bool,
    /// `--ignore`: names left out when loading directories of `paths`.
    pub ignore: crate::walk::Ignore,
    /// Empty (and no bundles configured): serve the embedded default policies.
    pub paths: Vec<String>,
    /// `-b`: the paths are bundles.
    pub bundle: bool,
    /// How `-b` bundles' signatures are checked (`--verification-key`).
    pub local_verification: Option<Verification>,
    /// `--skip-verify`: `-b` bundles' signatures are ignored.
    pub skip_verify: bool,
    /// The OPA configuration: services, bundles, keys, labels...
    pub opa: OpaConfig,
    /// The document `POST /` answers (`default_decision`).
    pub default_decision: String,
    /// `--authentication`, and with `--authorization=basic` the decision
    /// (`default_authorization_decision`) every request needs.
    pub auth: Auth,
    /// With `--tls-cert-file`: HTTPS for the listeners.
    pub tls: Option<TlsSettings>,
    /// `--unix-socket-perm`: the mode of `unix://` socket files.
    pub unix_socket_perm: u32,
    /// `--ready-timeout`: wait this long for the bundles before listening.
    pub ready_timeout: Option<Duration>,
    /// `--log-timestamp-format`, parsed.
    pub log_timestamps: Option<Layout>,
    /// `--pprof` was asked for (a warning: there is none).
    pub pprof: bool,
    /// `--h2c`: plain listeners also serve HTTP/2 with prior knowledge.
    pub h2c: bool,
}

impl RunConfig {
    /// Logs what is odd but allowed in the configuration (once logging is
    /// set up).
    pub fn log_warnings(&self) {
        if self.auth.authentication == Authentication::Token && self.auth.decision.is_none() {
            // OPA's words, at OPA's level.
            tracing::error!("Token authentication enabled without authorization. Authentication will be ineffective.");
        }
        if self.auth.authentication == Authentication::Tls && self.tls.is_none() {
            tracing::warn!(
                "--authentication=tls without --tls-cert-file: no listener serves TLS, so no caller has an identity"
            );
        }
        if self.pprof {
            tracing::warn!(
                "--pprof: Regent has no Go profiler, so no /debug/pprof routes are served"
            );
        }
        if self.tls.as_ref().is_some_and(|t| t.older_version_asked) {
            tracing::warn!(
                "--min-tls-version: Regent serves TLS 1.2 and 1.3 only, so clients limited to older versions cannot connect"
            );
        }
    }

    /// Whether the embedded default policies are served: only when no path
    /// and no bundle is given (a bundle brings its own policies).
    pub fn serves_default_policies(&self) -> bool {
        self.paths.is_empty() && self.opa.bundles.is_empty()
    }
}

impl RunConfig {
    /// The configuration `regent run --server ARGS...` runs with: the
    /// command line read as `main` reads it (environment included), for
    /// tests and benchmarks that start a server in-process.
    pub fn from_command_line(args: &[&str]) -> Result<RunConfig> {
        let mut argv = vec!["regent", "run", "--server"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => RunConfig::from_args(*args),
            _ => bail!("not a run command"),
        }
    }

    pub fn from_args(args: RunArgs) -> Result<RunConfig> {
        if !args.server {
            bail!("`regent run` needs `--server`: Regent has no interactive shell");
        }
        if args.addrs.iter().any(|a| a.trim().is_empty()) {
            bail!("`--addr` must not be empty");
        }
        if args.diagnostic_addrs.iter().any(|a| a.trim().is_empty()) {
            bail!("`--diagnostic-addr` must not be empty");
        }
        if !(1..=PARSER_MAX_DEPTH).contains(&args.max_json_depth) {
            bail!(
                "`--max-json-depth` must be between 1 and {PARSER_MAX_DEPTH}, got `{}`",
                args.max_json_depth
            );
        }
        if args.max_request_body_bytes == 0 || args.max_decompressed_body_bytes == 0 {
            bail!("body size limits must be positive");
        }
        if args.watch && args.paths.is_empty() {
            bail!(
                "`--watch` needs at least one path (the embedded default policies cannot change)"
            );
        }
        if args.max_batch_inputs == 0 {
            bail!("`--max-batch-inputs` must be positive");
        }
        if args.v0_compatible {
            bail!("--v0-compatible: Regent reads Rego v1 only (OPA 1.x's default); rewrite the policies for v1 (`opa fmt --v1-compatible` does it)");
        }
        if args.bundle && args.paths.is_empty() {
            bail!("`--bundle` needs at least one bundle path");
        }
        if args.verification_key.is_some() && !args.bundle {
            // OPA's words; without `-b` the paths are plain files, which
            // nothing would verify.
            bail!("enable bundle mode (ie. --bundle) to verify bundle files or directories");
        }
        let opa = opa_config::load(args.config_file.as_deref(), &args.set, &args.set_file)?;
        let local_verification = if args.skip_verify {
            None
        } else {
            local_verification(
                args.verification_key.as_deref(),
                &args.verification_key_id,
                &args.signing_alg,
                args.scope.as_deref(),
                &args.exclude_files_verify,
            )?
        };
        let file_cache = &opa.decision_cache;
        let max_entries = args
            .decision_cache_max_entries
            .or(file_cache.max_entries)
            .unwrap_or(100_000);
        let max_size_bytes = args
            .decision_cache_max_size_bytes
            .or(file_cache.max_size_bytes)
            .unwrap_or(64 << 20);
        let ttl_seconds = args
            .decision_cache_ttl_seconds
            .or(file_cache.ttl_seconds)
            .unwrap_or(0);
        let cache_enabled = !args.disable_decision_cache && file_cache.enabled.unwrap_or(true);
        let default_decision = opa.default_decision_path().to_string();
        let auth = Auth {
            authentication: args.authentication,
            decision: (args.authorization == Authorization::Basic)
                .then(|| DataPath::parse(opa.default_authorization_decision_path())),
        };
        let tls = tls_settings(&args)?;
        let unix_socket_perm = crate::server::unix_socket_perm(&args.unix_socket_perm)?;
        Ok(RunConfig {
            addrs: args.addrs,
            diagnostic_addrs: args.diagnostic_addrs,
            ignore: crate::walk::Ignore::new(&args.ignore),
            log_level: args.log_level,
            log_format: args.log_format,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_period),
            shutdown_wait: Duration::from_secs(args.shutdown_wait_period),
            limits: Limits {
                max_body_bytes: args.max_request_body_bytes,
                max_decompressed_bytes: args.max_decompressed_body_bytes,
                max_json_depth: args.max_json_depth,
            },
            cache: CacheConfig {
                enabled: cache_enabled,
                max_entries,
                max_size_bytes,
                ttl: (ttl_seconds > 0).then(|| Duration::from_secs(ttl_seconds)),
            },
            max_batch_inputs: args.max_batch_inputs,
            eval_timeout: Some(args.eval_timeout).filter(|t| !t.is_zero()),
            watch: args.watch,
            paths: args.paths,
            bundle: args.bundle,
            local_verification,
            skip_verify: args.skip_verify,
            opa,
            default_decision,
            auth,
            tls,
            unix_socket_perm,
            ready_timeout: u64::try_from(args.ready_timeout)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            log_timestamps: match args.log_timestamp_format.as_deref() {
                Some(layout) if !layout.is_empty() => Some(Layout::from_go(layout)?),
                _ => None,
            },
            pprof: args.pprof,
            h2c: args.h2c,
        })
    }
}

/// The TLS settings of `args`, when a certificate is given.
fn tls_settings(args: &RunArgs) -> Result<Option<TlsSettings>> {
    let (min_version, too_old) = MinVersion::parse(&args.min_tls_version)?;
    let cipher_suites = if args.tls_cipher_suites.is_empty() {
        None
    } else {
        Some(crate::tls::cipher_suites(&args.tls_cipher_suites)?)
    };
    let (cert_file, key_file) = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => {
            if let Some(ca) = &args.tls_ca_cert_file {
                // Checked as OPA checks it, though without a certificate
                // nothing serves TLS.
                TlsSettings::check_ca_file(ca)?;
            }
            return Ok(None);
        }
        _ => bail!("--tls-cert-file and --tls-private-key-file must be specified together"),
    };
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        ca_file: args.tls_ca_cert_file.clone(),
        client_auth: args.authentication == Authentication::Tls,
        min_version,
        older_version_asked: too_old,
        cipher_suites,
        refresh: Some(args.tls_cert_refresh_period).filter(|p| !p.is_zero()),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::RunConfig;
    use crate::api::authz::Authentication;
    use crate::cli::Cli;
    use crate::policy::DataPath;

    fn run_config(args: &[&str]) -> anyhow::Result<RunConfig> {
        RunConfig::from_command_line(args)
    }

    #[test]
    fn tls_and_auth_flags_are_checked_as_opa_checks_them() {
        let message = |args: &[&str]| run_config(args).unwrap_err().to_string();
        assert_eq!(
            message(&["--tls-cert-file=cert.pem"]),
            "--tls-cert-file and --tls-private-key-file must be specified together"
        );
        assert!(message(&["--min-tls-version=1.4"]).contains("must be one of {1.0,1.1,1.2,1.3}"));
        assert!(message(&["--tls-cipher-suites=TLS_RSA_WITH_RC4_128_SHA"])
            .contains("not a suite Regent serves"));
        assert!(message(&["--tls-cipher-suites=TLS_AES_128_GCM_SHA256"]).contains("TLS 1.3"));
        assert!(message(&["--tls-ca-cert-file=/no/such/ca.pem"]).starts_with("read CA cert file:"));
        run_config(&["--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]).unwrap();
        assert!(Cli::try_parse_from(["regent", "run", "--authentication=magic"]).is_err());

        let c = run_config(&["--authorization=basic", "--authentication=token"]).unwrap();
        assert_eq!(c.auth.decision, Some(DataPath::parse("system/authz/allow")));
        assert_eq!(c.auth.authentication, Authentication::Token);
        let c = run_config(&[
            "--authorization=basic",
            "--set=default_authorization_decision=/acl/allow",
        ])
        .unwrap();
        assert_eq!(c.auth.decision, Some(DataPath::parse("acl/allow")));
        assert_eq!(run_config(&[]).unwrap().auth.decision, None);
    }

    #[test]
    fn decision_cache_keys_apply_and_flags_win() {
        let c = run_config(&[
            "--set=decision_cache.max_entries=5",
            "--set=decision_cache.ttl_seconds=7",
            "--set=decision_cache.max_size_bytes=1000",
        ])
        .unwrap();
        assert_eq!(c.cache.max_entries, 5);
        assert_eq!(c.cache.max_size_bytes, 1000);
        assert_eq!(c.cache.ttl, Some(std::time::Duration::from_secs(7)));
        assert!(c.cache.enabled);
        let c = run_config(&[
            "--set=decision_cache.max_entries=5",
            "--decision-cache-max-entries=9",
        ])
        .unwrap();
        assert_eq!(c.cache.max_entries, 9);
        let c = run_config(&["--set=decision_cache.enabled=false"]).unwrap();
        assert!(!c.cache.enabled);
        let c = run_config(&[]).unwrap();
        assert_eq!(
            (c.cache.max_entries, c.cache.max_size_bytes),
            (100_000, 64 << 20)
        );
    }

    #[test]
    fn a_verification_key_needs_bundle_mode() {
        let err = run_config(&["--verification-key=secret", "policies"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "enable bundle mode (ie. --bundle) to verify bundle files or directories"
        );
    }

    #[test]
    fn default_decision_and_bundles_replace_the_embedded_policies() {
        let c = run_config(&["--set=default_decision=/cvat/main"]).unwrap();
        assert_eq!(c.default_decision, "cvat/main");
        assert!(c.serves_default_policies());
        let c = run_config(&[
            "--set=services.s.url=http://127.0.0.1:1",
            "--set=bundles.b.resource=/x",
        ])
        .unwrap();
        assert!(!c.serves_default_policies());
        assert_eq!(c.default_decision, "system/main");
    }
}
