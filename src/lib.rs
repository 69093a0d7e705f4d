//! Regent: an OPA-compatible authorization decision daemon.
//!
//! - [`policy`]: sources, the immutable compiled snapshot, evaluation.
//! - [`api`]: OPA's REST API over the current snapshot (the request path).
//! - [`bundle`]: OPA bundles: format, signatures, `regent build`, polling.
//! - [`cache`]: the decision cache; [`metrics`]: Prometheus metrics;
//!   [`decision_log`]: OPA's console decision log.
//! - [`server`]: listeners, connections, graceful shutdown; [`tls`]: HTTPS
//!   and client certificates for the listeners.
//! - [`cli`], [`config`], [`logging`]: the command line and its checked form.
//! - [`run`]: the `regent run` command, tying them together.
//! - [`walk`]: directory walks shared by policy and bundle loading;
//!   [`go_json`]: JSON text as Go reads it (request bodies, data files).

pub mod api;
pub mod bundle;
pub mod cache;
pub mod check_cmd;
pub mod cli;
pub mod config;
pub mod decision_log;
pub mod eval_cmd;
pub mod go_json;
pub mod logging;
pub mod metrics;
pub mod opa_config;
pub mod policy;
pub mod rego_test;
pub mod run;
pub mod server;
pub mod testgen;
pub mod tls;
pub mod walk;
