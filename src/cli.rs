//! Command-line definitions, shaped like OPA's so that operators can swap the
//! binary: `regent run --server --addr :8181 [paths...]`. Values here are raw
//! and unchecked; `config.rs` turns them into a ready configuration.

use clap::{Args, Parser, Subcommand};

use crate::api::authz::{Authentication, Authorization};
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
    Run(Box<RunArgs>),
    /// Run Rego tests (`opa test`).
    Test(TestArgs),
    /// Evaluate a query (`opa eval`).
    Eval(EvalArgs),
    /// Parse and compile policies, reporting every error (`opa check`).
    Check(CheckArgs),
    /// Build a bundle tarball from bundle directories (`opa build -b`).
    Build(BuildArgs),
    /// Write the default policies' tests from the decision tables.
    GenTests(GenTestsArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policy, test and data files or directories.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,

    /// Print every test, not only failures.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Run only the tests whose full name (`data.pkg.test_x`) matches this regular expression.
    #[arg(short = 'r', long = "run", value_name = "REGEX")]
    pub run: Option<String>,

    /// Output format: `pretty` (text) or `json`.
    #[arg(short = 'f', long, value_enum, default_value = "pretty")]
    pub format: OutputFormat,

    /// Time limit per test, e.g. `5s`, `500ms`, `1m`.
    #[arg(short = 't', long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,

    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The query, e.g. `data.tasks.allow`.
    pub query: String,

    /// Policy and data files or directories. Repeatable.
    #[arg(short = 'd', long = "data", value_name = "PATH")]
    pub data: Vec<String>,

    /// Input document file (JSON or YAML).
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "stdin_input")]
    pub input: Option<std::path::PathBuf>,

    /// Read the input document from standard input.
    #[arg(short = 'I', long = "stdin-input")]
    pub stdin_input: bool,

    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "json")]
    pub format: OutputFormat,

    /// Exit 1 when the query is undefined.
    #[arg(long)]
    pub fail: bool,

    /// Exit 1 when the query is defined.
    #[arg(long)]
    pub fail_defined: bool,

    /// Make built-in errors fail the query instead of being undefined.
    #[arg(long)]
    pub strict_builtin_errors: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Bundle directories or `.tar.gz` bundles to merge (`-b` as in `opa build -b`).
    #[arg(short = 'b', long = "bundle", value_name = "PATH")]
    pub bundles: Vec<String>,

    /// More inputs, read like `-b` ones.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,

    /// Output file.
    #[arg(short = 'o', long, default_value = "bundle.tar.gz")]
    pub output: std::path::PathBuf,

    /// The manifest's `revision`.
    #[arg(short = 'r', long)]
    pub revision: Option<String>,

    /// Sign the bundle with this key: a PEM private key (RSA, EC) or an HMAC
    /// secret, as a file path or the key itself.
    #[arg(long, value_name = "KEY")]
    pub signing_key: Option<String>,

    /// The signing algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384).
    #[arg(long, default_value = "RS256")]
    pub signing_alg: String,

    /// The key id written into the signature (`kid`).
    #[arg(long, default_value = "default")]
    pub verification_key_id: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy and data files or directories.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,

    /// Output format: `pretty` (`file:line:col: message`) or `json`.
    #[arg(short = 'f', long, value_enum, default_value = "pretty")]
    pub format: OutputFormat,
}

/// Parses Go-style durations: `5s`, `500ms`, `1m`, `2h`, `1m30s`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let seconds = |secs: f64| {
        let secs = if secs.is_nan() { secs } else { secs.max(0.0) };
        std::time::Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid duration `{text}`: out of range"))
    };
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration `{text}`: missing unit"))?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration `{text}`"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("invalid duration `{text}`: unknown unit `{unit}`")),
        };
        total += number * scale;
        rest = tail;
    }
    seconds(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("5x").is_err());
        for huge in ["inf", "1e400", "NaN", "1e30h"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }
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

    /// Listen address for the diagnostic routes only (`/health`,
    /// `/health/{name}`, `/metrics`), `host:port`. Repeatable.
    #[arg(
        long = "diagnostic-addr",
        value_name = "ADDR",
        env = "REGENT_DIAGNOSTIC_ADDR",
        value_delimiter = ','
    )]
    pub diagnostic_addrs: Vec<String>,

    /// How callers are identified: `token` (the bearer token of the
    /// `Authorization` header) or `tls` (the subject of the client's
    /// certificate, which HTTPS listeners then require).
    #[arg(long, value_enum, default_value = "off", env = "REGENT_AUTHENTICATION")]
    pub authentication: Authentication,

    /// `basic`: every request must be allowed by the policy at
    /// `default_authorization_decision` (`data.system.authz.allow`).
    #[arg(long, value_enum, default_value = "off", env = "REGENT_AUTHORIZATION")]
    pub authorization: Authorization,

    /// TLS certificate (PEM, with its chain): addresses without a scheme
    /// then serve HTTPS.
    #[arg(long, value_name = "FILE", env = "REGENT_TLS_CERT_FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// The private key of `--tls-cert-file` (PEM).
    #[arg(long, value_name = "FILE", env = "REGENT_TLS_PRIVATE_KEY_FILE")]
    pub tls_private_key_file: Option<std::path::PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to, with
    /// `--authentication=tls`.
    #[arg(long, value_name = "FILE", env = "REGENT_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<std::path::PathBuf>,

    /// Read the TLS files again this often (`0s`: whenever they change).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        value_parser = parse_duration,
        env = "REGENT_TLS_CERT_REFRESH_PERIOD"
    )]
    pub tls_cert_refresh_period: std::time::Duration,

    /// Lowest TLS version accepted: 1.2 or 1.3 (1.0 and 1.1 are read as
    /// 1.2, the oldest Regent serves).
    #[arg(
        long,
        value_name = "VERSION",
        default_value = "1.2",
        env = "REGENT_MIN_TLS_VERSION"
    )]
    pub min_tls_version: String,

    /// The TLS 1.2 cipher suites offered, by IANA name. Repeatable or
    /// comma-separated.
    #[arg(long, value_name = "SUITE", value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,

    /// Mode of the socket file of a `unix://PATH` address (octal).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "755",
        env = "REGENT_UNIX_SOCKET_PERM"
    )]
    pub unix_socket_perm: String,

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

    /// Load the paths as bundles (directories or `.tar.gz` files), as `opa run -b`.
    #[arg(short = 'b', long)]
    pub bundle: bool,

    /// OPA configuration file (YAML or JSON): services, bundles, keys, ...
    #[arg(short = 'c', long, value_name = "FILE", env = "REGENT_CONFIG_FILE")]
    pub config_file: Option<std::path::PathBuf>,

    /// Override a configuration value: `--set bundles.x.resource=/b.tar.gz`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Set a configuration value to a file's contents: `--set-file keys.k.key=pub.pem`.
    #[arg(long = "set-file", value_name = "KEY=PATH")]
    pub set_file: Vec<String>,

    /// Key to verify `-b` bundle signatures with: a PEM public key or an HMAC
    /// secret, as a file path or the key itself.
    #[arg(long, value_name = "KEY")]
    pub verification_key: Option<String>,

    /// Id of `--verification-key`.
    #[arg(long, default_value = "default")]
    pub verification_key_id: String,

    /// Algorithm of `--verification-key`.
    #[arg(long, default_value = "RS256")]
    pub signing_alg: String,

    /// Scope the `-b` bundle signatures must carry.
    #[arg(long)]
    pub scope: Option<String>,

    /// Files of `-b` bundles that need not be signed (globs). Repeatable.
    #[arg(long = "exclude-files-verify", value_name = "GLOB")]
    pub exclude_files_verify: Vec<String>,

    /// Do not verify `-b` bundle signatures.
    #[arg(long)]
    pub skip_verify: bool,

    /// File and directory names to leave out when loading the paths' directories
    /// (globs: `*.json`, `test_*`); hidden names (`.*`) always are. Repeatable.
    #[arg(long, value_name = "GLOB", value_delimiter = ',')]
    pub ignore: Vec<String>,

    /// Accepted for OPA compatibility; Regent never reports telemetry or
    /// checks for new versions.
    #[arg(long)]
    pub disable_telemetry: bool,

    /// Accepted for OPA compatibility (OPA's older name of `--disable-telemetry`).
    #[arg(long)]
    pub skip_version_check: bool,

    /// Wait up to this many seconds for the configured bundles to be
    /// activated before listening; not ready by then: exit 1 (<= 0: no wait).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_negative_numbers = true,
        env = "REGENT_READY_TIMEOUT"
    )]
    pub ready_timeout: i64,

    /// Timestamp layout of JSON log lines, as a Go time layout
    /// (`2006-01-02T15:04:05.000Z07:00`) [default: RFC 3339].
    #[arg(long, value_name = "LAYOUT", env = "OPA_LOG_TIMESTAMP_FORMAT")]
    pub log_timestamp_format: Option<String>,

    /// Accepted for OPA compatibility: Rego v1 is the only syntax read (OPA
    /// 1.x's default too).
    #[arg(long)]
    pub v1_compatible: bool,

    /// OPA's Rego v0 mode, which Regent does not have: refused.
    #[arg(long, hide = true)]
    pub v0_compatible: bool,

    /// Accepted for OPA compatibility: Regent does not type-check the
    /// authorization policy against OPA's input schema.
    #[arg(long)]
    pub skip_known_schema_check: bool,

    /// Accepted for OPA compatibility: Regent reports a compile error at a
    /// time, so any limit behaves alike.
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub max_errors: Option<i64>,

    /// Accepted for OPA compatibility (the REPL's history file; unused with
    /// `--server`, as in OPA).
    #[arg(short = 'H', long, value_name = "PATH")]
    pub history: Option<String>,

    /// Accepted for OPA compatibility (the REPL's output format; unused with
    /// `--server`, as in OPA).
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Accepted for OPA compatibility; Regent has no Go profiler, so no
    /// `/debug/pprof` routes are served (a warning says so).
    #[arg(long)]
    pub pprof: bool,

    /// Also serve HTTP/2 with prior knowledge (h2c) on `http` and unix
    /// socket listeners, as OPA's `--h2c`.
    #[arg(long, env = "REGENT_H2C")]
    pub h2c: bool,

    /// Reload the paths when files under them change.
    #[arg(short = 'w', long, env = "REGENT_WATCH")]
    pub watch: bool,

    /// Turn the decision cache off.
    #[arg(long, env = "REGENT_DISABLE_DECISION_CACHE")]
    pub disable_decision_cache: bool,

    /// Most decisions the cache holds [default: 100000, or `decision_cache.max_entries`].
    #[arg(long, value_name = "N", env = "REGENT_DECISION_CACHE_MAX_ENTRIES")]
    pub decision_cache_max_entries: Option<u64>,

    /// Most bytes the cache holds (entries weigh their response, key and
    /// bookkeeping) [default: 67108864, or `decision_cache.max_size_bytes`].
    #[arg(
        long,
        value_name = "BYTES",
        env = "REGENT_DECISION_CACHE_MAX_SIZE_BYTES"
    )]
    pub decision_cache_max_size_bytes: Option<u64>,

    /// Seconds a cached decision lives, 0: until evicted or the policy
    /// changes [default: 0, or `decision_cache.ttl_seconds`].
    #[arg(
        long,
        value_name = "SECONDS",
        env = "REGENT_DECISION_CACHE_TTL_SECONDS"
    )]
    pub decision_cache_ttl_seconds: Option<u64>,

    /// Most inputs one `POST /v1/batch/data` request may carry.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 10_000,
        env = "REGENT_MAX_BATCH_INPUTS"
    )]
    pub max_batch_inputs: usize,

    /// Longest one evaluation may run (`500ms`, `30s`; 0: no limit). A
    /// decision stopped by it is a 500 `eval_cancel_error`.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration,
        env = "REGENT_EVAL_TIMEOUT"
    )]
    pub eval_timeout: std::time::Duration,

    /// Policy (.rego) and data (.json, .yaml) files or directories; `a.b:path`
    /// loads under `data.a.b`. None: the built-in default policies.
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}
