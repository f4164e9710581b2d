//! The ingest function wired to AWS: what `main.rs` runs, and what the AWS end-to-end test drives.

use std::sync::Arc;

use cvops_aws::{AwsConfig, DynamoTable, S3ObjectStore};
use cvops_core::clock::SystemClock;

use crate::{Ingest, IngestConfig};

/// Ingest on S3 and the DynamoDB table `table`.
pub fn on_aws(aws: &AwsConfig, table: &str, config: IngestConfig) -> Ingest {
    Ingest::new(
        Arc::new(S3ObjectStore::new(aws.s3())),
        Arc::new(DynamoTable::new(aws.dynamodb(), table)),
        Arc::new(SystemClock),
        config,
    )
}
