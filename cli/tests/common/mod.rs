//! `cvops up` as the tests start it: a child process on a free loopback port, without auth.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

pub struct Up {
    pub child: Child,
    pub stdout: BufReader<ChildStdout>,
    /// host:port of the endpoint.
    pub addr: String,
}

impl Up {
    /// Starts `cvops --data-dir DATA up --addr 127.0.0.1:0 --no-auth ARGS` with `envs` and waits for
    /// its banner.
    pub fn start(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cvops"))
            .arg("--data-dir")
            .arg(data)
            .args(["up", "--addr", "127.0.0.1:0", "--no-auth"])
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("endpoint") {
            assert!(stdout.read_line(&mut banner).unwrap() > 0, "cvops up ended before serving: {banner}");
        }
        let addr = banner.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
        Self { child, stdout, addr }
    }

    /// Ctrl-C, as a user would press it: returns whether it exited cleanly, and the rest of its output.
    pub fn interrupt(mut self) -> (bool, String) {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) }, 0);
        let exit = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        (exit.success(), rest)
    }
}
