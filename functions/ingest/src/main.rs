//! The ingest Lambda: configuration and ports once per container, then the handler from the
//! library for every S3 event.

use cvops_aws::lambda::Failure;
use cvops_aws::{env, AwsConfig};
use cvops_ingest::{Ingest, IngestConfig, IngestEvent};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = IngestConfig::from_env()?;
    let ports = cvops_aws::ports::from_env(&AwsConfig::from_env().await)?;
    let ingest = Ingest::new(&ports, config);
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<IngestEvent>| async move {
        ingest.handle(&event.payload).await.map_err(Failure)
    }))
    .await
}
