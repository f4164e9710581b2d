//! The port conformance suites against the AWS adapters, on the endpoint in
//! CVOPS_TEST_AWS_ENDPOINT (moto_server; see tests/src/moto.rs). Skipped, saying so, without it.

use cvops_aws::{DynamoTable, S3ObjectStore, SqsQueue};
use cvops_core::clock::SystemClock;
use cvops_tests::{conformance, moto};

#[tokio::test]
async fn the_s3_object_store_conforms() {
    let Some(aws) = moto::config("the_s3_object_store_conforms").await else { return };
    let bucket = moto::unique("raw");
    moto::create_bucket(&aws, &bucket).await;
    conformance::object_store::object_store(&S3ObjectStore::new(aws.s3()), &bucket, "conformance").await;
}

#[tokio::test]
async fn the_dynamodb_table_conforms() {
    let Some(aws) = moto::config("the_dynamodb_table_conforms").await else { return };
    let table = moto::unique("cvops");
    moto::create_table(&aws, &table).await;
    conformance::table::table(&DynamoTable::new(aws.dynamodb(), &table), &SystemClock, "conformance").await;
}

#[tokio::test]
async fn the_sqs_queue_conforms() {
    let Some(aws) = moto::config("the_sqs_queue_conforms").await else { return };
    let (queue, dead_letter) = moto::create_queue_with_dead_letter(&aws, &moto::unique("training"), 3).await;
    // SQS counts visibility in whole seconds of real time.
    let pass_time = |d: std::time::Duration| std::thread::sleep(d);
    conformance::queue::queue(&SqsQueue::new(aws.sqs()), &queue, &dead_letter, 3, &pass_time).await;
}
