//! What the data API writes to the decision log, and how a decision id
//! reaches the answer: [`Logged`] gathers one decision's request (input,
//! path, caller) and writes its line when the log is on; everything it reads
//! back (the input from the body, the result from the answer) is read only
//! then, so a disabled log costs the request path nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::MapAccess;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire;
use super::wire::go_struct::{self, GoStruct};
use super::{AppState, Caller};
use crate::decision_log::Record;
use crate::policy::{DataPath, EvalError, Snapshot};

/// Where a decision's input is, as JSON text.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    /// A `/v1/data` body: the input is its `input` member.
    Body(&'a [u8]),
    /// The input itself (`?input=`, a v0 body, a batch item).
    Raw(&'a str),
    None,
}

/// Where a decision's result is, as JSON text.
#[derive(Clone, Copy)]
pub(super) enum Answer<'a> {
    /// A `/v1/data` answer (or batch item): the result is its `result` member.
    Wrapped(&'a [u8]),
    /// The document itself (v0).
    Bare(&'a [u8]),
    /// Undefined, or failed.
    None,
}

/// One decision of the data API (or ad-hoc query), ready to be logged.
pub(super) struct Logged<'a> {
    pub state: &'a AppState,
    pub snapshot: &'a Snapshot,
    pub path: &'a DataPath,
    /// An ad-hoc query (`/v1/query`, whose `path` is the root), as sent;
    /// empty for a decision of the data API.
    pub query: &'a str,
    pub caller: Caller,
    pub input: Input<'a>,
    /// For a batch item, the batch's id.
    pub batch: Option<&'a str>,
}

impl Logged<'_> {
    /// Logs the decision when the decision log is on, and returns its id.
    /// `metrics` are the handler's timers; without them, the handler time.
    pub async fn write(
        &self,
        answer: Answer<'_>,
        error: Option<&EvalError>,
        metrics: Option<&BTreeMap<&'static str, u64>>,
    ) -> Option<String> {
        let log = &self.state.decision_log;
        let id = log.decision_id()?;
        // As OPA logs the path: as sent, so a segment holding `/` (sent
        // as `%2F`) stays one segment.
        let path = self
            .path
            .segments()
            .iter()
            .map(|s| escape_segment(s))
            .collect::<Vec<_>>()
            .join("/");
        let handler;
        let metrics = match metrics {
            Some(metrics) => metrics,
            None => {
                handler = handler_metrics(self.caller);
                &handler
            }
        };
        let (from_body, raw);
        let input = match self.input {
            Input::Body(body) => {
                from_body = input_of_body(body);
                from_body.as_deref()
            }
            // As it was read (escaped lone surrogates as U+FFFD).
            Input::Raw(text) => {
                raw = wire::go_escapes(text);
                Some(raw.as_ref())
            }
            Input::None => None,
        };
        let result = match answer {
            Answer::Wrapped(bytes) => result_of_answer(bytes),
            Answer::Bare(bytes) => std::str::from_utf8(bytes).ok(),
            Answer::None => None,
        };
        let entry = log.entry(&Record {
            decision_id: &id,
            batch_decision_id: self.batch,
            req_id: self.caller.req_id,
            requested_by: self.caller.peer,
            path: &path,
            query: self.query,
            bundles: self.snapshot.bundle_revisions(),
            input,
            result,
            error,
            metrics,
        })?;
        log.write(entry).await;
        Some(id)
    }
}

/// A path segment as a URL carries it: `%` and `/` percent-encoded.
fn escape_segment(segment: &str) -> std::borrow::Cow<'_, str> {
    if segment.contains(['%', '/']) {
        segment.replace('%', "%25").replace('/', "%2F").into()
    } else {
        segment.into()
    }
}

/// The handler's time so far, OPA's `timer_server_handler_ns`.
pub(super) fn handler_metrics(caller: Caller) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([(
        "timer_server_handler_ns",
        caller.started.elapsed().as_nanos() as u64,
    )])
}

/// The `input` member of a `/v1/data` request body, as JSON text.
fn input_of_body(body: &[u8]) -> Option<Cow<'_, str>> {
    match wire::go_text(body) {
        Cow::Borrowed(text) => input_of_text(text).map(Cow::Borrowed),
        Cow::Owned(text) => input_of_text(&text).map(|input| Cow::Owned(input.to_string())),
    }
}

fn input_of_text(text: &str) -> Option<&str> {
    let mut de = serde_json::Deserializer::from_str(text);
    go_struct::read(LoggedInput(None), &mut de)
        .ok()?
        .0
        .map(RawValue::get)
}

/// The `input` of a `/v1/data` body, read as the decision's input was
/// (`wire::go_struct`: `INPUT` is `input` too, the last one counts).
struct LoggedInput<'a>(Option<&'a RawValue>);

impl<'de> GoStruct<'de> for LoggedInput<'de> {
    const FIELDS: &'static [&'static str] = &["input"];

    fn field<A: MapAccess<'de>>(&mut self, _: &str, map: &mut A) -> Result<(), A::Error> {
        self.0 = map.next_value()?;
        Ok(())
    }
}

/// The `result` member of a `/v1/data` answer, as JSON text.
fn result_of_answer(answer: &[u8]) -> Option<&str> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Answer<'_>>(answer)
        .ok()?
        .result
        .map(RawValue::get)
}

/// `answer` (a JSON object written by Regent, indented by two spaces when
/// `pretty`) with `"decision_id"` as its first member, where OPA puts it.
pub(super) fn with_decision_id(answer: &[u8], id: &str, pretty: bool) -> Vec<u8> {
    let Some(rest) = answer.strip_prefix(b"{") else {
        return answer.to_vec();
    };
    let empty = rest.starts_with(b"}");
    let member = match (pretty, empty) {
        (false, false) => format!("\"decision_id\":\"{id}\","),
        (false, true) => format!("\"decision_id\":\"{id}\""),
        (true, false) => format!("\n  \"decision_id\": \"{id}\","),
        (true, true) => format!("\n  \"decision_id\": \"{id}\"\n"),
    };
    let mut out = Vec::with_capacity(answer.len() + member.len());
    out.push(b'{');
    out.extend_from_slice(member.as_bytes());
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::to_json;
    use serde::Serialize;

    /// OPA's `DataResponseV1` member order.
    #[derive(Serialize)]
    struct Opa<'a> {
        decision_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
    }

    #[derive(Serialize)]
    struct Ours {
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
    }

    #[test]
    fn decision_id_is_spliced_as_opa_serializes_it() {
        let id = "4ca636c1-55e4-417a-b1d8-4aceb67960d1";
        for pretty in [false, true] {
            for result in [None, Some(serde_json::json!({"a": [1, "x"]}))] {
                let ours = to_json(
                    &Ours {
                        result: result.clone(),
                    },
                    pretty,
                );
                let expected = to_json(
                    &Opa {
                        decision_id: id,
                        result,
                    },
                    pretty,
                );
                assert_eq!(
                    String::from_utf8(with_decision_id(&ours, id, pretty)).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn input_and_result_are_read_from_the_raw_bytes() {
        let input = |body: &[u8]| input_of_body(body).map(Cow::into_owned);
        assert_eq!(
            input(br#"{"input": {"a": 1}, "x": 2}"#).as_deref(),
            Some(r#"{"a": 1}"#)
        );
        assert_eq!(input(br#"{"x": 2}"#), None);
        // The input the decision was evaluated with: any case, the last one,
        // invalid UTF-8 read as Go reads it.
        assert_eq!(
            input(br#"{"input": 1, "INPUT": {"b": 2}} "#).as_deref(),
            Some(r#"{"b": 2}"#)
        );
        assert_eq!(
            input(b"{\"input\": \"\xff\"}").as_deref(),
            Some("\"\u{fffd}\"")
        );
        assert_eq!(result_of_answer(b"{\"result\":[true]}\n"), Some("[true]"));
        assert_eq!(result_of_answer(b"{}\n"), None);
    }
}
