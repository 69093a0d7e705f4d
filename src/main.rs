//! The `regent` binary: parse the command line, set up logging, run. Errors
//! are printed with their whole chain and exit non-zero; panics are logged
//! as log lines once logging is set up.

use std::process::ExitCode;

use clap::Parser;
use regent::cli::{Cli, Command};
use regent::config::RunConfig;

/// jemalloc rather than glibc's malloc: with 100k cached decisions the daemon
/// holds 4-11 MiB less (glibc kept ~4.6 MiB of freed memory in its arenas, and
/// its chunk headers add up over the cache's small allocations), and decisions
/// over HTTP are ~4-6% faster (BENCHMARKS.md). The library and its benches
/// keep the system allocator; this is the daemon's choice. Its background
/// thread is on (the `background_threads` feature): it returns freed pages
/// to the system on time. Without it an arena returns them only when its own
/// threads allocate again, and a thread that goes idle after heavy work
/// (building a snapshot on a reload, say) keeps that work's garbage. It was
/// measured on a thread that compiled programs in the background, which
/// Regent no longer has: 3-5 MiB of RSS on the default policies.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    quiet_library_backtraces();
    log_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Build(args) => regent::bundle::build_cmd::run(&args),
        Command::GenTests(args) => regent::testgen::run(&args),
        Command::Test(args) => return exit_status(regent::rego_test::run(&args)),
        Command::Eval(args) => return exit_status(regent::eval_cmd::run(&args)),
        Command::Check(args) => return exit_status(regent::check_cmd::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A panic (regorus has caught ones during evaluation, which become a
/// request's 500) is logged as one log line when the daemon logs, not as
/// raw text among its JSON lines; with a backtrace when `RUST_BACKTRACE`
/// asks for one. Before logging is set up, and in the command-line tools,
/// Rust's own report.
fn log_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tracing::dispatcher::has_been_set() {
            return report(info);
        }
        // `Backtrace::capture` would read `RUST_LIB_BACKTRACE`, which
        // `quiet_library_backtraces` turns off: panics follow
        // `RUST_BACKTRACE` alone, as Rust's own report does.
        let wanted = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
        if wanted {
            let backtrace = std::backtrace::Backtrace::force_capture();
            tracing::error!(%backtrace, "{info}")
        } else {
            tracing::error!("{info}")
        }
    }));
}

/// regorus's parser builds `anyhow` errors while it backtracks; with
/// `RUST_BACKTRACE=1` in the environment each one captures a backtrace, which
/// makes loading large test modules ~10x slower. Library backtraces are off
/// unless `RUST_LIB_BACKTRACE` asks for them (panics still honour
/// `RUST_BACKTRACE`). Runs first in `main`, before any thread exists.
#[allow(clippy::disallowed_methods)]
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Commands that can fail without an error (failing tests, `--fail`) exit 1.
fn exit_status(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: regent::cli::RunArgs) -> anyhow::Result<()> {
    let config = RunConfig::from_args(args)?;
    regent::logging::init(
        config.log_level,
        config.log_format,
        config.log_timestamps.clone(),
    );
    // regorus evaluates recursively. Rule chains and expressions are
    // bounded at load (1000 levels each, measured to fit 2 MiB in a debug
    // build), but a query at its limit can read a rule at its own: 8 MiB of
    // stack (address space; only the pages touched take memory) for every
    // worker and blocking thread leaves room for both.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?;
    let result = runtime.block_on(regent::run::run(config, regent::run::shutdown_signal()));
    // The drain is over: an evaluation still running on the blocking pool
    // answers a request that is gone, and must not hold the exit until
    // `--eval-timeout` (dropping a runtime waits for its blocking tasks).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}
