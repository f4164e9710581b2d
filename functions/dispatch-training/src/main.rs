//! The dispatch-training Lambda: SQS training requests and EventBridge "Batch Job State Change"
//! events, one handler. Configuration and clients once per container.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::sqs::SqsBatchResponse;
use cvops_aws::{env, AwsConfig, BatchJobRunner, DynamoTable, S3ObjectStore, SqsQueue};
use cvops_core::clock::SystemClock;
use cvops_dispatch_training::{Dispatch, DispatchConfig, DispatchError, DispatchEvent};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

#[derive(Debug)]
struct Failure(DispatchError);

impl From<Failure> for Diagnostic {
    fn from(Failure(error): Failure) -> Self {
        let error_type = if matches!(error, DispatchError::Request(_)) { "NonRetryable" } else { "Retryable" };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let table = env::required("CVOPS_TABLE")?;
    let gpus = std::env::var("CVOPS_TRAINING_GPUS").ok().map(|g| g.parse::<u32>()).transpose()?.unwrap_or(1);
    let config = DispatchConfig {
        raw_bucket: env::required("CVOPS_RAW_BUCKET")?,
        store_bucket: env::required("CVOPS_STORE_BUCKET")?,
        models_bucket: env::required("CVOPS_MODELS_BUCKET")?,
        dead_letter_queue: env::required("CVOPS_DEAD_LETTER_QUEUE_URL")?,
        trainer_image: env::required("CVOPS_TRAINER_IMAGE")?,
        trainer_command: Vec::new(),
        gpus,
        job_env: BTreeMap::from([("CVOPS_TABLE".to_owned(), table.clone())]),
    };
    let aws = AwsConfig::from_env().await;
    let jobs = BatchJobRunner::new(aws.batch(), env::required("CVOPS_JOB_QUEUE")?, env::required("CVOPS_JOB_DEFINITION")?);
    let dispatch = Dispatch::new(
        Arc::new(DynamoTable::new(aws.dynamodb(), table)),
        Arc::new(S3ObjectStore::new(aws.s3())),
        Arc::new(SqsQueue::new(aws.sqs())),
        Arc::new(jobs),
        Arc::new(SystemClock),
        config,
    );
    let dispatch = &dispatch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<DispatchEvent>| async move {
        dispatch.handle(&event.payload).await.map_err(Failure).map(|response: SqsBatchResponse| response)
    }))
    .await
}
