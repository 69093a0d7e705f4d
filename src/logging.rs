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
/// `timestamps`: the layout of JSON lines' timestamps; `None`: RFC 3339
/// with microseconds.
pub fn init(level: LogLevel, format: LogFormat, timestamps: Option<Layout>) {
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
    match (format, timestamps) {
        (LogFormat::Text, _) => builder.init(),
        (LogFormat::Json | LogFormat::JsonPretty, None) => {
            builder.json().flatten_event(true).init();
        }
        (LogFormat::Json | LogFormat::JsonPretty, Some(layout)) => {
            builder.json().flatten_event(true).with_timer(layout).init()
        }
    }
}

/// Timestamps in a Go time layout (`--log-timestamp-format`), parsed once,
/// in UTC.
#[derive(Clone, Debug)]
pub struct Layout(Vec<chrono::format::Item<'static>>);

impl Layout {
    /// Reads a Go layout (see [`go_layout`]); one chrono cannot write is an
    /// error.
    pub fn from_go(layout: &str) -> anyhow::Result<Layout> {
        chrono::format::StrftimeItems::new(&go_layout(layout))
            .parse_to_owned()
            .map(Layout)
            .map_err(|_| anyhow::anyhow!("invalid --log-timestamp-format `{layout}`"))
    }
}

impl tracing_subscriber::fmt::time::FormatTime for Layout {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", chrono::Utc::now().format_with_items(self.0.iter()))
    }
}

/// A Go time layout (`--log-timestamp-format`, as OPA's) as a strftime
/// layout for chrono, read as Go's `time.Format` reads it: `2006-01-02`,
/// `15:04:05`, `Jan`, `Mon`, `PM`, `.000` or `,000` (fractions of 3, 6 or 9
/// digits; other lengths are rounded up to those, and Go's `.999` form,
/// which drops trailing zeros, keeps them here), `Z07:00` (`Z`: the logs are
/// in UTC); anything else is literal.
pub fn go_layout(layout: &str) -> String {
    // Longest first where one token starts another, as Go matches them.
    const TOKENS: [(&str, &str); 34] = [
        // Go: a literal `_`, then the year.
        ("_2006", "_%Y"),
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("2006", "%Y"),
        ("002", "%j"),
        ("01", "%m"),
        ("02", "%d"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("15", "%H"),
        ("__2", "%_j"),
        ("_2", "%e"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("-07:00:00", "%::z"),
        ("-070000", "%z00"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("-07", "%:::z"),
        ("Z07:00:00", "Z"),
        ("Z070000", "Z"),
        ("Z07:00", "Z"),
        ("Z0700", "Z"),
        ("Z07", "Z"),
    ];
    let mut out = String::with_capacity(layout.len() * 2);
    let mut rest = layout;
    'scan: while let Some(c) = rest.chars().next() {
        if let Some(digits) = fraction(rest) {
            let shown = if digits <= 3 {
                3
            } else if digits <= 6 {
                6
            } else {
                9
            };
            // The separator as written (`.` or `,`), then the digits.
            out.push(c);
            out.push_str(&format!("%{shown}f"));
            rest = &rest[1 + digits..];
            continue;
        }
        for (token, strftime) in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str(strftime);
                rest = after;
                continue 'scan;
            }
        }
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Go's fractional seconds at the start of `text`: `.` or `,`, then a run
/// of `0`s or of `9`s not followed by a digit; the run's length.
fn fraction(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if !matches!(bytes.first(), Some(b'.' | b',')) {
        return None;
    }
    let digit = *bytes.get(1).filter(|d| matches!(d, b'0' | b'9'))?;
    let run = bytes[1..].iter().take_while(|&&b| b == digit).count();
    (!bytes.get(1 + run).is_some_and(u8::is_ascii_digit)).then_some(run)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::go_layout;

    #[test]
    fn go_layouts_become_strftime() {
        // time.RFC3339, RFC3339Nano, Kitchen, and a custom one.
        assert_eq!(go_layout("2006-01-02T15:04:05Z07:00"), "%Y-%m-%dT%H:%M:%SZ");
        assert_eq!(
            go_layout("2006-01-02T15:04:05.999999999Z07:00"),
            "%Y-%m-%dT%H:%M:%S.%9fZ"
        );
        assert_eq!(go_layout("15:04:05,000 _2006"), "%H:%M:%S,%3f _%Y");
        assert_eq!(go_layout("3:04PM"), "%-I:%M%p");
        assert_eq!(
            go_layout("Mon Jan _2 15:04:05.000 MST 2006 at %"),
            "%a %b %e %H:%M:%S.%3f %Z %Y at %%"
        );
        assert_eq!(
            go_layout("2006-01-02 15:04:05.00 -0700"),
            "%Y-%m-%d %H:%M:%S.%3f %z"
        );
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-24T08:05:09.123456Z").unwrap();
        assert_eq!(
            at.format(&go_layout("2006-01-02T15:04:05.000Z07:00"))
                .to_string(),
            "2026-11-24T08:05:09.123Z"
        );
    }
}
