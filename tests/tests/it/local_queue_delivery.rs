//! Local SQS delivery: batches as `SqsEvent`s, partial batch failures honoured, redrive to the
//! dead-letter queue; and dispatch-training fed through it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
use cvops_core::clock::ManualClock;
use cvops_core::config::Vars;
use cvops_core::ports::{Queue, TableExt};
use cvops_dispatch_training::{Dispatch, DispatchConfig, DispatchEvent};
use cvops_local::{open_database, ProcessJobRunner, SqliteQueue};
use cvops_platform::delivery::deliver;
use cvops_platform::{LocalPlatform, TRAINING_DEAD_LETTER_QUEUE, TRAINING_QUEUE};

#[tokio::test]
async fn failed_items_stay_for_redelivery_and_end_in_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    let queue = SqliteQueue::open(open_database(&dir.path().join("q.sqlite")).unwrap(), clock.clone()).unwrap();
    queue.create_queue("work", Some("work-dlq"), 3).unwrap();
    for body in ["ok-1", "poison", "ok-2"] {
        queue.send("work", body, &BTreeMap::from([("kind".to_owned(), "test".to_owned())])).await.unwrap();
    }
    // The handler fails only the poison message, every time.
    let handler = |event: aws_lambda_events::sqs::SqsEvent| async move {
        assert!(event.records.iter().all(|r| r.event_source.as_deref() == Some("aws:sqs")));
        assert!(event.records.iter().all(|r| r.message_attributes["kind"].string_value.as_deref() == Some("test")));
        let mut response = SqsBatchResponse::default();
        for record in event.records.iter().filter(|r| r.body.as_deref() == Some("poison")) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap();
            response.batch_item_failures.push(failure);
        }
        Ok::<_, String>(response)
    };
    let first = deliver(&queue, "work", Duration::from_secs(30), handler).await.unwrap();
    assert_eq!((first.received, first.acknowledged, first.failed), (3, 2, 1), "only the failed item stays");
    for _ in 0..2 {
        clock.advance_millis(31_000);
        let again = deliver(&queue, "work", Duration::from_secs(30), handler).await.unwrap();
        assert_eq!((again.received, again.failed), (1, 1), "the failed item alone comes back");
    }
    clock.advance_millis(31_000);
    assert_eq!(
        deliver(&queue, "work", Duration::from_secs(30), handler).await.unwrap().received,
        0,
        "after 3 receives it is gone"
    );
    let dead = queue.receive("work-dlq", 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert!(dead[0].attributes["dead_letter_reason"].contains("3 times"));

    // A handler error leaves the whole batch for redelivery.
    queue.send("work", "later", &BTreeMap::new()).await.unwrap();
    let failing =
        deliver(&queue, "work", Duration::from_secs(30), |_| async { Err::<SqsBatchResponse, _>("down") }).await.unwrap();
    assert_eq!((failing.received, failing.acknowledged, failing.failed), (1, 0, 1));
}

#[tokio::test]
async fn training_requests_on_the_local_queue_reach_dispatch_training() {
    let dir = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(&dir.path().join("data"), Vars::from_pairs(&[])).unwrap();
    let samples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/bad/upload");
    let dataset = cvops_core::key::DatasetName::parse("digits").unwrap();
    cvops_platform::upload::upload_dir(&platform, &dataset, &samples, &mut ()).await.unwrap();
    let jobs = Arc::new(ProcessJobRunner::new(dir.path().join("jobs")).unwrap());
    let config = DispatchConfig {
        raw_bucket: "raw".into(),
        store_bucket: "store".into(),
        models_bucket: "models".into(),
        dead_letter_queue: TRAINING_DEAD_LETTER_QUEUE.into(),
        trainer_image: "cvops-trainer:local".into(),
        trainer_command: vec!["true".into()],
        gpus: 0,
        val_fraction: cvops_core::snapshot::DEFAULT_VAL_FRACTION,
        job_env: BTreeMap::new(),
    };
    let dispatch = Dispatch::new(&cvops_core::ports::Ports { jobs, ..platform.ports.clone() }, config);
    let none = BTreeMap::new();
    platform
        .queue
        .send(TRAINING_QUEUE, r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": 3}}"#, &none)
        .await
        .unwrap();
    platform
        .queue
        .send(TRAINING_QUEUE, r#"{"dataset": "digits", "model": "m", "hyperparameters": {"epochs": 0}}"#, &none)
        .await
        .unwrap();

    let delivery = deliver(platform.queue.as_ref(), TRAINING_QUEUE, Duration::from_secs(900), |event| {
        let dispatch = dispatch.clone();
        async move { dispatch.handle(&DispatchEvent::Sqs(event)).await }
    })
    .await
    .unwrap();
    assert_eq!(
        (delivery.received, delivery.acknowledged, delivery.failed),
        (2, 2, 0),
        "a refused request is handled, not retried"
    );
    assert_eq!(platform.queue.depth(TRAINING_QUEUE).unwrap(), 0);
    assert_eq!(platform.table.query_all("MODEL#m", "RUN#").await.unwrap().len(), 1, "one run");
    let dead = platform.queue.receive(TRAINING_DEAD_LETTER_QUEUE, 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attributes["error_code"], "bad_hyperparameter");
}
