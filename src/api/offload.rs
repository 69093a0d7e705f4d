//! Where a decision is evaluated, so that a slow one cannot stall the
//! server. Every decision starts on the request's own worker thread, where
//! nearly all of them finish in microseconds (a hop to another thread would
//! cost as much as the decision), under a small time budget. A decision
//! that overruns it is evaluated again, from the start, on tokio's blocking
//! pool; at most one per core runs there at a time (large batches take
//! their turns too), and the others wait for a turn without holding a
//! thread. The workers stay free for the requests behind it: `/health`,
//! and every quick decision. A decision, or a whole batch, is answered
//! within `--eval-timeout` of its start, the wait for a turn included.
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
use crate::policy::{
    DataPath, EvalError, EvalErrorCode, EvalOptions, Outcome, QueryError, Snapshot,
};

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
    /// Ad-hoc queries' own turn (one at a time): an operator's queries never
    /// hold the turns slow decisions need.
    query_turn: Arc<Semaphore>,
    slow: IntCounter,
    timed_out: IntCounter,
}

impl Evaluation {
    pub fn new(timeout: Option<Duration>, metrics: &Metrics) -> Evaluation {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Evaluation {
            timeout,
            turns: Arc::new(Semaphore::new(cores)),
            query_turn: Arc::new(Semaphore::new(1)),
            slow: metrics.slow_decisions.clone(),
            timed_out: metrics.timed_out_decisions.clone(),
        }
    }

    /// When a decision (or a batch) starting now must be answered by.
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Evaluates a decision from a request worker: here under the inline
    /// budget, else again on the blocking pool, all within `--eval-timeout`.
    pub async fn evaluate(
        &self,
        snapshot: &Arc<Snapshot>,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
    ) -> Result<Outcome, EvalError> {
        self.evaluate_by(snapshot, path, input, options, self.deadline())
            .await
    }

    /// [`Self::evaluate`], answered by `deadline` (a batch's, for its items).
    pub async fn evaluate_by(
        &self,
        snapshot: &Arc<Snapshot>,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
        deadline: Option<Instant>,
    ) -> Result<Outcome, EvalError> {
        let left = self.left(deadline)?;
        let budget = left.map_or(INLINE_BUDGET, |t| t.min(INLINE_BUDGET));
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
        if left.is_some_and(|t| t <= budget) {
            return Err(self.over_time());
        }
        let Some(turn) = self.turn_by(deadline).await? else {
            return Err(self.over_time());
        };
        self.slow.inc();
        let this = self.clone();
        let snapshot = Arc::clone(snapshot);
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            this.evaluate_blocking(&snapshot, &path, input, options, deadline)
        })
        .await
        .map_err(|err| internal(&format!("evaluation task failed: {err}")))?
    }

    /// Evaluates an ad-hoc query (`/v1/query`): on the blocking pool, one
    /// query at a time (not in the decisions' turns), and within
    /// `--eval-timeout`, the wait for its turn included. A query is compiled
    /// per request, and its author may have written anything: it never runs
    /// on a request worker.
    pub async fn query(
        &self,
        snapshot: &Arc<Snapshot>,
        text: String,
        input: Option<Value>,
    ) -> Result<Vec<Value>, QueryError> {
        let deadline = self.deadline();
        let turn = acquire(&self.query_turn, deadline).await;
        let Some(turn) = turn.map_err(QueryError::Eval)? else {
            return Err(QueryError::Eval(self.over_time()));
        };
        let this = self.clone();
        let snapshot = Arc::clone(snapshot);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            this.within(deadline, EvalOptions::default(), |options| {
                snapshot.evaluator().query(&text, input, options)
            })
        })
        .await
        .map_err(|err| QueryError::Eval(internal(&format!("query task failed: {err}"))))?
    }

    /// A turn on the blocking pool, held while evaluating there; `None` when
    /// `deadline` passes first (the wait counts against it, so that slow
    /// decisions do not pile up beyond it).
    pub async fn turn_by(
        &self,
        deadline: Option<Instant>,
    ) -> Result<Option<OwnedSemaphorePermit>, EvalError> {
        acquire(&self.turns, deadline).await
    }

    /// Evaluates a decision on a thread that may block (the blocking pool,
    /// holding a [`Self::turn_by`]), answered by `deadline`.
    pub fn evaluate_blocking(
        &self,
        snapshot: &Snapshot,
        path: &DataPath,
        input: Option<Value>,
        options: EvalOptions,
        deadline: Option<Instant>,
    ) -> Result<Outcome, EvalError> {
        self.within(deadline, options, |options| {
            snapshot.evaluate(path, input, options)
        })
    }

    /// Runs `run` with the time left before `deadline` as its limit; its
    /// time-limit error is then `--eval-timeout`'s.
    fn within<T, E: From<EvalError> + TimeLimited>(
        &self,
        deadline: Option<Instant>,
        options: EvalOptions,
        run: impl FnOnce(EvalOptions) -> Result<T, E>,
    ) -> Result<T, E> {
        let options = EvalOptions {
            time_limit: self.left(deadline)?,
            ..options
        };
        run(options).map_err(|err| match err.is_time_limit() {
            true => self.over_time().into(),
            false => err,
        })
    }

    /// The time left before `deadline`; the time-limit error once it passed.
    fn left(&self, deadline: Option<Instant>) -> Result<Option<Duration>, EvalError> {
        match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(left) if left.is_zero() => Err(self.over_time()),
            left => Ok(left),
        }
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

/// A turn from `turns`, or `None` when `deadline` passes first.
async fn acquire(
    turns: &Arc<Semaphore>,
    deadline: Option<Instant>,
) -> Result<Option<OwnedSemaphorePermit>, EvalError> {
    let turn = Arc::clone(turns).acquire_owned();
    let turn = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.into(), turn).await {
            Ok(turn) => turn,
            Err(_) => return Ok(None),
        },
        None => turn.await,
    };
    turn.map(Some)
        .map_err(|_| internal("no evaluation turns left"))
}

/// An evaluation's error, which may be its time limit's.
trait TimeLimited {
    fn is_time_limit(&self) -> bool;
}

impl TimeLimited for EvalError {
    fn is_time_limit(&self) -> bool {
        EvalError::is_time_limit(self)
    }
}

impl TimeLimited for QueryError {
    fn is_time_limit(&self) -> bool {
        matches!(self, QueryError::Eval(err) if err.is_time_limit())
    }
}

fn internal(message: &str) -> EvalError {
    EvalError {
        code: EvalErrorCode::Internal,
        message: message.to_string(),
        location: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Module, Sources};

    /// `input.n` squared iterations.
    fn snapshot() -> Arc<Snapshot> {
        let sources = Sources {
            modules: vec![Module {
                id: "slow.rego".into(),
                text: "package slow\nimport rego.v1\n\
                       n := count([1 | some i in numbers.range(1, input.n); some j in numbers.range(1, input.n)])\n"
                    .into(),
            }],
            ..Sources::default()
        };
        Arc::new(Snapshot::build(sources).unwrap())
    }

    fn input(n: u64) -> Option<Value> {
        Some(Value::from_json_str(&format!(r#"{{"n": {n}}}"#)).unwrap())
    }

    #[tokio::test]
    async fn a_slow_decision_is_answered_off_the_worker_without_a_limit() {
        let metrics = Metrics::new();
        let evaluation = Evaluation::new(None, &metrics);
        let path = DataPath::parse("slow/n");
        let answer = evaluation
            .evaluate(&snapshot(), &path, input(600), EvalOptions::default())
            .await;
        assert_eq!(answer, Ok(Outcome::Defined(Value::from(360_000u64))));
        assert_eq!(metrics.slow_decisions.get(), 1);
        assert_eq!(metrics.timed_out_decisions.get(), 0);
    }

    /// A limit within the inline budget: the inline attempt is the whole
    /// allowance, and nothing moves to the blocking pool.
    #[tokio::test]
    async fn a_limit_shorter_than_the_budget_stops_the_decision_inline() {
        let metrics = Metrics::new();
        let evaluation = Evaluation::new(Some(Duration::from_millis(2)), &metrics);
        let path = DataPath::parse("slow/n");
        let err = evaluation
            .evaluate(&snapshot(), &path, input(100_000), EvalOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, EvalErrorCode::Cancel);
        assert_eq!(
            err.message,
            "query evaluation exceeded its time limit of 2ms (--eval-timeout)"
        );
        assert_eq!(metrics.slow_decisions.get(), 0);
        assert_eq!(metrics.timed_out_decisions.get(), 1);
        // A quick one under the same limit is answered.
        let answer = evaluation
            .evaluate(&snapshot(), &path, input(3), EvalOptions::default())
            .await;
        assert_eq!(answer, Ok(Outcome::Defined(Value::from(9u64))));
    }

    /// A deadline already past: the error, without evaluating.
    #[tokio::test]
    async fn a_passed_deadline_is_the_time_limit_error() {
        let metrics = Metrics::new();
        let evaluation = Evaluation::new(Some(Duration::from_secs(1)), &metrics);
        let past = Some(Instant::now() - Duration::from_millis(1));
        let err = evaluation
            .evaluate_by(
                &snapshot(),
                &DataPath::parse("slow/n"),
                input(3),
                EvalOptions::default(),
                past,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, EvalErrorCode::Cancel);
    }
}
