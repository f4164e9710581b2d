//! The register-model Lambda, invoked asynchronously by the models bucket's notification on
//! `models/*/card.json`. Configuration and clients once per container.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use cvops_aws::{env, AwsConfig, DynamoTable, S3ObjectStore};
use cvops_core::clock::SystemClock;
use cvops_register_model::{Register, RegisterConfig, RegisterError};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

#[derive(Debug)]
struct Failure(RegisterError);

impl From<Failure> for Diagnostic {
    fn from(Failure(error): Failure) -> Self {
        let error_type = if error.is_retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = RegisterConfig::from_env()?;
    let table = env::required("CVOPS_TABLE")?;
    let aws = AwsConfig::from_env().await;
    let register = Register::new(
        Arc::new(DynamoTable::new(aws.dynamodb(), table)),
        Arc::new(S3ObjectStore::new(aws.s3())),
        Arc::new(SystemClock),
        config,
    );
    let register = &register;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        register.handle(&event.payload).await.map_err(Failure)
    }))
    .await
}
