//! `POST /v1/batch/data/{path}`: many decisions in one request, in the shape
//! of Enterprise OPA's batch API. The body is
//! `{"inputs": {"<id>": <input>, ...}, "common_input": {...}}`; the answer is
//! `{"responses": {"<id>": {"result": ...}, ...}}`, 200 when every item
//! succeeded, 207 when any failed (then every item carries
//! `"http_status_code"`, and failed items are OPA error objects).
//!
//! Identical item inputs (byte for byte) are evaluated once; each item uses
//! the decision cache like a single decision; large batches are split over
//! the blocking thread pool so that they use every core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use regorus::Value;
use serde::de::{IgnoredAny, MapAccess};
use serde_json::value::RawValue;

use super::data::{cache_flags, eval_options};
use super::logged::{self, Answer, Input, Logged};
use super::offload::INLINE_BUDGET;
use super::wire::go_struct::{self, GoStruct};
use super::wire::{self, DataResponse, Keys, Params};
use super::{body, ApiError, AppState, Body, Caller};
use crate::cache::{Key, RequestKind};
use crate::policy::{DataPath, EvalError, EvalOptions, Outcome, Snapshot};

/// Distinct items below this count are evaluated on the request's own task.
const PARALLEL_MIN_ITEMS: usize = 32;

mod inputs;

/// The request's two fields, read as Go reads a struct (`wire::go_struct`).
#[derive(Default)]
struct BatchRequest<'a> {
    /// Read by [`inputs::read`], under the batch-size limit.
    inputs: Option<&'a RawValue>,
    common_input: Option<&'a RawValue>,
}

impl<'de> GoStruct<'de> for BatchRequest<'de> {
    const FIELDS: &'static [&'static str] = &["inputs", "common_input"];

    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            "inputs" => self.inputs = map.next_value()?,
            "common_input" => self.common_input = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// One item's answer: its HTTP status, compact JSON object bytes, and the
/// evaluation error it reports, if any (for the decision log).
type ItemResult = (StatusCode, Bytes, Option<EvalError>);

pub(crate) async fn handle(
    state: &AppState,
    req: Request<Body>,
    path: &DataPath,
    params: &Params,
    caller: Caller,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = body::read_input(req, &state.limits, "").await?;
    body::check_body_depth(&body, &state.limits, "")?;
    let text = wire::go_text(&body);
    let mut de = serde_json::Deserializer::from_str(&text);
    let request = go_struct::read(BatchRequest::default(), &mut de)
        .and_then(|request| de.end().map(|()| request))
        .map_err(|e| ApiError::BadRequest(format!("body contains malformed batch request: {e}")))?;
    let inputs = request.inputs.ok_or_else(|| {
        ApiError::BadRequest(
            "body contains malformed batch request: missing `inputs` object".into(),
        )
    })?;
    let inputs = inputs::read(inputs, state.max_batch_inputs).map_err(|e| match e {
        inputs::InputsError::TooMany => ApiError::BadRequest(format!(
            "batch of more than {} inputs is over the limit of {} (--max-batch-inputs)",
            state.max_batch_inputs, state.max_batch_inputs
        )),
        inputs::InputsError::Malformed(message) => ApiError::BadRequest(format!(
            "body contains malformed batch request: `inputs`: {message}"
        )),
    })?;
    let common_raw = request.common_input.map(RawValue::get);
    let common = match common_raw {
        Some(text) => Some(wire::parse_query_input(text, &state.keys).map_err(|e| {
            ApiError::BadRequest(format!("body contains malformed common_input: {}", e.0))
        })?),
        None => None,
    };

    let snapshot = state.snapshots.load();
    let options = eval_options(params);
    let cacheable = state.cache.enabled() && snapshot.cacheable(path);
    let flags = cache_flags(params) & !1; // items are always compact

    // Distinct raw inputs, each answered once.
    let mut distinct: Vec<&str> = Vec::new();
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    for raw in inputs.values() {
        slot_of.entry(raw.get()).or_insert_with(|| {
            distinct.push(raw.get());
            distinct.len() - 1
        });
    }
    let key_of = |raw: &str| {
        Key::new(
            snapshot.digest(),
            RequestKind::BatchItem,
            flags,
            path.as_ref_str(),
            &[common_raw.unwrap_or("").as_bytes(), raw.as_bytes()],
        )
    };
    let mut answers: Vec<Option<ItemResult>> = vec![None; distinct.len()];
    let mut todo: Vec<(usize, String)> = Vec::new();
    for (slot, raw) in distinct.iter().enumerate() {
        if cacheable {
            if let Some(hit) = state.cache.get(&key_of(raw)) {
                state.metrics.cache_hits.inc();
                answers[slot] = Some((StatusCode::OK, hit, None));
                continue;
            }
            state.metrics.cache_misses.inc();
        }
        todo.push((slot, raw.to_string()));
    }

    let evaluated = evaluate_all(state, &snapshot, path, common.clone(), options, todo).await?;
    for (slot, result) in evaluated {
        if cacheable && result.0 == StatusCode::OK {
            state.cache.insert(key_of(distinct[slot]), &result.1);
        }
        answers[slot] = Some(result);
    }

    let failed = answers.iter().any(|a| {
        a.as_ref()
            .is_some_and(|(status, _, _)| *status != StatusCode::OK)
    });
    // With the decision log on and a `common_input`, each distinct item is
    // logged with the input it was evaluated on: the merge, as JSON text.
    let merged: Vec<Option<String>> = match &common {
        Some(common) if state.decision_log.enabled() => distinct
            .iter()
            .map(|raw| {
                let merged = item_input(Some(common), raw, &state.keys).ok()?;
                let mut text = wire::to_json(&merged, false);
                text.pop();
                String::from_utf8(text).ok()
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(64 + inputs.len() * 32);
    out.push(b'{');
    // As Enterprise OPA: with the decision log on, the batch has an id of
    // its own besides each item's `decision_id`, in the answer and in each
    // item's log line.
    let batch_id = state.decision_log.decision_id();
    if let Some(id) = &batch_id {
        out.extend_from_slice(b"\"batch_decision_id\":\"");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"\"responses\":{");
    for (i, (id, raw)) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut id_json = wire::to_json(id, false);
        id_json.pop(); // the newline
        out.extend_from_slice(&id_json);
        out.push(b':');
        let slot = slot_of[raw.get()];
        let Some((status, item, error)) = &answers[slot] else {
            return Err(ApiError::BadRequest("batch item was not evaluated".into()));
        };
        // Items rejected before evaluation are not decisions.
        let logged = if *status == StatusCode::OK || error.is_some() {
            let input = merged
                .get(slot)
                .and_then(Option::as_deref)
                .unwrap_or(raw.get());
            let logged = Logged {
                state,
                snapshot: &snapshot,
                path,
                query: "",
                caller,
                input: Input::Raw(input),
                batch: batch_id.as_deref(),
            };
            logged
                .write(Answer::Wrapped(item), error.as_ref(), None)
                .await
        } else {
            None
        };
        // As on /v1/data, an error answer carries no decision id (its
        // decision is logged with the error).
        let spliced;
        let item: &[u8] = match &logged {
            Some(id) if *status == StatusCode::OK => {
                spliced = logged::with_decision_id(item, id, false);
                &spliced
            }
            _ => item,
        };
        if failed {
            with_status(&mut out, item, *status);
        } else {
            out.extend_from_slice(item);
        }
    }
    out.extend_from_slice(b"}}\n");
    if params.pretty {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&out) {
            out = wire::to_json(&value, true);
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(out)));
    *response.status_mut() = if failed {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::OK
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Writes `item` (a JSON object) with `"http_status_code"` as its first field.
fn with_status(out: &mut Vec<u8>, item: &[u8], status: StatusCode) {
    out.extend_from_slice(b"{\"http_status_code\":\"");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b'"');
    let rest = &item[1..];
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
}

/// Evaluates `todo` (slot, raw input), the whole batch within
/// `--eval-timeout` (items reached later get its error). Items are evaluated
/// one after another on the request's worker for as long as one inline
/// budget lasts (each moved off the worker if it is slow, as a single
/// decision); the rest go to the blocking pool, in one chunk per core, each
/// chunk in its turn (`offload.rs`). A client that goes away stops the
/// chunks at their next item.
async fn evaluate_all(
    state: &AppState,
    snapshot: &Arc<Snapshot>,
    path: &DataPath,
    common: Option<Value>,
    options: EvalOptions,
    todo: Vec<(usize, String)>,
) -> Result<Vec<(usize, ItemResult)>, ApiError> {
    let evaluation = &state.evaluation;
    let deadline = evaluation.deadline();
    let started = Instant::now();
    let mut out = Vec::with_capacity(todo.len());
    let mut todo = todo.into_iter();
    if todo.len() < PARALLEL_MIN_ITEMS {
        while started.elapsed() < INLINE_BUDGET {
            let Some((slot, raw)) = todo.next() else {
                return Ok(out);
            };
            let answer = match item_input(common.as_ref(), &raw, &state.keys) {
                Ok(input) => evaluation
                    .evaluate_by(snapshot, path, Some(input), options, deadline)
                    .await
                    .map_err(ApiError::from),
                Err(err) => Err(err),
            };
            out.push((slot, item_result(answer)));
        }
    }
    let mut todo: Vec<(usize, String)> = todo.collect();
    if todo.is_empty() {
        return Ok(out);
    }
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = todo.len().div_ceil(workers);
    let gone = GoneOnDrop::default();
    let mut tasks = Vec::new();
    while !todo.is_empty() {
        let part: Vec<(usize, String)> = todo.drain(..chunk.min(todo.len())).collect();
        let snapshot = Arc::clone(snapshot);
        let path = path.clone();
        let common = common.clone();
        let evaluation = evaluation.clone();
        let gone = Arc::clone(&gone.0);
        // No turn by the deadline: the chunk still runs, and each of its
        // items gets the time-limit error without being evaluated.
        let turn = evaluation.turn_by(deadline).await?;
        tasks.push(tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // A table of this chunk's own: its items share their keys.
            let keys = Keys::default();
            part.into_iter()
                .take_while(|_| !gone.load(Ordering::Relaxed))
                .map(|(slot, raw)| {
                    let answer = item_input(common.as_ref(), &raw, &keys).and_then(|input| {
                        evaluation
                            .evaluate_blocking(&snapshot, &path, Some(input), options, deadline)
                            .map_err(ApiError::from)
                    });
                    (slot, item_result(answer))
                })
                .collect::<Vec<_>>()
        }));
    }
    for task in tasks {
        let part = task
            .await
            .map_err(|e| ApiError::Internal(format!("batch worker failed: {e}")))?;
        out.extend(part);
    }
    Ok(out)
}

/// Set when the request that owns it is dropped (its client went away):
/// the batch's chunks stop at their next item.
#[derive(Default)]
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The input an item is evaluated on: its own input, deep-merged into
/// `common_input` when there is one.
fn item_input(common: Option<&Value>, raw: &str, keys: &Keys) -> Result<Value, ApiError> {
    let input = wire::parse_query_input(raw, keys)
        .map_err(|e| ApiError::BadRequest(format!("input contains malformed document: {}", e.0)))?;
    Ok(match common {
        Some(common) => merge(common.clone(), input),
        None => input,
    })
}

/// One item's answer: `{"result": ...}` (or `{}` when undefined), or an
/// error object.
fn item_result(answer: Result<Outcome, ApiError>) -> ItemResult {
    match answer {
        Ok(outcome) => {
            let result = match &outcome {
                Outcome::Defined(value) => Some(value),
                Outcome::Undefined => None,
            };
            let mut bytes = wire::to_json(
                &DataResponse {
                    result,
                    ..DataResponse::default()
                },
                false,
            );
            bytes.pop();
            (StatusCode::OK, Bytes::from(bytes), None)
        }
        Err(err) => {
            let err_status = err.status();
            let mut bytes = err.body(false);
            bytes.pop();
            let error = match err {
                ApiError::Eval(error) => Some(error),
                _ => None,
            };
            (err_status, Bytes::from(bytes), error)
        }
    }
}

/// Deep-merges `item` into `common`: objects merge key by key, anything
/// else in `item` wins.
fn merge(common: Value, item: Value) -> Value {
    match (common, item) {
        (Value::Object(base), Value::Object(over)) => {
            let mut base = (*base).clone();
            for (key, value) in over.iter() {
                let merged = match base.remove(key) {
                    Some(existing) => merge(existing, value.clone()),
                    None => value.clone(),
                };
                base.insert(key.clone(), merged);
            }
            Value::from(base)
        }
        (_, item) => item,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_input_merges_deeply_and_items_win() {
        let common = Value::from_json_str(r#"{"a": {"x": 1, "y": 2}, "b": 1}"#).unwrap();
        let item = Value::from_json_str(r#"{"a": {"y": 3}, "c": 4}"#).unwrap();
        let merged = merge(common, item);
        assert_eq!(
            merged,
            Value::from_json_str(r#"{"a": {"x": 1, "y": 3}, "b": 1, "c": 4}"#).unwrap()
        );
    }

    #[test]
    fn status_is_spliced_into_items() {
        let mut out = Vec::new();
        with_status(&mut out, b"{}", StatusCode::OK);
        out.push(b' ');
        with_status(&mut out, b"{\"result\":true}", StatusCode::OK);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"http_status_code":"200"} {"http_status_code":"200","result":true}"#
        );
    }
}
