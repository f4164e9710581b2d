//! The `cvops` command: arguments and printing over the platform (`cvops-platform`).
//!
//! - [`commands`]: one module per subcommand, each an `Args` struct and a `run`.
//! - [`http`]: a small HTTP/1 client for the demo's requests and the load benchmark.
//! - [`main`]: the whole command, which `src/main.rs` (and the tests' build of it) calls.

pub mod commands;
pub mod http;

use std::process::ExitCode;

use clap::Parser;
use commands::{run, Cli};

/// The `cvops` command: parse, set up logging, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The API key is in `cli` now: take it out of the environment, so that no child process (a
    // local training job) inherits it. Before any other thread starts, as changing the
    // environment requires.
    std::env::remove_var(commands::serve::API_KEY_VAR);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CVOPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
