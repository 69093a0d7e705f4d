//! Where a decision is evaluated, so that a slow one cannot stall the
//! server. Every decision starts on the request's own worker thread, where
//! nearly all of them finish in microseconds (a hop to another thread would
//! cost as much as the decision), under a small time budget. A decision
//! that overruns it is evaluated again, from the start, on tokio's blocking
//! pool, where it may take up to `--eval-timeout`; at most one per core runs
//! there at a time (large batches take their turns too), and the others
//! wait for a turn without holding a thread. The workers stay free for the
//! requests behind it: `/health`, and every quick decision.
//!
//! regorus cannot be interrupted from outside, so Regent cannot stop an
//! evaluation when its client goes away, as OPA does; the time limit bounds
//! what such an evaluation costs instead. A client that leaves while its
//! decision waits for a turn costs nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use regorus::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::policy::{DataPath, EvalError, EvalErrorCode, EvalOptions, Outcome, Snapshot};

/// How long a decision may run on a request worker before it is moved.
/// The default policies' decisions take about ten microseconds, the slowest
/// a few hundred; the rest of the budget leaves room for the scheduler,
/// which can take the CPU from a worker for a few milliseconds on a busy
/// machine (the budget is wall-clock time), so that a quick decision is
/// rarely evaluated twice.
pub const INLINE_BUDGET: Duration = Duration::from_millis(5);

/// The evaluation policy of a server: its time limit, and the turns on the
/// blocking pool. Cheap to clone.
#[derive(Clone)]
pub struct Evaluation {
    /// `--eval-timeout`; `None`: no limit.
    timeout: Option<Duration>,
    turns: Arc<Semaphore>,
    slow: IntCounter,
    timed_out: IntCounter,
}

impl Evaluation {
    pub fn new(timeout: Option<Duration>, metrics: &Metrics) -> Evaluation {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Evaluation {
            timeout,
            turns: Arc::new(Semaphore::new(cores)),
            slow: metrics.slow_decisions.clone(),
            timed_out: metrics.timed_out_decisions.clone(),
        }
    }

    /// Evaluates a decision from a request worker: here under the inline
    /// budget, else again on the blocking pool under the time limit.
    pub async fn evaluate(
        &self,
        snapshot: &Arc<Snapshot>,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        let budget = self.timeout.map_or(INLINE_BUDGET, |t| t.min(INLINE_BUDGET));
        let started = Instant::now();
        let inline = EvalOptions {
            time_limit: Some(budget),
            ..options
        };
        // `Value` clones share their contents: keeping one for a second
        // attempt costs a reference count.
        match snapshot.evaluate(path, input.clone(), inline) {
            Err(err) if err.is_time_limit() => {}
            answer => return answer,
        }
        let spent = started.elapsed();
        if self.timeout.is_some_and(|t| t <= budget) {
            return Err(self.over_time());
        }
        let turn = self.turn().await?;
        self.slow.inc();
        let this = self.clone();
        let snapshot = Arc::clone(snapshot);
        let path = path.clone();
        let rest = self.timeout.map(|t| t.saturating_sub(spent));
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            this.evaluate_within(&snapshot, &path, input, options, rest)
        })
        .await
        .map_err(|err| internal(&format!("evaluation task failed: {err}")))?
    }

    /// A turn on the blocking pool: held while evaluating there.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, EvalError> {
        Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .map_err(|_| internal("no evaluation turns left"))
    }

    /// Evaluates a decision on a thread that may block (a batch's chunk on
    /// the blocking pool, holding a [`Self::turn`]), under the time limit.
    pub fn evaluate_blocking(
        &self,
        snapshot: &Snapshot,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        self.evaluate_within(snapshot, path, input, options, self.timeout)
    }

    fn evaluate_within(
        &self,
        snapshot: &Snapshot,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
        limit: Option<Duration>,
    ) -> Result<Outcome, EvalError> {
        let options = EvalOptions {
            time_limit: limit,
            ..options
        };
        snapshot
            .evaluate(path, input, options)
            .map_err(|err| match err.is_time_limit() {
                true => self.over_time(),
                false => err,
            })
    }

    /// The error of a decision stopped by `--eval-timeout`.
    fn over_time(&self) -> EvalError {
        self.timed_out.inc();
        let limit = self.timeout.unwrap_or_default();
        EvalError {
            code: EvalErrorCode::Cancel,
            message: format!(
                "query evaluation exceeded its time limit of {limit:?} (--eval-timeout)"
            ),
            location: None,
        }
    }
}

fn internal(message: &str) -> EvalError {
    EvalError {
        code: EvalErrorCode::Internal,
        message: message.to_string(),
        location: None,
    }
}
