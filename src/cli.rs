//! Command-line definitions, shaped like OPA's so that operators can swap the
//! binary: `regent run --server --addr :8181 [paths...]`. Values here are raw
//! and unchecked; `config.rs` turns them into a ready configuration.

use clap::{Args, Parser, Subcommand};

use crate::logging::{LogFormat, LogLevel};

#[derive(Debug, Parser)]
#[command(
    name = "regent",
    version,
    about = "An OPA-compatible authorization decision daemon"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the decision server (`opa run --server`).
    Run(RunArgs),
    /// Write the default policies' tests from the decision tables.
    GenTests(GenTestsArgs),
}

#[derive(Debug, Args)]
pub struct GenTestsArgs {
    /// Directory of decision tables (`<package>.csv`).
    #[arg(long, default_value = "policies/tables")]
    pub tables: std::path::PathBuf,

    /// Directory the `<package>_test.rego` files are written to.
    #[arg(long, default_value = "policies/tests")]
    pub out: std::path::PathBuf,

    /// Only compare: exit 1 when the files on disk differ from a fresh generation.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Start the HTTP server (required: Regent has no interactive shell).
    #[arg(short = 's', long)]
    pub server: bool,

    /// Listen address, `host:port` (`:8181` listens on all interfaces). Repeatable.
    #[arg(
        short = 'a',
        long = "addr",
        value_name = "ADDR",
        default_value = "localhost:8181",
        env = "REGENT_ADDR",
        value_delimiter = ','
    )]
    pub addrs: Vec<String>,

    /// Log level.
    #[arg(
        short = 'l',
        long,
        value_enum,
        default_value = "info",
        env = "REGENT_LOG_LEVEL"
    )]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(long, value_enum, default_value = "json", env = "REGENT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        env = "REGENT_SHUTDOWN_GRACE_PERIOD"
    )]
    pub shutdown_grace_period: u64,

    /// Seconds to wait after SIGTERM/SIGINT before shutdown starts (lets load balancers notice).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        env = "REGENT_SHUTDOWN_WAIT_PERIOD"
    )]
    pub shutdown_wait_period: u64,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20, env = "REGENT_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: usize,

    /// Largest request body accepted after gzip decompression, in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 512 << 20, env = "REGENT_MAX_DECOMPRESSED_BODY_BYTES")]
    pub max_decompressed_body_bytes: usize,

    /// Deepest nesting of JSON arrays/objects accepted in a request (1-128; deeper: 400).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 64,
        env = "REGENT_MAX_JSON_DEPTH"
    )]
    pub max_json_depth: usize,

    /// Policy (.rego) and data (.json, .yaml) files or directories; `a.b:path`
    /// loads under `data.a.b`. None: the built-in default policies.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}
