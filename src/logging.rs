//! Log output: OPA's `--log-level` and `--log-format` (json by default, as OPA),
//! written to stderr.

use clap::ValueEnum;
use tracing_subscriber::filter::LevelFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    #[value(name = "json-pretty")]
    JsonPretty,
}

/// Installs the process-wide subscriber. Called once, from `main`.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // JSON lines stay one event per line so log shippers can read them;
    // json-pretty is accepted for OPA compatibility and written the same way.
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json | LogFormat::JsonPretty => builder.json().flatten_event(true).init(),
    }
}
