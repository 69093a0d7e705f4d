//! `GET /v1/query?q=<query>` and `POST /v1/query` (`{"query": "...",
//! "input": ...}`): ad-hoc Rego queries, answered as OPA's query API answers
//! them, `{"result": [{"x": 1}, ...]}`, one object of variable bindings per
//! way the query succeeds (no `result` when it fails). The query is
//! compiled and evaluated per request (`policy/eval/query.rs`), on the
//! blocking pool within `--eval-timeout` (`offload.rs`); with the decision
//! log on it is logged as OPA logs it, with `query` in place of `path`.

use std::collections::BTreeMap;
use std::time::Instant;

use hyper::{Method, Request};
use regorus::Value;
use serde::de::{IgnoredAny, MapAccess};
use serde::Serialize;
use serde_json::value::RawValue;

use super::logged::{Answer, Input, Logged};
use super::wire::go_struct::{self, GoStruct};
use super::wire::{self, Params};
use super::{body, json_response, ApiError, AppState, Body, Caller, HttpResponse};
use crate::policy::{DataPath, QueryError};

/// OPA's `QueryResponseV1`.
#[derive(Serialize)]
struct QueryResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<&'a BTreeMap<&'static str, u64>>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    result: &'a [Value],
}

pub(super) async fn v1_query(
    state: &AppState,
    req: Request<Body>,
    params: &Params,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let parse_started = Instant::now();
    let (body, text);
    let (query, input_text) = if req.method() == Method::POST {
        body = body::read(req, &state.limits, "").await?;
        body::check_body_depth(&body, &state.limits, "")?;
        text = wire::go_text(&body);
        let mut de = serde_json::Deserializer::from_str(&text);
        let request = go_struct::read(QueryRequest::default(), &mut de).map_err(|e| {
            ApiError::BadRequest(format!("error(s) occurred while decoding request: {e}"))
        })?;
        (
            request.query.unwrap_or_default(),
            request.input.map(RawValue::get),
        )
    } else {
        // As OPA: the last `q`; a GET query has no input.
        let query = params.all("q").last().cloned();
        (
            query.ok_or_else(|| ApiError::BadRequest("missing parameter 'q'".into()))?,
            None,
        )
    };
    let input = match input_text {
        Some(text) => Some(wire::parse_query_input(text, &state.keys).map_err(|e| {
            ApiError::BadRequest(format!("error(s) occurred while decoding request: {}", e.0))
        })?),
        None => None,
    };
    let parse_ns = parse_started.elapsed().as_nanos() as u64;

    let snapshot = state.snapshots.load();
    let eval_started = Instant::now();
    let evaluated = state
        .evaluation
        .query(&snapshot, query.clone(), input)
        .await;
    let eval_ns = eval_started.elapsed().as_nanos() as u64;
    // The query's own parse and compile are in its evaluation time.
    let mut timers = BTreeMap::from([
        ("timer_rego_query_eval_ns", eval_ns),
        (
            "timer_server_handler_ns",
            caller.started.elapsed().as_nanos() as u64,
        ),
    ]);
    if input_text.is_some() {
        timers.insert("timer_rego_input_parse_ns", parse_ns);
    }
    let root = DataPath::parse("");
    let logged = Logged {
        state,
        snapshot: &snapshot,
        path: &root,
        query: &query,
        caller,
        input: input_text.map_or(Input::None, Input::Raw),
        batch: None,
    };
    let results = match evaluated {
        Ok(results) => results,
        Err(err) => {
            if let QueryError::Eval(err) = &err {
                logged.write(Answer::None, Some(err), Some(&timers)).await;
            }
            return Err(err.into());
        }
    };
    let response = QueryResponse {
        metrics: (params.metrics || params.instrument).then_some(&timers),
        result: &results,
    };
    let bytes = wire::to_json(&response, params.pretty);
    logged
        .write(Answer::Wrapped(&bytes), None, Some(&timers))
        .await;
    Ok(json_response(bytes, false))
}

/// OPA's `QueryRequestV1`, read as Go reads it (`wire::go_struct`).
#[derive(Default)]
struct QueryRequest<'a> {
    query: Option<String>,
    input: Option<&'a RawValue>,
}

impl<'de> GoStruct<'de> for QueryRequest<'de> {
    const FIELDS: &'static [&'static str] = &["query", "input"];

    fn field<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<(), A::Error> {
        match name {
            // A Go string: `null` leaves it as it was.
            "query" => {
                if let Some(query) = map.next_value()? {
                    self.query = Some(query);
                }
            }
            "input" => self.input = map.next_value()?,
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}
