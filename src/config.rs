//! The checked run configuration: every flag validated, nothing read from disk
//! yet. Building a [`RunConfig`] is pure, so bad flags fail before any I/O.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::api::Limits;
use crate::cache::CacheConfig;
use crate::cli::RunArgs;
use crate::logging::{LogFormat, LogLevel};

/// The deepest nesting the JSON parser itself supports.
const PARSER_MAX_DEPTH: usize = 128;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub addrs: Vec<String>,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub shutdown_wait: Duration,
    pub limits: Limits,
    pub cache: CacheConfig,
    pub max_batch_inputs: usize,
    /// Reload `paths` when they change.
    pub watch: bool,
    /// Empty: serve the embedded default policies.
    pub paths: Vec<String>,
}

impl RunConfig {
    pub fn from_args(args: RunArgs) -> Result<RunConfig> {
        if !args.server {
            bail!("`regent run` needs `--server`: Regent has no interactive shell");
        }
        if args.addrs.iter().any(|a| a.trim().is_empty()) {
            bail!("`--addr` must not be empty");
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
        Ok(RunConfig {
            addrs: args.addrs,
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
                enabled: !args.disable_decision_cache,
                max_entries: args.decision_cache_max_entries,
                max_size_bytes: args.decision_cache_max_size_bytes,
                ttl: (args.decision_cache_ttl_seconds > 0)
                    .then(|| Duration::from_secs(args.decision_cache_ttl_seconds)),
            },
            max_batch_inputs: args.max_batch_inputs,
            watch: args.watch,
            paths: args.paths,
        })
    }
}
