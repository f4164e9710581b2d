//! Fault tolerance: a failure at any single port call in the middle of ingest leaves nothing a
//! retry cannot repair, and loses nothing. For each scenario, a clean run counts the port calls
//! and records the final state; then, for every call k, a fresh run fails exactly call k (with a
//! throttling error), the event is retried as Lambda would, and the final state must equal the
//! clean run's.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cvops_core::catalog::{band_pk, bands, dataset_pk, ImageRecord, DATASETS_PK};
use cvops_core::failure::Retryable;
use cvops_core::ports::{ObjectStore, ObjectStoreExt, Ports, TableExt};
use cvops_ingest::{Ingest, IngestConfig, IngestEvent};
use cvops_tests::events::{s3_event, S3_PUT};
use cvops_tests::faults::{FaultPlan, FaultyObjectStore, FaultyTable};
use cvops_tests::platform::{TempPlatform, RAW, STORE};
use serde_json::Value;

const DIGIT: &[u8] = include_bytes!("../../../samplesets/digits/train/0/0000.png");
const OTHER: &[u8] = include_bytes!("../../../samplesets/digits/train/4/0000.png");

struct Env {
    stack: TempPlatform,
    plan: Arc<FaultPlan>,
    ingest: Ingest,
}

/// Ingest over the local stack, every port call going through one fault plan.
fn env() -> Env {
    let stack = TempPlatform::new();
    let plan = FaultPlan::new();
    let ports = Ports {
        objects: Arc::new(FaultyObjectStore { inner: stack.objects.clone(), plan: plan.clone() }),
        table: Arc::new(FaultyTable { inner: stack.table.clone(), plan: plan.clone() }),
        ..stack.ports.clone()
    };
    let ingest = Ingest::new(&ports, IngestConfig::new(STORE));
    Env { stack, plan, ingest }
}

fn event(key: &str, sequencer: &str) -> IngestEvent {
    s3_event(S3_PUT, RAW, key, sequencer, None)
}

/// Everything ingest may have written, versions and wall-clock times left out.
async fn state(env: &Env) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for bucket in [RAW, STORE] {
        for meta in env.stack.objects.list_all(bucket, "").await.unwrap() {
            let data = env.stack.objects.get(bucket, &meta.key, 1 << 20).await.unwrap();
            let value = match serde_json::from_slice::<Value>(&data) {
                Ok(Value::Object(mut sidecar)) => {
                    sidecar.remove("quarantined_at");
                    Value::Object(sidecar)
                }
                _ => Value::String(format!("{} bytes", data.len())),
            };
            out.insert(format!("s3://{bucket}/{}", meta.key), value);
        }
    }
    let mut partitions = vec![dataset_pk("digits"), DATASETS_PK.to_owned()];
    for item in env.stack.table.query_all(&dataset_pk("digits"), "IMG#").await.unwrap() {
        let record: ImageRecord = item.to_record().unwrap();
        if let Some(phash) = record.phash.and_then(|h| u64::from_str_radix(&h, 16).ok()) {
            partitions.extend(bands(phash).iter().enumerate().map(|(band, value)| band_pk("digits", band, *value)));
        }
    }
    for pk in partitions {
        for mut item in env.stack.table.query_all(&pk, "").await.unwrap() {
            item.attrs.remove("created_at");
            out.insert(format!("table/{}/{}", item.pk, item.sk), Value::Object(item.attrs));
        }
    }
    out
}

/// Runs `setup` cleanly, then uploads `data` at `key` and ingests it with call `fail_at` failing
/// (none for the clean run), retrying once if it failed. Returns the final state and the number
/// of port calls the upload's first attempt made.
async fn run(setup: &[(&str, &[u8])], key: &str, data: &[u8], fail_at: Option<usize>) -> (BTreeMap<String, Value>, usize) {
    let env = env();
    for (i, (setup_key, setup_data)) in setup.iter().enumerate() {
        env.stack.objects.put(RAW, setup_key, Bytes::copy_from_slice(setup_data)).await.unwrap();
        env.ingest.handle(&event(setup_key, &format!("00A{i}"))).await.unwrap();
    }
    env.stack.objects.put(RAW, key, Bytes::copy_from_slice(data)).await.unwrap();
    let before = env.plan.calls();
    if let Some(k) = fail_at {
        env.plan.fail_call(k);
    }
    let first = env.ingest.handle(&event(key, "00B0")).await;
    let calls = env.plan.calls() - before;
    if let Some(k) = fail_at {
        let error = first.expect_err("the injected failure surfaces");
        assert!(error.is_retryable(), "call {k}: a throttling error is retryable: {error}");
        env.plan.heal();
        env.ingest.handle(&event(key, "00B0")).await.unwrap_or_else(|e| panic!("call {k}: the retry fails: {e}"));
    } else {
        first.unwrap();
    }
    (state(&env).await, calls)
}

async fn every_failure_is_repaired_by_a_retry(setup: &[(&str, &[u8])], key: &str, data: &[u8]) -> usize {
    let (clean, calls) = run(setup, key, data, None).await;
    assert!(calls >= 4, "the clean run made {calls} calls");
    for k in 1..=calls {
        let (repaired, _) = run(setup, key, data, Some(k)).await;
        assert_eq!(repaired, clean, "failing call {k} of {calls} left a different state after the retry");
    }
    calls
}

#[tokio::test]
async fn a_failure_anywhere_while_accepting_an_image_is_repaired_by_a_retry() {
    let calls =
        every_failure_is_repaired_by_a_retry(&[("datasets/digits/4/other.png", OTHER)], "datasets/digits/0/first.png", DIGIT)
            .await;
    eprintln!("accepted image: every one of {calls} calls failed in turn");
}

#[tokio::test]
async fn a_failure_anywhere_while_recording_a_duplicate_is_repaired_by_a_retry() {
    let calls =
        every_failure_is_repaired_by_a_retry(&[("datasets/digits/0/first.png", DIGIT)], "datasets/digits/0/again.png", DIGIT)
            .await;
    eprintln!("duplicate: every one of {calls} calls failed in turn");
}

#[tokio::test]
async fn a_failure_anywhere_while_quarantining_is_repaired_by_a_retry_and_nothing_is_lost() {
    let cut = &DIGIT[..DIGIT.len() / 2];
    let (clean, calls) = run(&[], "datasets/digits/0/cut.png", cut, None).await;
    assert!(!clean.contains_key("s3://raw/datasets/digits/0/cut.png"), "the original left the raw bucket");
    assert_eq!(clean.keys().filter(|k| k.starts_with("s3://store/quarantine/datasets/digits/0/cut.png/")).count(), 2);
    every_failure_is_repaired_by_a_retry(&[], "datasets/digits/0/cut.png", cut).await;
    eprintln!("quarantine: every one of {calls} calls failed in turn");
}

#[tokio::test]
async fn slow_ports_only_slow_ingest_down() {
    let env = env();
    env.plan.delay_every_call(std::time::Duration::from_millis(20));
    env.stack.objects.put(RAW, "datasets/digits/0/slow.png", Bytes::from_static(DIGIT)).await.unwrap();
    let outcomes = env.ingest.handle(&event("datasets/digits/0/slow.png", "00C0")).await.unwrap();
    assert!(matches!(outcomes[0], cvops_ingest::Outcome::Accepted { .. }), "{outcomes:?}");
}

const NAMES: &[u8] = b"names: [zero, one]\n";
/// A good box, a malformed line and an unknown class.
const LABELS: &[u8] = b"0 0.5 0.5 0.2 0.2\n1 0.5\n5 0.2 0.2 0.1 0.1\n";

#[tokio::test]
async fn a_failure_anywhere_while_reading_a_label_file_is_repaired_by_a_retry() {
    let calls = every_failure_is_repaired_by_a_retry(
        &[("datasets/digits/data.yaml", NAMES), ("datasets/digits/images/train/a.png", DIGIT)],
        "datasets/digits/labels/train/a.txt",
        LABELS,
    )
    .await;
    eprintln!("label file: every one of {calls} calls failed in turn");
}

#[tokio::test]
async fn a_failure_anywhere_while_class_names_check_a_waiting_label_file_is_repaired_by_a_retry() {
    let (clean, _) = run(&[("datasets/digits/labels/train/a.txt", LABELS)], "datasets/digits/data.yaml", NAMES, None).await;
    let record = &clean["table/DS#digits/LBL#datasets/digits/labels/train/a.txt"];
    assert_eq!(record["classes_checked"], true, "{record}");
    assert_eq!(record["refused"].as_array().unwrap().len(), 2, "{record}");
    let calls = every_failure_is_repaired_by_a_retry(
        &[("datasets/digits/labels/train/a.txt", LABELS)],
        "datasets/digits/data.yaml",
        NAMES,
    )
    .await;
    eprintln!("class names: every one of {calls} calls failed in turn");
}
