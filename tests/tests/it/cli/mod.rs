//! The `cvops` command as users run it: a child process, its exit codes, its output.

mod common;
mod demo_cli;
mod durability_cli;
mod serve_hostile;
mod train_cli;
mod up_cli;
mod validate_cli;
