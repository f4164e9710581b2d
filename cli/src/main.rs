//! `cvops`: everything lives in the library, [`cvops::main`] included (the tests package builds
//! the same command from it).

fn main() -> std::process::ExitCode {
    cvops::main()
}
