//! dispatch-training on the embedded adapters: real SQS and EventBridge events in, snapshots,
//! runs, child-process jobs and dead-lettered requests out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use cvops_core::config::Vars;
use cvops_core::key::DatasetName;
use cvops_core::ports::{JobRunner, JobState, ObjectStore, Ports, Queue, Table, TableExt};
use cvops_dispatch_training::handler::{run_pk, BatchJobDetail};
use cvops_dispatch_training::{Dispatch, DispatchConfig, DispatchEvent, RunRecord, RunStatus};
use cvops_local::ProcessJobRunner;
use cvops_platform::upload::upload_dir;
use cvops_platform::LocalPlatform;
use cvops_tests::faults::{CountingJobRunner, FaultPlan, FaultyTable};

const REQUEST: &[u8] = include_bytes!("../../../events/training-request.json");
const STATE_CHANGE: &[u8] = include_bytes!("../../../events/batch-job-state-change.json");
const DLQ: &str = "training-dlq";

struct Env {
    dir: tempfile::TempDir,
    platform: LocalPlatform,
    jobs: Arc<ProcessJobRunner>,
    dispatch: Dispatch,
}

/// A platform with a small `digits` dataset (the bad files: two valid images) and a job that
/// writes its CVOPS_ environment to a file instead of training.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(&dir.path().join("data"), Vars::from_pairs(&[])).unwrap();
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/bad/upload");
    upload_dir(&platform, &DatasetName::parse("digits").unwrap(), &samples, &mut ()).await.unwrap();
    platform.queue.create_queue(DLQ, None, 0).unwrap();
    let jobs = Arc::new(ProcessJobRunner::new(dir.path().join("jobs")).unwrap());
    let config = config(dir.path());
    let dispatch = Dispatch::new(&Ports { jobs: jobs.clone(), ..platform.ports.clone() }, config);
    Env { dir, platform, jobs, dispatch }
}

fn config(dir: &std::path::Path) -> DispatchConfig {
    let env_file = dir.join("job-env-$AWS_BATCH_JOB_ARRAY_INDEX.txt").display().to_string();
    DispatchConfig {
        raw_bucket: "raw".into(),
        store_bucket: "store".into(),
        models_bucket: "models".into(),
        dead_letter_queue: DLQ.into(),
        trainer_image: "cvops-trainer:test".into(),
        trainer_command: vec!["sh".into(), "-c".into(), format!("env | grep ^CVOPS_ | sort > \"{env_file}\"")],
        gpus: 1,
        val_fraction: cvops_core::snapshot::DEFAULT_VAL_FRACTION,
        job_env: BTreeMap::from([("CVOPS_TABLE".to_owned(), "local".to_owned())]),
    }
}

fn sqs_event(body: &str, message_id: &str) -> DispatchEvent {
    let mut event: SqsEvent = serde_json::from_slice(REQUEST).unwrap();
    event.records[0].body = Some(body.into());
    event.records[0].message_id = Some(message_id.into());
    DispatchEvent::Sqs(event)
}

impl Env {
    async fn runs(&self, model: &str) -> Vec<RunRecord> {
        self.platform.table.query_all(&run_pk(model), "RUN#").await.unwrap().iter().map(|i| i.to_record().unwrap()).collect()
    }

    async fn dead_letters(&self) -> Vec<cvops_core::ports::Message> {
        self.platform.queue.receive(DLQ, 10, Duration::from_secs(30)).await.unwrap()
    }
}

#[tokio::test]
async fn a_sweep_request_snapshots_the_dataset_records_a_run_and_submits_one_array_job() {
    let env = env().await;
    let event: DispatchEvent = serde_json::from_slice(REQUEST).unwrap();
    let response = env.dispatch.handle(&event).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let runs = env.runs("digits-cnn").await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!((run.status, run.dataset.as_str(), run.reason.as_deref()), (RunStatus::Submitted, "digits", Some("manual")));
    assert_eq!(run.points.len(), 3, "three learning rates");
    assert!(
        env.platform.objects.get("store", &format!("snapshots/digits/{}.json", run.snapshot), 1 << 20).await.is_ok(),
        "the snapshot exists"
    );

    // The job ran as an array of three, each child with the run's environment.
    let job_id = run.job_id.clone().unwrap();
    for _ in 0..200 {
        if env.jobs.describe(&job_id).await.unwrap().state.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(env.jobs.describe(&job_id).await.unwrap().state, JobState::Succeeded);
    for index in 0..3 {
        let written = std::fs::read_to_string(env.dir.path().join(format!("job-env-{index}.txt"))).unwrap();
        assert!(written.contains(&format!("CVOPS_RUN_ID={}", run.run_id)), "{written}");
        assert!(written.contains(&format!("CVOPS_SNAPSHOT={}", run.snapshot)));
        assert!(written.contains("CVOPS_HYPERPARAMETER_POINTS=[{"), "{written}");
        assert!(written.contains("CVOPS_TABLE=local"));
    }
}

#[tokio::test]
async fn the_same_request_delivered_twice_starts_one_run() {
    let env = env().await;
    let body = r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": 2}}"#;
    env.dispatch.handle(&sqs_event(body, "first")).await.unwrap();
    env.dispatch.handle(&sqs_event(body, "redelivered")).await.unwrap();
    let runs = env.runs("m").await;
    assert_eq!(runs.len(), 1, "one run");
    // A deliberate repeat says so with a request id.
    env.dispatch
        .handle(&sqs_event(
            r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": 2}, "request_id": "again"}"#,
            "third",
        ))
        .await
        .unwrap();
    assert_eq!(env.runs("m").await.len(), 2);
}

#[tokio::test]
async fn impossible_requests_go_to_the_dead_letter_queue_with_their_reason_and_create_nothing() {
    let env = env().await;
    env.platform.table.put(cvops_core::ports::Item::new("DATASETS", "hollow")).await.unwrap();
    for (body, code) in [
        ("{not json", "malformed_request"),
        (r#"{"dataset": "nope", "model": "m"}"#, "unknown_dataset"),
        (r#"{"dataset": "hollow", "model": "m"}"#, "empty_dataset"),
        (r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": -1}}"#, "bad_hyperparameter"),
        (r#"{"dataset": "digits", "model": "m", "snapshot": "0000000000000000"}"#, "unknown_snapshot"),
    ] {
        let response = env.dispatch.handle(&sqs_event(body, code)).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "a refused request is handled, not retried: {code}");
        let dead = env.dead_letters().await;
        assert_eq!(dead.len(), 1, "{code}");
        assert_eq!(dead[0].body, body, "the request is kept as sent");
        assert_eq!(dead[0].attributes["error_code"], code);
        assert!(!dead[0].attributes["reason"].is_empty());
        env.platform.queue.ack(DLQ, &dead[0].receipt).await.unwrap();
    }
    assert!(env.runs("m").await.is_empty(), "no run was created");
    let snapshots = env.platform.table.query_all("DS#hollow", "SNAP#").await.unwrap();
    assert!(snapshots.is_empty(), "no snapshot of the empty dataset");
}

#[tokio::test]
async fn job_state_changes_move_the_run_forward_and_never_back() {
    let env = env().await;
    env.dispatch.handle(&sqs_event(r#"{"dataset": "digits", "model": "m"}"#, "1")).await.unwrap();
    let job_id = env.runs("m").await[0].job_id.clone().unwrap();
    let change = |status: &str| {
        let mut event: EventBridgeEvent<BatchJobDetail> = serde_json::from_slice(STATE_CHANGE).unwrap();
        event.detail.job_id = job_id.clone();
        event.detail.status = status.into();
        DispatchEvent::JobStateChange(Box::new(event))
    };
    env.dispatch.handle(&change("RUNNING")).await.unwrap();
    assert_eq!(env.runs("m").await[0].status, RunStatus::Running);
    env.dispatch.handle(&change("SUCCEEDED")).await.unwrap();
    env.dispatch.handle(&change("RUNNABLE")).await.unwrap();
    env.dispatch.handle(&change("FAILED")).await.unwrap();
    assert_eq!(env.runs("m").await[0].status, RunStatus::Succeeded, "late and conflicting events do not move a finished run");
    // A job that is not a run's (an array child, another team's) is ignored.
    let mut other: EventBridgeEvent<BatchJobDetail> = serde_json::from_slice(STATE_CHANGE).unwrap();
    other.detail.job_id = "someone-else".into();
    env.dispatch.handle(&DispatchEvent::JobStateChange(Box::new(other))).await.unwrap();
}

#[tokio::test]
async fn a_request_redelivered_after_its_submit_went_unrecorded_submits_no_second_job() {
    let env = env().await;
    let plan = FaultPlan::new();
    let table = Arc::new(FaultyTable { inner: env.platform.table.clone(), plan: plan.clone() });
    let jobs = Arc::new(CountingJobRunner::new(env.jobs.clone()));
    let platform = &env.platform;
    let dispatch = Dispatch::new(&Ports { table, jobs: jobs.clone(), ..platform.ports.clone() }, config(env.dir.path()));
    let body = r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": 2}}"#;

    // The job is submitted, then recording it fails: SQS will redeliver the message.
    plan.fail_writes_to("JOB#");
    let response = dispatch.handle(&sqs_event(body, "message-1")).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
    assert_eq!(jobs.submits(), 1);
    assert_eq!(env.runs("m").await[0].status, RunStatus::Submitting, "claimed, job id not yet recorded");

    // Another message for the same run while the claim holds: retried later, submits nothing.
    let response = dispatch.handle(&sqs_event(body, "message-2")).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "{response:?}");
    assert_eq!(jobs.submits(), 1);

    // The redelivery finds the job by its deterministic name and records it.
    plan.heal();
    let response = dispatch.handle(&sqs_event(body, "message-1")).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(jobs.submits(), 1, "exactly one submit");
    let runs = env.runs("m").await;
    assert_eq!((runs.len(), runs[0].status), (1, RunStatus::Submitted));
    assert_eq!(jobs.find(&runs[0].job_name()).await.unwrap(), runs[0].job_id, "the run names the one job");
    dispatch.handle(&sqs_event(body, "message-2")).await.unwrap();
    assert_eq!(jobs.submits(), 1, "a later delivery finds the run dispatched");
}

#[tokio::test]
async fn a_dataset_without_train_or_val_images_is_refused_before_any_run_saying_how_to_fix_it() {
    let env = env().await;
    // Only a test split: nothing to train on, nothing to carve val from.
    let folder = env.dir.path().join("only-test");
    let digits = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits/test/4");
    for entry in std::fs::read_dir(digits).unwrap().take(3) {
        let path = entry.unwrap().path();
        std::fs::create_dir_all(folder.join("test/4")).unwrap();
        std::fs::copy(&path, folder.join("test/4").join(path.file_name().unwrap())).unwrap();
    }
    upload_dir(&env.platform, &DatasetName::parse("only-test").unwrap(), &folder, &mut ()).await.unwrap();
    let body = r#"{"dataset": "only-test", "model": "m"}"#;
    let response = env.dispatch.handle(&sqs_event(body, "missing")).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "refused, not retried");
    let dead = env.dead_letters().await;
    assert_eq!((dead.len(), dead[0].attributes["error_code"].as_str()), (1, "missing_split"));
    let reason = &dead[0].attributes["reason"];
    assert!(reason.contains("no train images") && reason.contains("datasets/only-test/train/<label>/"), "{reason}");
    assert!(env.runs("m").await.is_empty(), "no run was created");
    assert_eq!(env.jobs.job_ids().len(), 0, "no job was submitted");
}

#[tokio::test]
async fn a_dataset_of_boxes_gets_a_detection_snapshot_a_run_and_a_job() {
    let env = env().await;
    let boxes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits");
    upload_dir(&env.platform, &DatasetName::parse("boxes").unwrap(), &boxes, &mut ()).await.unwrap();
    let response = env.dispatch.handle(&sqs_event(r#"{"dataset": "boxes", "model": "m"}"#, "boxes")).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(env.dead_letters().await.is_empty(), "the trainer learns detection: nothing is refused");
    let runs = env.runs("m").await;
    assert_eq!((runs.len(), env.jobs.job_ids().len()), (1, 1), "one run, one job");
    let key = cvops_core::schema::descriptor_key("boxes", &runs[0].snapshot);
    let descriptor = env.platform.objects.get("store", &key, 1 << 26).await.unwrap();
    let snapshot: cvops_core::snapshot::Snapshot = serde_json::from_slice(&descriptor).unwrap();
    assert!(snapshot.is_detection(), "the job is given a snapshot with boxes");
}
