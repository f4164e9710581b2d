//! dispatch-training on AWS APIs (moto): a dataset ingested into S3 and DynamoDB, the real SQS
//! training request fed to the handler, and the Batch job it submits read back with DescribeJobs:
//! queue, definition, GPU requirement, environment and array size as requested.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use cvops_aws::{BatchJobRunner, DynamoTable};
use cvops_core::ports::{JobRunner, Ports, Table};
use cvops_dispatch_training::handler::{run_pk, run_sk};
use cvops_dispatch_training::{Dispatch, DispatchConfig, DispatchEvent, RunRecord};
use cvops_ingest::IngestConfig;
use cvops_tests::events::{s3_event, S3_PUT};
use cvops_tests::moto::{self, Wiretap};

const REQUEST: &[u8] = include_bytes!("../../../events/training-request.json");

#[tokio::test]
async fn a_training_request_becomes_a_gpu_array_job_on_batch() {
    let Some(aws) = moto::config("a_training_request_becomes_a_gpu_array_job_on_batch").await else { return };
    let (raw, store, table) = (moto::unique("raw"), moto::unique("store"), moto::unique("cvops"));
    moto::create_bucket(&aws, &raw).await;
    moto::create_bucket(&aws, &store).await;
    moto::create_table(&aws, &table).await;
    let (_, dead_letter) = moto::create_queue_with_dead_letter(&aws, &moto::unique("training"), 5).await;
    let (job_queue, job_definition) = moto::create_batch_queue(&aws, &moto::unique("cvops-training")).await;

    // Two digits uploaded and ingested, as S3 would notify: one to train on, one to validate with.
    let ingest = cvops_ingest::Ingest::new(&cvops_aws::ports::new(&aws, &table), IngestConfig::new(&store));
    for (i, (split, digit)) in [("train", "3"), ("val", "8")].iter().enumerate() {
        let key = format!("datasets/digits/{split}/{digit}/0000.png");
        let data = std::fs::read(format!("{}/../samplesets/digits/train/{digit}/0000.png", env!("CARGO_MANIFEST_DIR"))).unwrap();
        aws.s3().put_object().bucket(&raw).key(&key).body(ByteStream::from(data)).send().await.unwrap();
        ingest.handle(&s3_event(S3_PUT, &raw, &key, &format!("00A{i}"), None)).await.unwrap();
    }

    let wiretap = Wiretap::default();
    let dynamo = Arc::new(DynamoTable::new(aws.dynamodb(), &table));
    let ports = Ports {
        table: dynamo.clone(),
        jobs: Arc::new(BatchJobRunner::new(wiretap.batch_client(&aws), &job_queue, &job_definition)),
        ..cvops_aws::ports::new(&aws, &table)
    };
    let dispatch = Dispatch::new(
        &ports,
        DispatchConfig {
            raw_bucket: "raw".into(),
            store_bucket: store.clone(),
            models_bucket: "models".into(),
            dead_letter_queue: dead_letter,
            trainer_image: "cvops-trainer:latest".into(),
            trainer_command: Vec::new(),
            gpus: 1,
            val_fraction: cvops_core::snapshot::DEFAULT_VAL_FRACTION,
            job_env: BTreeMap::from([("CVOPS_TABLE".to_owned(), table.clone())]),
        },
    );
    let event: DispatchEvent = serde_json::from_slice(REQUEST).unwrap();
    let response = dispatch.handle(&event).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let DispatchEvent::Sqs(sqs) = &event else { unreachable!() };
    let request = cvops_dispatch_training::TrainingRequest::parse(sqs.records[0].body.as_deref().unwrap()).unwrap();
    let run: RunRecord = dynamo
        .get(&run_pk("digits-cnn"), &run_sk(&request.run_id()))
        .await
        .unwrap()
        .expect("the run is recorded")
        .to_record()
        .unwrap();
    let job_id = run.job_id.clone().expect("a job was submitted");

    let described = aws.batch().describe_jobs().jobs(&job_id).send().await.unwrap();
    let job = &described.jobs()[0];
    assert_eq!((job.job_queue(), job.job_definition()), (Some(job_queue.as_str()), Some(job_definition.as_str())));
    assert_eq!(job.array_properties().and_then(|a| a.size()), Some(3), "the three-point sweep is one array job");
    let env: BTreeMap<_, _> =
        job.container().unwrap().environment().iter().filter_map(|kv| Some((kv.name()?, kv.value()?))).collect();
    assert_eq!(env.get("CVOPS_RUN_ID"), Some(&run.run_id.as_str()));
    assert_eq!(env.get("CVOPS_SNAPSHOT"), Some(&run.snapshot.as_str()));
    assert_eq!(env.get("CVOPS_TABLE"), Some(&table.as_str()));
    assert!(env.get("CVOPS_HYPERPARAMETER_POINTS").is_some_and(|p| p.contains("0.004")));
    // moto leaves the resource requirements out of DescribeJobs: the request on the wire says it.
    let submit = wiretap.submit_job();
    assert_eq!(submit["containerOverrides"]["resourceRequirements"], serde_json::json!([{"type": "GPU", "value": "1"}]));

    // Delivered again: the same run, no second job.
    dispatch.handle(&event).await.unwrap();
    // (ListJobs names the queue too; only SubmitJob names the definition.)
    assert_eq!(wiretap.0.lock().unwrap().iter().filter(|b| b.contains("\"jobDefinition\"")).count(), 1, "one SubmitJob");
    // The job is found again by its deterministic name, as a redelivery after a failed
    // bookkeeping would look it up.
    let runner = BatchJobRunner::new(aws.batch(), &job_queue, &job_definition);
    assert_eq!(runner.find(&run.job_name()).await.unwrap(), Some(job_id));
    assert_eq!(runner.find("digits-cnn-run-never-dispatched").await.unwrap(), None);
}
