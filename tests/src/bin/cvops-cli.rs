//! The `cvops` command, built inside the tests package so that its integration tests can start it
//! (`CARGO_BIN_EXE_cvops-cli`): the same `main` as `cli/src/main.rs`.

fn main() -> std::process::ExitCode {
    cvops::main()
}
