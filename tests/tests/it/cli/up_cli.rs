//! `cvops up` as a user runs it: files copied into the raw bucket's folder are ingested as S3
//! uploads are, the endpoint answers, and Ctrl-C stops it cleanly.

use super::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

fn images(data: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(common::cvops_exe())
        .arg("--data-dir")
        .arg(data)
        .args(["images", "--dataset", "copied", "--json"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn files_copied_into_the_raw_folder_are_ingested_and_ctrl_c_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = common::Up::start(&data, &["--watch-every", "0.2"], &[]);
    assert_eq!(http_get(&up.addr, "/healthz").0, 200);

    // As `cp` into the folder would: three digits and a file that is no image.
    let target = data.join("buckets/raw/datasets/copied/train/7");
    std::fs::create_dir_all(&target).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits/train/7");
    let mut names: Vec<_> = std::fs::read_dir(&source).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names.iter().take(3) {
        std::fs::copy(source.join(name), target.join(name)).unwrap();
    }
    std::fs::write(target.join("notes.png"), "not an image").unwrap();

    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        seen = images(&data);
        if seen.len() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = |s: &str| seen.iter().filter(|r| r["status"] == s).count();
    assert_eq!((status("accepted"), status("rejected")), (3, 1), "{seen:#?}");

    // Ctrl-C: a clean stop, with its goodbye.
    let (clean, rest) = up.interrupt();
    assert!(clean, "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
}
