//! The infer Lambda: the router from the library behind `lambda_http` (a function URL with
//! AWS_IAM auth, or an HTTP API; binary bodies arrive base64-encoded and lambda_http decodes them).
//! Configuration, clients and the model cache once per container. The monitoring feed flushes on
//! a timer (which ticks while the container is thawed) and once more when Lambda shuts the
//! container down (the graceful-shutdown hook), so its last counters are not lost.

use std::sync::Arc;

use cvops_aws::{env, AwsConfig, DynamoTable, S3ObjectStore};
use cvops_core::clock::SystemClock;
use cvops_infer::{Feed, InferConfig, Models};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    env::init_tracing();
    let config = InferConfig::from_lookup(|name| std::env::var(name).ok())?;
    let table_name = env::required("CVOPS_TABLE")?;
    let aws = AwsConfig::from_env().await;
    let table = Arc::new(DynamoTable::new(aws.dynamodb(), table_name));
    let objects = Arc::new(S3ObjectStore::new(aws.s3()));
    let models = Arc::new(Models::new(table.clone(), objects.clone(), config.models_bucket.clone(), config.alias_check));
    let feed =
        Arc::new(Feed::new(table, objects, Arc::new(SystemClock), config.review_bucket.clone(), config.review_sample_every));
    let fed = config.monitoring.then(|| feed.clone());
    feed.spawn_flusher(config.monitor_flush);
    let last_flush = feed.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        if let Err(e) = last_flush.flush().await {
            tracing::error!(error = %e, "the last monitoring aggregates could not be written");
        }
    })
    .await;
    lambda_http::run(cvops_infer::router(models, config, fed)).await
}
