//! The infer Lambda: the router from the library behind `lambda_http` (a function URL with
//! AWS_IAM auth, or an HTTP API; binary bodies arrive base64-encoded and lambda_http decodes them).
//! Configuration, clients and the model cache once per container.

use std::sync::Arc;

use cvops_aws::{env, AwsConfig, DynamoTable, S3ObjectStore};
use cvops_infer::{InferConfig, Models};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    env::init_tracing();
    let config = InferConfig::from_lookup(|name| std::env::var(name).ok())?;
    let table = env::required("CVOPS_TABLE")?;
    let aws = AwsConfig::from_env().await;
    let models = Arc::new(Models::new(
        Arc::new(DynamoTable::new(aws.dynamodb(), table)),
        Arc::new(S3ObjectStore::new(aws.s3())),
        config.models_bucket.clone(),
        config.alias_check,
    ));
    lambda_http::run(cvops_infer::router(models, config)).await
}
