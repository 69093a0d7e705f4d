//! OPA's decision logs: the console (`decision_logs.console: true`) and
//! uploads to a service (`decision_logs.service`, `reporting`).
//!
//! Every decision the data API answers (`/v1/data`, `/v0/data`, `POST /`,
//! and each item of a batch) becomes one event. On the console it is one
//! JSON line on stderr shaped as OPA's console logger writes it: the
//! `EventV1` fields (`bundles`, `decision_id`, `error`, `input`, `labels`,
//! `metrics`, `path`, `req_id`, `requested_by`, `result`, `timestamp`) plus
//! logrus's `level`, `msg` and `time` and `"type":
//! "openpolicyagent.org/decision_logs"`, keys sorted as Go's encoder sorts a
//! map; like OPA's it logs at `info` whatever `--log-level` says
//! (`console.rs`). For a service it is the bare `EventV1`, buffered and
//! uploaded in gzip'd JSON arrays (`upload.rs`). Answers carry the
//! `decision_id` their event is filed under. Requests rejected before
//! evaluation (malformed input) are not decisions and are not logged, as in
//! OPA. What the data API logs, and how decision ids reach its answers, is
//! `api/logged.rs`. Disabled (the default), the log costs one branch per
//! request.

mod console;
mod upload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::wire::Strings;
use crate::policy::{EvalError, Location};
use console::Console;
use upload::Upload;
pub use upload::{configured_upload, UploadConfig, UploadStatus};

/// The decision logger; cheap to clone (one per connection).
#[derive(Clone, Default)]
pub struct DecisionLog(Option<Arc<Inner>>);

/// One logged decision; borrowed from the request being answered.
pub struct Record<'a> {
    pub decision_id: &'a str,
    /// The batch the decision belongs to (Enterprise OPA's
    /// `batch_decision_id`), for an item of `POST /v1/batch/data`.
    pub batch_decision_id: Option<&'a str>,
    pub req_id: u64,
    pub requested_by: Option<SocketAddr>,
    /// The query path as requested, without `data` (`tasks/allow`).
    pub path: &'a str,
    /// An ad-hoc query (`/v1/query`), as sent; empty for a decision.
    pub query: &'a str,
    /// The active bundles' revisions, by name.
    pub bundles: &'a BTreeMap<String, String>,
    /// The input document as JSON text, if the request had one.
    pub input: Option<&'a str>,
    /// The decision as JSON text; `None` when undefined or failed.
    pub result: Option<&'a str>,
    pub error: Option<&'a EvalError>,
    pub metrics: &'a BTreeMap<&'static str, u64>,
}

struct Inner {
    labels: BTreeMap<String, String>,
    requests: AtomicU64,
    console: Option<Console>,
    upload: Option<Arc<Upload>>,
}

/// One decision rendered for each sink that is on.
pub struct Entry {
    /// The console line, newline included.
    console: Option<Vec<u8>>,
    /// The upload event (`EventV1`).
    upload: Option<Vec<u8>>,
}

impl DecisionLog {
    /// A log to the console (stderr) and/or a service, with `labels` (OPA's
    /// `id`, `version` and the configured ones) on every decision; disabled
    /// when neither is asked for. The uploads start with [`Self::start`].
    pub fn new(
        labels: BTreeMap<String, String>,
        console: bool,
        upload: Option<UploadConfig>,
    ) -> DecisionLog {
        if !console && upload.is_none() {
            return DecisionLog(None);
        }
        DecisionLog(Some(Arc::new(Inner {
            labels,
            requests: AtomicU64::new(0),
            console: console.then(Console::start),
            upload: upload.map(|config| Arc::new(Upload::new(config))),
        })))
    }

    /// Logs to stderr only.
    pub fn console(labels: BTreeMap<String, String>) -> DecisionLog {
        DecisionLog::new(labels, true, None)
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A new decision id (a random UUID, as OPA's), or `None` when disabled.
    pub fn decision_id(&self) -> Option<String> {
        self.0.as_ref().map(|_| uuid::Uuid::new_v4().to_string())
    }

    /// The next request number (OPA's `req_id`, from 1), or 0 when disabled.
    pub fn request_id(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |c| c.requests.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// `record` rendered for each sink, or `None` when disabled.
    pub fn entry(&self, record: &Record<'_>) -> Option<Entry> {
        let inner = self.0.as_ref()?;
        let fields = Fields::new(record, &inner.labels, chrono::Utc::now());
        Some(Entry {
            console: inner.console.as_ref().map(|_| {
                let mut line = render(&fields);
                line.push(b'\n');
                line
            }),
            upload: inner.upload.as_ref().map(|_| render_event(&fields)),
        })
    }

    /// Buffers the event for upload and queues the line for stderr (waiting
    /// while the console's queue is full).
    pub async fn write(&self, entry: Entry) {
        let Some(inner) = &self.0 else { return };
        if let (Some(upload), Some(event)) = (&inner.upload, entry.upload) {
            upload.push(event);
        }
        if let (Some(console), Some(line)) = (&inner.console, entry.console) {
            console.write(line).await;
        }
    }

    /// Starts the periodic uploads, if configured. Needs a tokio runtime.
    pub fn start(&self) -> anyhow::Result<()> {
        match self.0.as_ref().and_then(|i| i.upload.as_ref()) {
            Some(upload) => Arc::clone(upload).spawn(),
            None => Ok(()),
        }
    }

    /// Uploads what is buffered before the process exits, retrying (once a
    /// second) until the buffer is empty or `grace` has passed, as OPA's
    /// plugin does on stop.
    pub async fn flush(&self, grace: Duration) {
        if let Some(upload) = self.0.as_ref().and_then(|i| i.upload.as_ref()) {
            upload.flush(grace).await;
        }
    }

    /// The upload's status for `/v1/status` (`None`: no uploads).
    pub fn upload_status(&self) -> Option<UploadStatus> {
        self.0
            .as_ref()
            .and_then(|i| i.upload.as_ref())
            .map(|u| u.status())
    }
}

/// One decision's fields as both sinks write them, computed once: the input
/// and result compacted, the caller's address and the time formatted.
struct Fields<'a> {
    record: &'a Record<'a>,
    labels: &'a BTreeMap<String, String>,
    bundles: BTreeMap<&'a str, BundleInfo<'a>>,
    input: Option<Box<RawValue>>,
    result: Option<Box<RawValue>>,
    error: Option<ErrorInfo<'a>>,
    requested_by: String,
    now: chrono::DateTime<chrono::Utc>,
    timestamp: String,
}

impl<'a> Fields<'a> {
    fn new(
        record: &'a Record<'a>,
        labels: &'a BTreeMap<String, String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Fields<'a> {
        Fields {
            record,
            labels,
            bundles: record
                .bundles
                .iter()
                .map(|(name, revision)| (name.as_str(), BundleInfo { revision }))
                .collect(),
            input: record.input.and_then(sorted),
            result: record.result.and_then(raw),
            error: record.error.map(error_info),
            // A unix socket's client has no address; Go shows it as `@`.
            requested_by: record
                .requested_by
                .map_or_else(|| "@".to_string(), |a| a.to_string()),
            now,
            timestamp: rfc3339_nano(now),
        }
    }
}

/// OPA's `EventV1`, in its field order, as uploaded (no logrus fields).
#[derive(Serialize)]
struct Event<'a> {
    labels: &'a BTreeMap<String, String>,
    decision_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_decision_id: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    bundles: &'a BTreeMap<&'a str, BundleInfo<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorInfo<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    requested_by: &'a str,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metrics: &'a BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "is_zero")]
    req_id: u64,
}

fn render_event(fields: &Fields<'_>) -> Vec<u8> {
    let event = Event {
        labels: fields.labels,
        decision_id: fields.record.decision_id,
        batch_decision_id: fields.record.batch_decision_id,
        bundles: &fields.bundles,
        path: fields.record.path,
        query: fields.record.query,
        input: fields.input.as_deref(),
        result: fields.result.as_deref(),
        error: fields.error.as_ref(),
        requested_by: &fields.requested_by,
        timestamp: &fields.timestamp,
        metrics: fields.record.metrics,
        req_id: fields.record.req_id,
    };
    go_json(&event)
}

/// As Go's `json.Marshal` (and so OPA's logger) writes it: compact, with
/// `<`, `>`, `&`, U+2028 and U+2029 escaped in strings.
fn go_json(value: &impl Serialize) -> Vec<u8> {
    let mut out = crate::api::wire::to_json(value, false);
    out.pop(); // the newline
    out
}

fn error_info(e: &EvalError) -> ErrorInfo<'_> {
    ErrorInfo {
        code: e.code.as_str(),
        message: &e.message,
        location: e.location.as_ref(),
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_decision_id: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    bundles: &'a BTreeMap<&'a str, BundleInfo<'a>>,
    decision_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorInfo<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a RawValue>,
    labels: &'a BTreeMap<String, String>,
    level: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metrics: &'a BTreeMap<&'static str, u64>,
    msg: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    req_id: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    requested_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
    time: String,
    timestamp: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct BundleInfo<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    revision: &'a str,
}

/// OPA logs the evaluation error itself (`topdown.Error`), not the HTTP body.
#[derive(Serialize)]
struct ErrorInfo<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<&'a Location>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn render(fields: &Fields<'_>) -> Vec<u8> {
    let record = fields.record;
    let line = Line {
        batch_decision_id: record.batch_decision_id,
        bundles: &fields.bundles,
        decision_id: record.decision_id,
        error: fields.error.as_ref(),
        input: fields.input.as_deref(),
        labels: fields.labels,
        level: "info",
        metrics: record.metrics,
        msg: "Decision Log",
        path: record.path,
        query: record.query,
        req_id: record.req_id,
        requested_by: &fields.requested_by,
        result: fields.result.as_deref(),
        time: format!("{}Z", seconds(fields.now)),
        timestamp: &fields.timestamp,
        kind: "openpolicyagent.org/decision_logs",
    };
    go_json(&line)
}

/// `text` as one compact JSON value (a pretty-printed input would break the
/// one-line-per-decision format); `None` if it is not JSON.
fn raw(text: &str) -> Option<Box<RawValue>> {
    RawValue::from_string(compact(text)).ok()
}

/// `text` re-encoded as OPA's logger writes an input: compact, object keys
/// sorted, numbers as written, strings as Go's `json.Marshal` encodes them
/// (the canonical form bundle signatures hash, `bundle/canonical.rs`, plus
/// the HTML escapes, which a raw value does not get from [`go_json`]).
/// `None` if it is not JSON.
fn sorted(text: &str) -> Option<Box<RawValue>> {
    let mut json = crate::bundle::canonical::canonical_json(text).ok()?;
    // In valid JSON these bytes only occur inside strings.
    if json.contains(['<', '>', '&']) {
        json = json
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026");
    }
    RawValue::from_string(json).ok()
}

/// Removes the whitespace between JSON tokens, leaving strings untouched.
fn compact(text: &str) -> String {
    let mut strings = Strings::default();
    let out: Vec<u8> = text
        .bytes()
        .filter(|&b| !(strings.outside(b) && matches!(b, b' ' | b'\t' | b'\n' | b'\r')))
        .collect();
    // Only ASCII bytes were dropped, so what remains is still UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// `2006-01-02T15:04:05`, in UTC.
fn seconds(now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Go's `time.RFC3339Nano` in UTC: nanoseconds with trailing zeros dropped.
fn rfc3339_nano(now: chrono::DateTime<chrono::Utc>) -> String {
    let base = seconds(now);
    let nanos = now.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EvalErrorCode;

    #[test]
    fn compact_removes_whitespace_outside_strings_only() {
        assert_eq!(
            compact("{ \"é \" : [ \"\u{1F600}\" ] }"),
            "{\"é \":[\"\u{1F600}\"]}"
        );
        assert_eq!(
            compact("{\n  \"a b\": [1, 2],\t\"c\\\" d\": \" \\\\\" }\r\n"),
            "{\"a b\":[1,2],\"c\\\" d\":\" \\\\\"}"
        );
    }

    #[test]
    fn logged_inputs_have_sorted_keys_and_numbers_as_sent() {
        let text = "{ \"b\": [ {\"z\": 1, \"a\": 2.50} ], \"a\" : \"\\u00e9 x\", \"b\": 1e3, \"\\u0041\": null }";
        assert_eq!(
            sorted(text).unwrap().get(),
            "{\"A\":null,\"a\":\"é x\",\"b\":1e3}"
        );
        assert_eq!(
            sorted("[{\"y\":{\"d\":[],\"c\":{}},\"x\":true}]")
                .unwrap()
                .get(),
            "[{\"x\":true,\"y\":{\"c\":{},\"d\":[]}}]"
        );
        assert!(sorted("{\"a\": }").is_none());
        assert_eq!(
            sorted("{\"q\": \"<a&b>\\u2028\", \"n\": [2.50, -0, 1E+2]}")
                .unwrap()
                .get(),
            "{\"n\":[2.50,-0,1E+2],\"q\":\"\\u003ca\\u0026b\\u003e\\u2028\"}"
        );
    }

    #[test]
    fn timestamps_are_go_rfc3339_nano() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2026, 11, 24, 2, 3, 4).unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-24T02:03:04Z");
        let t = t + chrono::Duration::nanoseconds(120_000);
        assert_eq!(rfc3339_nano(t), "2026-11-24T02:03:04.00012Z");
    }

    #[test]
    fn a_line_is_one_sorted_json_object() {
        use chrono::TimeZone;
        let labels = BTreeMap::from([("id".to_string(), "x<y&z>".to_string())]);
        let bundles = BTreeMap::from([("cvat".to_string(), String::new())]);
        let metrics = BTreeMap::from([("timer_server_handler_ns", 7)]);
        let error = EvalError {
            code: EvalErrorCode::Conflict,
            message: "complete rules must not produce multiple outputs".into(),
            location: None,
        };
        let record = Record {
            decision_id: "d",
            batch_decision_id: None,
            req_id: 3,
            requested_by: Some("127.0.0.1:5000".parse().unwrap()),
            path: "tasks/allow",
            query: "",
            bundles: &bundles,
            input: Some("{\n \"scope\": \"view\"\n}"),
            result: None,
            error: Some(&error),
            metrics: &metrics,
        };
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let line = String::from_utf8(render(&Fields::new(&record, &labels, now))).unwrap();
        assert!(!line.contains('\n'));
        // As Go's json.Marshal writes every string of the line.
        assert!(line.contains(r#""id":"x\u003cy\u0026z\u003e""#), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert_eq!(
            value,
            serde_json::json!({
                "bundles": {"cvat": {}},
                "decision_id": "d",
                "error": {"code": "eval_conflict_error",
                          "message": "complete rules must not produce multiple outputs"},
                "input": {"scope": "view"},
                "labels": {"id": "x<y&z>"},
                "level": "info",
                "metrics": {"timer_server_handler_ns": 7},
                "msg": "Decision Log",
                "path": "tasks/allow",
                "req_id": 3,
                "requested_by": "127.0.0.1:5000",
                "time": "2026-01-02T03:04:05Z",
                "timestamp": "2026-01-02T03:04:05Z",
                "type": "openpolicyagent.org/decision_logs",
            })
        );
    }

    #[test]
    fn an_event_is_eventv1_in_its_field_order_and_agrees_with_the_line() {
        use chrono::TimeZone;
        let labels = BTreeMap::from([("id".to_string(), "x".to_string())]);
        let bundles = BTreeMap::new();
        let metrics = BTreeMap::from([("timer_server_handler_ns", 7)]);
        let record = Record {
            decision_id: "d",
            batch_decision_id: None,
            req_id: 3,
            requested_by: Some("127.0.0.1:5000".parse().unwrap()),
            path: "tasks/allow",
            query: "",
            bundles: &bundles,
            input: Some("{ \"scope\" : \"view\" }"),
            result: Some(" true "),
            error: None,
            metrics: &metrics,
        };
        let now = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::nanoseconds(5_000);
        let fields = Fields::new(&record, &labels, now);
        let event = String::from_utf8(render_event(&fields)).unwrap();
        assert_eq!(
            event,
            "{\"labels\":{\"id\":\"x\"},\"decision_id\":\"d\",\"path\":\"tasks/allow\",\
             \"input\":{\"scope\":\"view\"},\"result\":true,\"requested_by\":\"127.0.0.1:5000\",\
             \"timestamp\":\"2026-01-02T03:04:05.000005Z\",\
             \"metrics\":{\"timer_server_handler_ns\":7},\"req_id\":3}"
        );
        let line: serde_json::Value = serde_json::from_slice(&render(&fields)).unwrap();
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        for key in [
            "labels",
            "decision_id",
            "path",
            "input",
            "result",
            "requested_by",
        ] {
            assert_eq!(line[key], event[key], "{key}");
        }
        assert_eq!(line["timestamp"], event["timestamp"]);
        assert_eq!(line["time"], "2026-01-02T03:04:05Z");
    }

    #[test]
    fn disabled_logger_hands_out_nothing() {
        let log = DecisionLog::default();
        assert!(!log.enabled());
        assert_eq!(log.decision_id(), None);
        assert_eq!(log.request_id(), 0);
        let log = DecisionLog::console(BTreeMap::new());
        assert_eq!(log.request_id(), 1);
        assert_eq!(log.request_id(), 2);
        let id = log.decision_id().unwrap();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_ne!(log.decision_id().unwrap(), id);
    }
}
