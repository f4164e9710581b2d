//! `cvops train`, `runs`, `models`, `promote` and `rollback` as a user runs them: the request
//! through the queue, the job as a child process, the card to register-model, the registry.

use super::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn cvops(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(common::cvops_exe()).arg("--data-dir").arg(data_dir).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn train_registers_a_version_and_the_alias_moves_on_promote_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images = common::small_digits(&dir.path().join("images"), 20);
    let upload = cvops(&data, &["upload", images.to_str().unwrap(), "--dataset", "digits"]);
    assert!(upload.status.success(), "{}", text(&upload));

    // A refused request: a clear error, nothing created.
    let refused = cvops(&data, &["train", "--dataset", "digits", "--set", "learning_rate=3"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("learning_rate = 3 is outside"), "{}", text(&refused));
    let unknown = cvops(&data, &["train", "--dataset", "nope"]);
    assert!(!unknown.status.success() && text(&unknown).contains("cvops datasets"), "{}", text(&unknown));

    for _ in 0..2 {
        let trained = cvops(&data, &["train", "--dataset", "digits", "--epochs", "2", "--set", "width=4", "--wait"]);
        let out = text(&trained);
        assert!(trained.status.success(), "{out}");
        assert!(out.contains("epoch   2/2"), "progress per epoch: {out}");
        assert!(out.contains("test accuracy"), "{out}");
    }
    let runs = cvops(&data, &["runs", "--json"]);
    let runs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&runs.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["status"] == "SUCCEEDED"), "{runs:?}");

    // Two versions, neither good enough for the default floor: promote by hand, then roll back.
    let models = |data: &Path| -> Vec<serde_json::Value> {
        let out = cvops(data, &["models", "--json"]);
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let versions = models(&data);
    assert_eq!(versions.iter().map(|v| v["version"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    assert!(versions.iter().all(|v| v["stage"] == "candidate" && v["lineage"]["snapshot"].is_string()), "{versions:?}");
    assert!(cvops(&data, &["promote", "digits", "1"]).status.success());
    assert!(cvops(&data, &["promote", "digits", "2"]).status.success());
    let stages: Vec<_> = models(&data).iter().map(|v| v["stage"].as_str().unwrap().to_owned()).collect();
    assert_eq!(stages, ["archived", "production"]);
    let back = cvops(&data, &["rollback", "digits"]);
    assert!(text(&back).contains("back at v1"), "{}", text(&back));
    assert!(!cvops(&data, &["promote", "digits", "9"]).status.success(), "no such version");

    // `cvops serve` answers with the production version, and only with the key.
    let refused = cvops(&data, &["serve"]);
    assert!(!refused.status.success() && text(&refused).contains("--no-auth"), "{}", text(&refused));
    let mut server = Command::new(common::cvops_exe())
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--addr", "127.0.0.1:0", "--api-key", "k3y"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let addr = banner.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let digit = std::fs::read(images.join("test/3").read_dir().unwrap().next().unwrap().unwrap().path()).unwrap();
    let (status, _) = http_post(&addr, "/v1/models/digits/predict", None, &digit);
    assert_eq!(status, 401);
    let (status, body) = http_post(&addr, "/v1/models/digits/predict?top_k=2", Some("k3y"), &digit);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((answer["version"].as_u64(), answer["predictions"].as_array().unwrap().len()), (Some(1), 2));
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A minimal HTTP/1.1 POST of a PNG over a plain socket: (status, body).
fn http_post(addr: &str, path: &str, key: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// An inverted PNG of `path`.
fn inverted(path: &Path) -> Vec<u8> {
    let mut grey = image::open(path).unwrap().to_luma8();
    image::imageops::invert(&mut grey);
    let mut png = Vec::new();
    grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png
}

#[test]
fn the_loop_closes_drift_sends_a_request_and_the_retrained_version_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let images = common::small_digits(&dir.path().join("images"), 10);
    assert!(cvops(&data, &["upload", images.to_str().unwrap(), "--dataset", "digits"]).status.success());
    // v1: a deliberately weak model, put in production by hand.
    let trained = cvops(&data, &["train", "--dataset", "digits", "--epochs", "1", "--set", "width=4", "--wait"]);
    assert!(trained.status.success(), "{}", text(&trained));
    assert!(cvops(&data, &["promote", "digits", "1"]).status.success());
    assert!(cvops(&data, &["retraining", "digits", "--cooldown-hours", "24"]).status.success());

    // The platform as one process: small windows, a frequent monitor, any better model promoted.
    let envs = [("CVOPS_MONITOR_MIN_REQUESTS", "50"), ("CVOPS_MONITOR_FLUSH_SECONDS", "1"), ("CVOPS_PROMOTION_FLOOR", "0")];
    let up = common::Up::start(&data, &["--monitor-every", "2"], &envs);
    let addr = up.addr.clone();
    let mut sent = 0;
    for label in 0..10 {
        for entry in std::fs::read_dir(images.join("test").join(label.to_string())).unwrap() {
            let (status, body) = http_post(&addr, "/v1/models/digits/predict", None, &inverted(&entry.unwrap().path()));
            assert_eq!(status, 200, "{body}");
            sent += 1;
        }
    }
    assert!(sent >= 50);

    // The monitor flags the inverted stream, asks for one retraining, and `up` runs it: dispatch,
    // the job, register-model, the gate. v2 ends up in production.
    let started = std::time::Instant::now();
    let promoted = loop {
        let models = cvops(&data, &["models", "--json"]);
        let versions: Vec<serde_json::Value> =
            String::from_utf8_lossy(&models.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if let Some(v2) = versions.iter().find(|v| v["version"] == 2) {
            break v2.clone();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(300), "no v2 after 5 minutes");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let (clean, log) = up.interrupt();
    assert!(clean, "{log}");
    assert!(log.contains("DRIFT"), "{log}");
    assert!(log.contains("retraining requested (drift)"), "{log}");
    assert_eq!(log.matches("retraining requested").count(), 1, "one request, then the cooldown: {log}");
    let runs = cvops(&data, &["runs", "--json"]);
    let runs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&runs.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r["reason"].as_str().is_some_and(|why| why.starts_with("drift: digits v1 drifted"))), "{runs:?}");
    assert!(promoted["gate"]["passed"].as_bool().unwrap(), "{promoted}");
    assert_eq!(promoted["stage"].as_str(), Some("production"), "{promoted}");
}
