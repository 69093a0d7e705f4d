//! The `regent` binary: parse the command line, set up logging, run. Errors
//! are printed with their whole chain and exit non-zero.

use std::process::ExitCode;

use clap::Parser;
use regent::cli::{Cli, Command};
use regent::config::RunConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
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
    regent::logging::init(config.log_level, config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(regent::run::run(config, regent::run::shutdown_signal()))
}
