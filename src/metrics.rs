//! Prometheus metrics: one registry per server (no global registry), the
//! metric handles the request path increments, and the text exposition that
//! `GET /metrics` serves. Gauges that mirror other state (cache usage) are
//! refreshed at scrape time.

use hyper::{Method, StatusCode};
use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::cache::DecisionCache;

/// The metric handles; cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
    indexed_copies: IntGauge,
    indexed_copies_planned: IntGauge,
    /// Reload and activation outcomes, by source and result.
    pub reloads: IntCounterVec,
    /// Decisions that overran the inline budget (`api/offload.rs`).
    pub slow_decisions: IntCounter,
    /// Decisions stopped by `--eval-timeout`.
    pub timed_out_decisions: IntCounter,
    /// OPA's `http_request_duration_seconds`, by `code`, `handler` and
    /// `method`; see [`Self::observe_request`].
    http_durations: HistogramVec,
    /// Its series for answers with status 200, by handler and method (in
    /// [`METHODS`]'s order), each made when first observed: the request
    /// path then skips hashing its labels.
    ok_durations: Arc<[[OnceLock<Histogram>; METHODS.len()]; Handler::COUNT]>,
}

/// A method as Go's `promhttp` labels it: the standard ones in lower case,
/// any other `unknown` (a client cannot add series by making up methods).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        Method::CONNECT => "connect",
        Method::TRACE => "trace",
        _ => "unknown",
    }
}

/// The methods with a series in [`Metrics::ok_durations`].
const METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
];

/// The routes of the API, named by OPA's `handler` label of
/// `http_request_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    V1Data,
    V0Data,
    /// `/v1/batch/data` (Regent's; OPA's open-source server has none).
    V1BatchData,
    V1Query,
    V1Policies,
    V1Config,
    V1Status,
    /// `POST /`.
    Index,
    Health,
    /// A method a route does not take (405).
    Catchall,
}

impl Handler {
    /// How many there are: `Catchall` is the last.
    const COUNT: usize = Handler::Catchall as usize + 1;

    #[cfg(test)]
    const ALL: [Handler; Handler::COUNT] = [
        Handler::V1Data,
        Handler::V0Data,
        Handler::V1BatchData,
        Handler::V1Query,
        Handler::V1Policies,
        Handler::V1Config,
        Handler::V1Status,
        Handler::Index,
        Handler::Health,
        Handler::Catchall,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Handler::V1Data => "v1/data",
            Handler::V0Data => "v0/data",
            Handler::V1BatchData => "v1/batch/data",
            Handler::V1Query => "v1/query",
            Handler::V1Policies => "v1/policies",
            Handler::V1Config => "v1/config",
            Handler::V1Status => "v1/status",
            Handler::Index => "index",
            Handler::Health => "health",
            Handler::Catchall => "catchall",
        }
    }
}

/// OPA's buckets for `http_request_duration_seconds`: 1 us to 1 s.
const HTTP_BUCKETS: [f64; 10] = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 0.01, 0.1, 1.0];

impl Metrics {
    // Every name, help text and label set is a constant that prometheus
    // accepts, and each name is registered once: these cannot fail.
    #[allow(clippy::expect_used)]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let reloads = IntCounterVec::new(
            Opts::new(
                "regent_policy_reloads_total",
                "Attempts to activate a new policy snapshot, by source and result.",
            ),
            &["source", "result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(reloads.clone()))
            .expect("unique metric");
        let http_durations = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "A histogram of duration for requests.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["code", "handler", "method"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_durations.clone()))
            .expect("unique metric");
        Metrics {
            http_durations,
            ok_durations: Arc::new(Default::default()),
            cache_hits: counter(
                "regent_decision_cache_hits_total",
                "Decisions answered from the decision cache.",
            ),
            cache_misses: counter(
                "regent_decision_cache_misses_total",
                "Cacheable decisions that were evaluated (not in the cache).",
            ),
            cache_entries: gauge(
                "regent_decision_cache_entries",
                "Entries in the decision cache.",
            ),
            cache_bytes: gauge(
                "regent_decision_cache_weighted_bytes",
                "Weighted size of the decision cache in bytes.",
            ),
            indexed_copies: gauge(
                "regent_indexed_copies",
                "Copies of indexed rules compiled into the active snapshot's fast path and in use.",
            ),
            indexed_copies_planned: gauge(
                "regent_indexed_copies_planned",
                "Copies of indexed rules the active snapshot's rule index plans.",
            ),
            slow_decisions: counter(
                "regent_slow_decisions_total",
                "Decisions that overran the inline budget and were evaluated again on the blocking pool.",
            ),
            timed_out_decisions: counter(
                "regent_decision_timeouts_total",
                "Decisions stopped by the evaluation time limit (--eval-timeout).",
            ),
            reloads,
            registry,
        }
    }

    /// Records one answered request as OPA's handler instrumentation does:
    /// by status code, the route's `handler` label, and the method in lower
    /// case as Go's `promhttp` writes it.
    pub fn observe_request(
        &self,
        handler: Handler,
        method: &Method,
        status: StatusCode,
        elapsed: std::time::Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let slot = METHODS.iter().position(|m| m == method);
        if let (StatusCode::OK, Some(slot)) = (status, slot) {
            self.ok_durations[handler as usize][slot]
                .get_or_init(|| self.series(status, handler, method))
                .observe(seconds);
        } else {
            self.series(status, handler, method).observe(seconds);
        }
    }

    fn series(&self, status: StatusCode, handler: Handler, method: &Method) -> Histogram {
        self.http_durations.with_label_values(&[
            status.as_str(),
            handler.label(),
            method_label(method),
        ])
    }

    /// The text exposition format, with the gauges refreshed first: the
    /// cache's, and the active snapshot's copies of indexed rules (compiled
    /// and in use, planned).
    pub fn render(&self, cache: &DecisionCache, indexed: (usize, usize)) -> Vec<u8> {
        let (copies, planned) = indexed;
        self.indexed_copies
            .set(i64::try_from(copies).unwrap_or(i64::MAX));
        self.indexed_copies_planned
            .set(i64::try_from(planned).unwrap_or(i64::MAX));
        let (entries, bytes) = cache.usage();
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route has its row of 200 series, and a request of another
    /// status or method its own series.
    #[test]
    fn every_handler_has_its_slot() {
        for (i, handler) in Handler::ALL.iter().enumerate() {
            assert_eq!(*handler as usize, i);
        }
        let metrics = Metrics::new();
        let tick = std::time::Duration::from_micros(3);
        metrics.observe_request(Handler::Catchall, &Method::POST, StatusCode::OK, tick);
        metrics.observe_request(Handler::Catchall, &Method::POST, StatusCode::OK, tick);
        metrics.observe_request(Handler::Health, &Method::OPTIONS, StatusCode::OK, tick);
        metrics.observe_request(Handler::V1Data, &Method::POST, StatusCode::NOT_FOUND, tick);
        let made_up = Method::from_bytes(b"FOO123").unwrap();
        metrics.observe_request(
            Handler::Catchall,
            &made_up,
            StatusCode::METHOD_NOT_ALLOWED,
            tick,
        );
        let text =
            String::from_utf8(metrics.render(&DecisionCache::new(Default::default()), (0, 0)))
                .unwrap();
        for series in [
            r#"{code="200",handler="catchall",method="post"} 2"#,
            r#"{code="200",handler="health",method="options"} 1"#,
            r#"{code="404",handler="v1/data",method="post"} 1"#,
            r#"{code="405",handler="catchall",method="unknown"} 1"#,
        ] {
            let line = format!("http_request_duration_seconds_count{series}");
            assert!(text.contains(&line), "{line} not in {text}");
        }
    }
}
