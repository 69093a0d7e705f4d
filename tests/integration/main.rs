//! One integration binary: every test drives the real server over HTTP on
//! 127.0.0.1:0 (in-process, or the real binary where signals are involved).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batch;
mod bundle_service;
mod bundles;
mod cache;
mod commands;
mod config_api;
mod data_api;
mod decision_logs;
mod default_policies;
mod default_suite;
mod delta_bundles;
mod differential;
mod errors;
mod h2c;
mod health_policies;
mod log_service;
mod metrics;
mod policy_writes;
mod process;
mod query;
mod random_policies;
mod rule_index;
mod security;
mod slow_decisions;
mod support;
mod unix_socket;
mod watch;
