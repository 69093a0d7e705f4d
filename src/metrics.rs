//! Prometheus metrics: one registry per server (no global registry), the
//! metric handles the request path increments, and the text exposition that
//! `GET /metrics` serves. Gauges that mirror other state (cache usage) are
//! refreshed at scrape time.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::cache::DecisionCache;

/// The metric handles; cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    cache_entries: IntGauge,
    cache_bytes: IntGauge,
    /// Reload and activation outcomes, by source and result.
    pub reloads: IntCounterVec,
    /// Decisions that overran the inline budget (`api/offload.rs`).
    pub slow_decisions: IntCounter,
    /// Decisions stopped by `--eval-timeout`.
    pub timed_out_decisions: IntCounter,
}

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
        Metrics {
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

    /// The text exposition format, with cache gauges refreshed first.
    pub fn render(&self, cache: &DecisionCache) -> Vec<u8> {
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
