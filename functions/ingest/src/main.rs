//! The ingest Lambda: configuration and clients once per container, then the handler from the
//! library for every S3 event.

use cvops_aws::{env, AwsConfig};
use cvops_ingest::{IngestConfig, IngestError, IngestEvent};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};

/// An ingest error as Lambda reports it: the error type says whether a retry can help.
#[derive(Debug)]
struct Failure(IngestError);

impl From<Failure> for Diagnostic {
    fn from(Failure(error): Failure) -> Self {
        let error_type = if error.is_retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = IngestConfig::from_env()?;
    let table_name = env::required("CVOPS_TABLE")?;
    let aws = AwsConfig::from_env().await;
    let ingest = cvops_ingest::aws::on_aws(&aws, &table_name, config);
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<IngestEvent>| async move {
        ingest.handle(&event.payload).await.map_err(Failure)
    }))
    .await
}
