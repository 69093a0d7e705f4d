//! `regent test` (OPA's `opa test`): discovers `test_*` rules, runs them on
//! every core, and reports like OPA (`PASS: N/M`, FAIL/ERROR lines with
//! `file:line`, or `--format json`). Exit status 1 on any failure or error.
//!
//! Modules are parsed once. Tests of the common `expr with input as {...}`
//! shape run as direct evaluations against the policies alone (see
//! `discover.rs`); the rest run as written against every module.

mod discover;
mod report;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use regorus::unstable::Module;
use regorus::{Engine, Source, Value};

use crate::cli::TestArgs;
use crate::policy::{Diagnostic, EvalOptions, Evaluator, Outcome, Sources};
pub use discover::{Plan, TestCase};

/// What happened to one test.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    Error(String),
    Skip,
}

#[derive(Clone, Debug)]
pub struct TestResult {
    pub case: TestCase,
    pub verdict: Verdict,
    pub duration: Duration,
}

/// Runs `regent test`; returns whether every test passed.
pub fn run(args: &TestArgs) -> Result<bool> {
    let filter = args
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid `--run` expression")?;
    let suite = Suite::load(&args.paths)?;
    let cases: Vec<TestCase> = suite
        .cases
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|re| re.is_match(&c.full_name())))
        .cloned()
        .collect();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let results = suite.run(cases, args.timeout, threads)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        crate::cli::OutputFormat::Json => report::json(&mut out, &results)?,
        crate::cli::OutputFormat::Pretty => report::text(&mut out, &results, args.verbose)?,
    }
    Ok(results
        .iter()
        .all(|r| matches!(r.verdict, Verdict::Pass | Verdict::Skip)))
}

/// Parsed modules, the planned tests and the evaluator for direct plans.
pub struct Suite {
    sources: Sources,
    pub cases: Vec<TestCase>,
    policies: Evaluator,
    /// Every module, tests included: built only when a test needs it.
    full: OnceLock<Result<Engine, String>>,
}

impl Suite {
    pub fn load<S: AsRef<str>>(paths: &[S]) -> Result<Suite> {
        let sources = Sources::load_paths(paths)?;
        let mut modules: Vec<(String, Module)> = Vec::new();
        for m in &sources.modules {
            let source = Source::from_contents(m.id.clone(), m.text.clone())?;
            let module = crate::policy::nesting::parse_module(&source)
                .map_err(|e| anyhow!("{}", Diagnostic::from_regorus(&e)))?;
            modules.push((m.id.clone(), module));
        }
        let test_packages: Vec<Vec<String>> = modules
            .iter()
            .filter(|(_, m)| discover::is_test_module(m))
            .filter_map(|(_, m)| discover::package_segments(m))
            .collect();
        let mut cases = Vec::new();
        let mut test_module_ids = Vec::new();
        for (id, module) in &modules {
            if discover::is_test_module(module) {
                test_module_ids.push(id.clone());
                cases.extend(discover::tests_of(module, &test_packages));
            }
        }
        let data = sources.data_value()?;
        let policies = Evaluator::build(
            sources
                .modules
                .iter()
                .filter(|m| !test_module_ids.contains(&m.id))
                .map(|m| (m.id.as_str(), m.text.as_str())),
            data,
        )?;
        Ok(Suite {
            sources,
            cases,
            policies,
            full: OnceLock::new(),
        })
    }

    /// Runs `cases` on `threads` threads; results come back in input order.
    pub fn run(
        &self,
        cases: Vec<TestCase>,
        timeout: Duration,
        threads: usize,
    ) -> Result<Vec<TestResult>> {
        let next = AtomicUsize::new(0);
        let threads = threads.clamp(1, cases.len().max(1));
        let mut results: Vec<(usize, TestResult)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(case) = cases.get(i) else { break };
                            done.push((i, self.run_one(case, timeout)));
                        }
                        done
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        if results.len() != cases.len() {
            return Err(anyhow!("a test worker panicked"));
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    fn run_one(&self, case: &TestCase, timeout: Duration) -> TestResult {
        let started = Instant::now();
        let verdict = if case.todo {
            Verdict::Skip
        } else {
            match &case.plan {
                Plan::Direct {
                    path,
                    input,
                    negated,
                } => {
                    let options = EvalOptions {
                        time_limit: Some(timeout),
                        ..EvalOptions::default()
                    };
                    match self.policies.evaluate(path, Some(input.clone()), options) {
                        Ok(outcome) => {
                            let truthy = matches!(outcome, Outcome::Defined(ref v) if *v != Value::Bool(false));
                            if truthy != *negated {
                                Verdict::Pass
                            } else {
                                Verdict::Fail
                            }
                        }
                        Err(err) => Verdict::Error(err.to_string()),
                    }
                }
                Plan::General => self.run_general(case, timeout),
            }
        };
        TestResult {
            case: case.clone(),
            verdict,
            duration: started.elapsed(),
        }
    }

    fn run_general(&self, case: &TestCase, timeout: Duration) -> Verdict {
        let full = self
            .full
            .get_or_init(|| self.build_full().map_err(|e| format!("{e:#}")));
        let mut engine = match full {
            Ok(engine) => engine.clone(),
            Err(err) => return Verdict::Error(err.clone()),
        };
        engine.set_execution_timer_config(crate::policy::eval::time_limit(timeout));
        match engine.eval_rule(case.full_name()) {
            Ok(Value::Bool(true)) => Verdict::Pass,
            Ok(_) => Verdict::Fail,
            Err(err) => Verdict::Error(Diagnostic::from_regorus(&err).to_string()),
        }
    }

    fn build_full(&self) -> Result<Engine> {
        let mut engine = self.sources.interpreter()?;
        // Analyse once here, not in every clone.
        engine.set_input(Value::new_object());
        engine
            .eval_query("true".to_string(), false)
            .map_err(|e| anyhow!("{}", Diagnostic::from_regorus(&e)))?;
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_input_tests_are_planned_as_direct_evaluations() {
        let dir = std::env::temp_dir().join(format!("regent-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("p.rego"),
            "package p\nimport rego.v1\nallow if input.x == 1\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("p_test.rego"),
            "package p_test\nimport rego.v1\ntest_a if {\n\tdata.p.allow with input as {\"x\": 1}\n}\ntest_b if {\n\tnot data.p.allow with input as {\"x\": 2}\n}\ntest_c if {\n\tx := {\"x\": 1}\n\tdata.p.allow with input as x\n}\n",
        )
        .unwrap();
        let suite = Suite::load(&[dir.to_string_lossy().to_string()]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let plans: Vec<(&str, bool)> = suite
            .cases
            .iter()
            .map(|c| (c.name.as_str(), matches!(c.plan, Plan::Direct { .. })))
            .collect();
        assert_eq!(
            plans,
            [("test_a", true), ("test_b", true), ("test_c", false)]
        );
    }
}
