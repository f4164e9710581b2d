//! The ports on AWS, built once per container from the environment the template sets.

use std::sync::Arc;

use cvops_core::clock::SystemClock;
use cvops_core::config::{ConfigError, Vars};
use cvops_core::ports::Ports;

use crate::{AwsConfig, BatchJobRunner, DynamoTable, S3ObjectStore, SqsQueue};

/// S3, the DynamoDB table named by `CVOPS_TABLE`, SQS, and the system clock; a Batch runner with
/// no job queue, which only dispatch-training submits to ([`with_batch_from_env`]).
pub fn from_env(aws: &AwsConfig) -> Result<Ports, ConfigError> {
    Ok(new(aws, &Vars::env().required("CVOPS_TABLE")?))
}

/// `ports` submitting to the job queue `CVOPS_JOB_QUEUE` with the job definition
/// `CVOPS_JOB_DEFINITION`: dispatch-training's.
pub fn with_batch_from_env(ports: Ports, aws: &AwsConfig) -> Result<Ports, ConfigError> {
    let vars = Vars::env();
    let jobs = BatchJobRunner::new(aws.batch(), vars.required("CVOPS_JOB_QUEUE")?, vars.required("CVOPS_JOB_DEFINITION")?);
    Ok(Ports { jobs: Arc::new(jobs), ..ports })
}

/// The ports over the DynamoDB table `table`, with a Batch runner that has no job queue.
pub fn new(aws: &AwsConfig, table: &str) -> Ports {
    Ports {
        objects: Arc::new(S3ObjectStore::new(aws.s3())),
        table: Arc::new(DynamoTable::new(aws.dynamodb(), table)),
        queue: Arc::new(SqsQueue::new(aws.sqs())),
        jobs: Arc::new(BatchJobRunner::new(aws.batch(), "", "")),
        clock: Arc::new(SystemClock),
    }
}
