//! `cvops validate`: the contract users script against (DESIGN.md), run as a user runs it.

use super::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn cvops() -> Command {
    Command::new(common::cvops_exe())
}

fn bad(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/bad/upload/mixed").join(name)
}

fn digit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits/train/3/0000.png")
}

#[test]
fn json_output_is_one_object_per_file_with_the_contract_fields() {
    let out = cvops().args(["validate", "--json"]).arg(digit()).arg(bad("cut-short.jpg")).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "one invalid file makes the exit status 1");
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let (ok, cut) = (&lines[0], &lines[1]);
    for field in ["path", "valid", "reason", "message", "format", "width", "height", "sha256"] {
        assert!(ok.get(field).is_some() && cut.get(field).is_some(), "field {field} is missing");
    }
    assert_eq!((ok["valid"].as_bool(), ok["reason"].is_null(), ok["message"].is_null()), (Some(true), true, true));
    assert_eq!((ok["format"].as_str(), ok["width"].as_u64(), ok["height"].as_u64()), (Some("png"), Some(28), Some(28)));
    assert_eq!(ok["sha256"].as_str().map(str::len), Some(64));
    assert_eq!((cut["valid"].as_bool(), cut["reason"].as_str()), (Some(false), Some("truncated")));
    assert!(cut["message"].as_str().unwrap().contains("upload it again"));
    assert_eq!(cut["format"].as_str(), Some("jpeg"), "the format is sniffed even when the file is bad");
}

#[test]
fn all_valid_files_exit_zero() {
    let out = cvops().args(["validate"]).arg(digit()).arg(bad("photo.webp")).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("ok")).count(), 2, "{text}");
}

#[test]
fn misuse_exits_two() {
    assert_eq!(cvops().args(["validate"]).output().unwrap().status.code(), Some(2), "no files");
    assert_eq!(cvops().args(["validate", "--no-such-flag", "x"]).output().unwrap().status.code(), Some(2), "a bad flag");
    let missing = cvops().args(["validate", "/nonexistent/file.png"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2), "an unreadable file");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn limits_come_from_flags_and_the_environment() {
    let out = cvops().args(["validate", "--json", "--min-side", "64"]).arg(digit()).output().unwrap();
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["reason"].as_str(), Some("too_small"));
    let out = cvops().args(["validate", "--json"]).arg(digit()).env("CVOPS_MAX_BYTES", "100").output().unwrap();
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["reason"].as_str(), Some("too_large"));
    assert_eq!(line["sha256"].as_str().map(str::len), Some(64), "a file over the byte limit still gets its hash");
}

/// The decompression bomb: 109 KB on disk, 30,000 x 30,000 pixels. Rejected from its header, with
/// the process's peak resident memory (from the kernel, via wait4) far under 300 MB.
#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reports its peak RSS
fn a_decompression_bomb_is_too_large_and_costs_no_memory() {
    let child = cvops().args(["validate", "--json"]).arg(bad("bomb.png")).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; pid is our own child, waited for once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let peak_mb = usage.ru_maxrss as f64 / 1024.0; // Linux reports kilobytes
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut stdout).unwrap();
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["reason"].as_str(), Some("too_large"), "{line}");
    assert_eq!((line["width"].as_u64(), line["height"].as_u64()), (Some(30_000), Some(30_000)));
    assert!(peak_mb < 300.0, "peak RSS {peak_mb:.0} MB");
    eprintln!("bomb: peak RSS {peak_mb:.1} MB");
}

/// A valid PNG, 9,999 x 9,999 16-bit RGBA zeros: under 1 MB on disk and under the pixel limit,
/// but 800 MB decoded. The decode budget refuses it from its header, and validating it stays far
/// under 300 MB peak resident memory (it took 888 MB when only pixels were counted).
#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 in wait_with_peak_rss
fn a_16_bit_rgba_bomb_under_the_pixel_limit_is_too_large_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros-rgba16.png");
    common::write_zero_rgba16_png(&path, 9_999);
    assert!(std::fs::metadata(&path).unwrap().len() < 1_000_000);
    let child = cvops().args(["validate", "--json"]).arg(&path).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let (code, peak_mb) = common::wait_with_peak_rss(&child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut stdout).unwrap();
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("rgba16 bomb: peak RSS {peak_mb:.1} MB, {line}");
    assert_eq!((code, line["reason"].as_str()), (Some(1), Some("too_large")), "{line}");
    assert_eq!((line["width"].as_u64(), line["height"].as_u64()), (Some(9_999), Some(9_999)));
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("decode budget") && message.contains("CVOPS_MAX_DECODED_BYTES"), "{message}");
    assert!(peak_mb < 300.0, "peak RSS {peak_mb:.0} MB");

    // A budget large enough for it is the user's choice, and then it is a valid image.
    let roomy = cvops().args(["validate", "--json", "--max-decoded-bytes", "1000000000"]).arg(&path).output().unwrap();
    let line: Value = serde_json::from_slice(&roomy.stdout).unwrap();
    assert_eq!(line["valid"].as_bool(), Some(true), "{line}");
}
