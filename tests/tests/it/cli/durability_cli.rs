//! Local durability (issue 13, "Trust"): `cvops upload` killed with SIGKILL in the middle of a
//! thousand files, then run again, loses nothing and leaves a consistent catalog.
//!
//! What a kill can interrupt, and why a second `cvops upload` of the same folder recovers from
//! each without a separate repair step:
//!
//! - a put: the object store writes a temporary file and renames it into place, so the raw
//!   bucket holds the whole file or nothing of it (at most a temporary file is left, swept later);
//! - the ingest of an object already put: its raw object waits without a catalog record. Upload
//!   puts every file again, and a put is a new event (a newer sequencer) for the key, so the
//!   waiting object is ingested then; the records of files ingested before the kill are
//!   re-applied by the same rule, which is idempotent per key (one record per key, index items
//!   rewritten, the newest event wins);
//! - a rejection between its steps (quarantine copy, sidecar, record, removal of the original):
//!   the next event for the key quarantines the bytes again and removes the original.
//!
//! So the decision is: the recovery is "run the same upload again", as with `aws s3 cp
//! --recursive` after an interrupted copy; no replay of the raw bucket on open is needed for
//! `cvops upload`. This test checks both halves: right after the kill, every catalog record
//! points at an object with the recorded bytes and every raw object is a whole copy of its source
//! file (recorded, or waiting to be ingested); after the second run every file is recorded exactly
//! once, nothing waits, and the counts agree with `cvops datasets` and `cvops health`.

use super::common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cvops_core::catalog::{ImageRecord, ImageStatus};
use cvops_core::clock::SystemClock;
use image::{ImageFormat, Rgb, RgbImage};
use serde_json::Value;
use sha2::{Digest, Sha256};

const DATASET: &str = "durable";
const VALID: usize = 1000;
/// Every this-many-th file is a truncated PNG besides the valid ones, so that rejections (the
/// ingest path with the most steps) are interrupted too.
const BROKEN_EVERY: usize = 25;

fn cvops(data: &Path) -> Command {
    let mut command = Command::new(common::cvops_exe());
    command.arg("--data-dir").arg(data);
    command
}

/// A source file: its key in the raw bucket and its bytes.
struct Source {
    key: String,
    bytes: Vec<u8>,
    valid: bool,
}

/// Writes `VALID` distinct 32x32 PNGs (noise from a per-file seed) and a truncated PNG after every
/// `BROKEN_EVERY` of them, as `<label>/<n>.png` under `dir`.
fn write_sources(dir: &Path) -> Vec<Source> {
    let mut sources = Vec::new();
    let png = |n: usize| {
        let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let image = RgbImage::from_fn(32, 32, |_, _| {
            // xorshift64*: cheap, and different for every file.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            Rgb([v[0], v[1], v[2]])
        });
        let mut bytes = std::io::Cursor::new(Vec::new());
        image.write_to(&mut bytes, ImageFormat::Png).unwrap();
        bytes.into_inner()
    };
    let mut n = 0;
    for i in 0..VALID {
        let mut add = |bytes: Vec<u8>, valid: bool| {
            let relative = format!("c{}/{n:05}.png", n % 10);
            let path = dir.join(&relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            sources.push(Source { key: format!("datasets/{DATASET}/{relative}"), bytes, valid });
            n += 1;
        };
        add(png(i), true);
        if i % BROKEN_EVERY == BROKEN_EVERY - 1 {
            let whole = png(VALID + i);
            add(whole[..whole.len() / 2].to_vec(), false);
        }
    }
    sources
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The files under a bucket's folder, by key.
fn bucket_files(data: &Path, bucket: &str) -> BTreeMap<String, PathBuf> {
    let root = data.join("buckets").join(bucket);
    walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(&root).unwrap().to_str().unwrap().to_owned(), e.into_path()))
        .collect()
}

fn records(data: &Path) -> Vec<ImageRecord> {
    let out = cvops(data).args(["images", "--dataset", DATASET, "--json"]).output().unwrap();
    assert!(out.status.success(), "cvops images: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What the data directory holds, checked for consistency.
#[derive(Debug)]
struct State {
    records: Vec<ImageRecord>,
    /// Raw objects with no record: put, not yet ingested.
    waiting: usize,
    /// Raw originals of rejected files not removed yet (a kill between the record and the removal).
    rejected_left_in_raw: usize,
    failures_queued: u64,
}

impl State {
    fn count(&self, status: ImageStatus) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }
}

/// Checks what must hold at any moment, even right after a SIGKILL: the database passes SQLite's
/// integrity check; one record per key, each for a source file; an accepted record's raw object
/// holds exactly the recorded bytes; a rejected one's quarantined copy and its sidecar exist and
/// hold the source's bytes; every raw object is a whole copy of its source file.
fn check(data: &Path, sources: &[Source]) -> State {
    let db = cvops_local::open_database(&data.join("cvops.sqlite")).unwrap();
    assert_eq!(cvops_local::integrity_check(&db).unwrap(), Ok(()), "SQLite's integrity check");
    let queue = cvops_local::SqliteQueue::open(db, Arc::new(SystemClock)).unwrap();
    let failures_queued = queue.depth("ingest-failures").unwrap();
    drop(queue);

    let by_key: BTreeMap<&str, &Source> = sources.iter().map(|s| (s.key.as_str(), s)).collect();
    let records = records(data);
    let raw = bucket_files(data, "raw");
    let store = bucket_files(data, "store");
    let mut seen = BTreeSet::new();
    let mut rejected_left_in_raw = 0;
    for record in &records {
        assert!(seen.insert(record.key.as_str()), "two records for {}", record.key);
        let source = by_key.get(record.key.as_str()).unwrap_or_else(|| panic!("a record for no file: {}", record.key));
        assert_eq!(record.dataset, DATASET);
        match record.status {
            ImageStatus::Accepted | ImageStatus::Duplicate => {
                assert!(source.valid, "{} is broken but {:?}", record.key, record.status);
                let object = raw.get(&record.key).unwrap_or_else(|| panic!("{} is recorded but not in raw", record.key));
                let stored = std::fs::read(object).unwrap();
                assert_eq!(record.sha256.as_deref(), Some(sha256(&stored).as_str()), "{}: the record's sha256", record.key);
                assert_eq!(stored, source.bytes, "{}: raw holds other bytes than the file", record.key);
            }
            ImageStatus::Rejected => {
                assert!(!source.valid, "{} is valid but rejected: {:?}", record.key, record.message);
                let quarantined = record.quarantine_key.as_deref().expect("a rejected record names its quarantined copy");
                let copy = store.get(quarantined).unwrap_or_else(|| panic!("{quarantined} is recorded but missing"));
                assert_eq!(std::fs::read(copy).unwrap(), source.bytes, "{quarantined}: other bytes than the file");
                assert!(store.contains_key(&format!("{quarantined}.reason.json")), "{quarantined}: no sidecar");
                rejected_left_in_raw += usize::from(raw.contains_key(&record.key));
            }
            ImageStatus::Deleted => panic!("nothing was deleted, yet {} is recorded as deleted", record.key),
        }
    }
    for (key, path) in &raw {
        let source = by_key.get(key.as_str()).unwrap_or_else(|| panic!("raw holds {key}, which is no source file"));
        assert_eq!(std::fs::read(path).unwrap(), source.bytes, "{key}: a torn or foreign object in raw");
    }
    let waiting = raw.keys().filter(|k| !seen.contains(k.as_str())).count();
    State { records, waiting, rejected_left_in_raw, failures_queued }
}

fn json_lines(out: std::process::Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn an_upload_killed_midway_and_run_again_loses_nothing() {
    let started = Instant::now();
    let temp = tempfile::tempdir().unwrap();
    let (src, data) = (temp.path().join("src"), temp.path().join("data"));
    let sources = write_sources(&src);
    let broken = sources.iter().filter(|s| !s.valid).count();
    let upload = |data: &Path| {
        let mut command = cvops(data);
        command.arg("upload").arg(&src).args(["--dataset", DATASET, "--json"]);
        command
    };

    // First run: killed once a good part of the files is in raw, at a moment that varies a little
    // from run to run within a file's put and ingest.
    let mut first = upload(&data).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let jitter = Duration::from_micros(u64::from(clock.subsec_nanos() % 3000));
    let threshold = sources.len() * 2 / 5;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if bucket_files(&data, "raw").len() >= threshold {
            break;
        }
        assert!(first.try_wait().unwrap().is_none(), "the first upload ended before it could be killed");
        assert!(Instant::now() < deadline, "the first upload put fewer than {threshold} files in a minute");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(jitter);
    first.kill().unwrap(); // SIGKILL: no destructor, no flush, no cleanup runs.
    assert!(!first.wait().unwrap().success(), "killed, not finished");
    let killed_at = started.elapsed();

    let after_kill = check(&data, &sources);
    let recorded = after_kill.records.len();
    assert!(recorded > 0 && recorded < sources.len(), "the kill came midway: {recorded} of {} recorded", sources.len());
    eprintln!(
        "after the kill: {recorded} recorded, {} waiting in raw, {} rejected originals left in raw, {} failures queued",
        after_kill.waiting, after_kill.rejected_left_in_raw, after_kill.failures_queued
    );

    // Second run, to completion.
    let out = upload(&data).output().unwrap();
    let summary = json_lines(out).pop().expect("the upload's summary");
    assert_eq!(summary["files"].as_u64(), Some(sources.len() as u64), "{summary}");
    assert_eq!(summary["failed"].as_u64(), Some(0), "{summary}");

    let done = check(&data, &sources);
    assert_eq!(done.records.len(), sources.len(), "every file is recorded once");
    assert_eq!((done.waiting, done.rejected_left_in_raw, done.failures_queued), (0, 0, 0), "nothing waits: {done:?}");
    assert_eq!(done.count(ImageStatus::Accepted), VALID, "the valid files are distinct, so all are accepted");
    assert_eq!(done.count(ImageStatus::Rejected), broken);
    assert_eq!(bucket_files(&data, "raw").len(), VALID, "raw keeps exactly the accepted files");

    // The counts the commands print agree with the records.
    let datasets = json_lines(cvops(&data).args(["datasets", "--json"]).output().unwrap());
    assert_eq!(datasets.len(), 1, "{datasets:?}");
    let line = &datasets[0];
    assert_eq!(line["dataset"].as_str(), Some(DATASET));
    let counts = ["accepted", "duplicates", "rejected", "deleted"].map(|f| line[f].as_u64());
    assert_eq!(counts, [Some(VALID as u64), Some(0), Some(broken as u64), Some(0)], "{line}");
    let health = json_lines(cvops(&data).args(["health", "--dataset", DATASET, "--json"]).output().unwrap()).remove(0);
    assert_eq!(health["accepted"].as_u64(), Some(VALID as u64), "{health}");
    let rejected: u64 = health["rejected"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(rejected, broken as u64, "{health}");
    assert_eq!(health["per_label"].as_object().unwrap().len(), 10, "{health}");

    eprintln!("killed after {killed_at:.1?}; all checks done after {:.1?}", started.elapsed());
}
