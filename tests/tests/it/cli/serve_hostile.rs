//! `cvops serve` on hostile clients, as a user runs it: bombs, half-sent requests, more requests
//! than it takes, `--no-auth` where others can reach it, and the API key kept from training jobs.

use super::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn cvops(data_dir: &Path) -> Command {
    let mut command = Command::new(common::cvops_exe());
    command.arg("--data-dir").arg(data_dir);
    command
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A `cvops serve` child, killed when dropped (a failing test leaves no server behind).
struct Server {
    child: Option<Child>,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `cvops serve --addr 127.0.0.1:0 --no-auth` with `envs`, listening at `addr` (from its banner).
fn serve(data: &Path, envs: &[(&str, &str)]) -> Server {
    let mut child = cvops(data)
        .args(["serve", "--addr", "127.0.0.1:0", "--no-auth"])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let addr = banner.split("http://").nth(1).unwrap_or_else(|| panic!("no banner: {banner:?}"));
    Server { addr: addr.split_whitespace().next().unwrap().to_owned(), child: Some(child) }
}

/// One request over a fresh connection: (status, headers, body).
fn request(addr: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = headers.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, headers.to_ascii_lowercase(), body.to_owned())
}

fn get(addr: &str, path: &str) -> (u16, String, String) {
    request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"), b"")
}

fn post_png(addr: &str, path: &str, body: &[u8]) -> (u16, String, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    request(addr, &head, body)
}

/// Uploads a few digits and trains a small model with `envs` set (`cvops train --wait`), watching
/// the training job's process: whether `CVOPS_API_KEY` was in the environment of any job seen.
#[allow(clippy::zombie_processes)] // reaped by waitpid below, after its output is drained
fn train_digits(data: &Path, images: &Path, envs: &[(&str, &str)]) -> (Output, Vec<bool>) {
    let upload = cvops(data).arg("upload").arg(images).args(["--dataset", "digits"]).output().unwrap();
    assert!(upload.status.success(), "{}", text(&upload));
    let child = cvops(data)
        .args(["train", "--dataset", "digits", "--epochs", "1", "--set", "width=4", "--wait"])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut jobs_seen = std::collections::BTreeMap::new();
    let train_pid = child.id();
    let started = Instant::now();
    // Drain its output on threads, so a full pipe never stalls it while the jobs are watched.
    let (mut out, mut err) = (child.stdout.unwrap(), child.stderr.unwrap());
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        out.read_to_end(&mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        err.read_to_end(&mut text).unwrap();
        text
    });
    while !out.is_finished() {
        for pid in children_of(train_pid) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("run-training-job") {
                if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
                    let has_key = environ.split(|b| *b == 0).any(|var| var.starts_with(b"CVOPS_API_KEY="));
                    jobs_seen.insert(pid, has_key);
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(300), "training took over 5 minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: status is plain data; the pid is our own child, waited for once.
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(train_pid as i32, &mut status, 0) }, train_pid as i32);
    let output = Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, jobs_seen.into_values().collect())
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The parent pid is the second field after the parenthesised command name.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(parent)
        })
        .collect()
}

/// The finding: three 16-bit RGBA bombs (under 1 MB each, 800 MB decoded, under ingest's pixel
/// limit) POSTed at once answered 200 with the server at 2.7 GB. Now the endpoint's own limits
/// refuse each from its header, 413 with a code, and the server stays far under 300 MB.
#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_with_peak_rss
fn concurrent_bombs_get_413_from_their_header_and_the_server_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images = common::small_digits(&dir.path().join("images"), 5);
    let (trained, _) = train_digits(&data, &images, &[]);
    assert!(trained.status.success(), "{}", text(&trained));
    let promoted = cvops(&data).args(["promote", "digits", "1"]).output().unwrap();
    assert!(promoted.status.success(), "{}", text(&promoted));
    let bomb_path = dir.path().join("zeros-rgba16.png");
    common::write_zero_rgba16_png(&bomb_path, 9_999);
    let bomb = std::fs::read(&bomb_path).unwrap();

    let mut server = serve(&data, &[]);
    let addr = server.addr.clone();
    let digit = std::fs::read(images.join("test/3").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
    let (status, _, body) = post_png(&addr, "/v1/models/digits/predict", &digit);
    assert_eq!(status, 200, "the model answers: {body}");
    let answers: Vec<(u16, String, String)> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..3).map(|_| scope.spawn(|| post_png(&addr, "/v1/models/digits/predict", &bomb))).collect();
        sent.into_iter().map(|s| s.join().unwrap()).collect()
    });
    // Under the endpoint's 16 megapixels, but 72 MB decoded: over its decode budget of 64 MiB.
    let nine_megapixels = dir.path().join("zeros-rgba16-3000.png");
    common::write_zero_rgba16_png(&nine_megapixels, 3_000);
    let (status, _, body) = post_png(&addr, "/v1/models/digits/predict", &std::fs::read(&nine_megapixels).unwrap());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("image_too_large") && body.contains("decode budget"), "{body}");
    let child = server.child.take().unwrap();
    // SAFETY: a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let (_, peak_mb) = common::wait_with_peak_rss(&child);
    eprintln!("three bombs at once: server peak RSS {peak_mb:.1} MB");
    for (status, _, body) in &answers {
        let answer: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert_eq!(*status, 413, "{body}");
        assert_eq!(
            (answer["error"]["code"].as_str(), answer["error"]["reason"].as_str()),
            (Some("image_too_large"), Some("too_large"))
        );
        assert!(answer["error"]["message"].as_str().unwrap().contains("downscale"), "says what to do: {body}");
    }
    assert!(peak_mb < 300.0, "server peak RSS {peak_mb:.0} MB");
}

/// A client that sends half its headers and stops is closed by the server (after
/// `CVOPS_HEADER_TIMEOUT_SECONDS`, here 1 s), instead of holding a connection open for ever.
#[test]
fn a_half_sent_request_is_closed_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("data"), &[("CVOPS_HEADER_TIMEOUT_SECONDS", "1")]);
    let addr = server.addr.clone();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(format!("POST /v1/models/digits/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Ty").as_bytes()).unwrap();
    half.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = half.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        !matches!(&read, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection was still open after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "closed only after {waited:?}");
    // The server itself is fine.
    assert_eq!(get(&addr, "/healthz").0, 200);
    drop(server);
}

/// More requests in flight than `CVOPS_MAX_CONCURRENCY` get 503 `overloaded` with `Retry-After`
/// at once; `/healthz` still answers; the limit frees as requests end.
#[test]
fn excess_concurrency_gets_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("data"), &[("CVOPS_MAX_CONCURRENCY", "2")]);
    let addr = server.addr.clone();
    // Two requests in flight: their headers are in, their bodies never finish.
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            let head = format!(
                "POST /v1/models/digits/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&[0u8; 10]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (status, headers, body) = get(&addr, "/v1/models");
    assert_eq!(status, 503, "{headers}{body}");
    assert!(headers.contains("retry-after: 1"), "{headers}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["error"]["code"].as_str(), Some("overloaded"), "{body}");
    assert_eq!(get(&addr, "/healthz").0, 200, "health is never refused");
    drop(slow);
    let started = Instant::now();
    while get(&addr, "/v1/models").0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "the permits were never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
}

/// `--no-auth` on an address other machines can reach is refused before anything listens.
#[test]
fn no_auth_on_all_interfaces_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cvops(&dir.path().join("data"))
        .args(["serve", "--addr", "0.0.0.0:0", "--no-auth"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            drop(Server { child: Some(child), addr: String::new() });
            panic!("cvops serve --no-auth on 0.0.0.0 is serving");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("loopback") && text(&out).contains("CVOPS_API_KEY"), "{}", text(&out));
}

/// A local training job is a child process of `cvops`: it gets the Batch job's environment, and
/// not the endpoint's API key.
#[test]
fn training_jobs_do_not_inherit_the_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let images = common::small_digits(&dir.path().join("images"), 3);
    let (trained, jobs) = train_digits(&dir.path().join("data"), &images, &[("CVOPS_API_KEY", "s3cret-from-env")]);
    assert!(trained.status.success(), "{}", text(&trained));
    assert!(!jobs.is_empty(), "no training job was seen");
    assert!(jobs.iter().all(|has_key| !has_key), "a training job had CVOPS_API_KEY in its environment");
}
