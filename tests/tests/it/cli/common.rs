//! `cvops up` as the tests start it: a child process on a free loopback port, without auth; and
//! what the tests of hostile input share: a small file that decodes to 800 MB, and a child's peak
//! resident memory.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The `cvops` command under test: the tests package's own `cvops-cli` binary, whose `main` is
/// the CLI's (`cvops::main`), so that this one test binary can run it as a user would.
pub fn cvops_exe() -> &'static str {
    env!("CARGO_BIN_EXE_cvops-cli")
}

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
        let mut child = Command::new(cvops_exe())
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
    /// (A test that fails before it leaves the process to [`Drop`], which kills it.)
    pub fn interrupt(mut self) -> (bool, String) {
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) }, 0);
        let exit = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        (exit.success(), rest)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // Already ended after `interrupt`; else a failed test leaves no server running behind it.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes a `side` x `side` 16-bit RGBA PNG of zeros row by row: under 1 MB on disk for 9,999 px a
/// side (zeros deflate about a thousandfold), 800 MB decoded, under the default pixel limit; the
/// test itself never holds more than a row.
pub fn write_zero_rgba16_png(path: &Path, side: u32) {
    use std::io::Write;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, side, side);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().unwrap();
    let mut rows = writer.stream_writer().unwrap();
    let row = vec![0u8; side as usize * 8];
    for _ in 0..side {
        rows.write_all(&row).unwrap();
    }
    rows.finish().unwrap();
}

/// Waits for `child` (once: it must not be waited for otherwise) and returns its exit code and
/// its peak resident memory in MB, from the kernel via wait4.
pub fn wait_with_peak_rss(child: &Child) -> (Option<i32>, f64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; pid is our own child, waited for once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss as f64 / 1024.0) // Linux reports kilobytes
}

/// A small copy of the digits sample set in `dir`: `per_label` images of each label in each split.
pub fn small_digits(dir: &Path, per_label: usize) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits");
    for split in ["train", "val", "test"] {
        for label in 0..10 {
            let (from, to) = (source.join(split).join(label.to_string()), dir.join(split).join(label.to_string()));
            std::fs::create_dir_all(&to).unwrap();
            let mut names: Vec<_> = std::fs::read_dir(&from).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            for name in names.into_iter().take(per_label) {
                std::fs::copy(from.join(&name), to.join(&name)).unwrap();
            }
        }
    }
    dir.to_owned()
}
