//! The register-model Lambda, invoked asynchronously by the models bucket's notification on
//! `models/*/card.json`. Configuration and ports once per container.

use aws_lambda_events::s3::S3Event;
use cvops_aws::lambda::Failure;
use cvops_aws::{env, AwsConfig};
use cvops_register_model::{Register, RegisterConfig};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = RegisterConfig::from_env()?;
    let ports = cvops_aws::ports::from_env(&AwsConfig::from_env().await)?;
    let register = Register::new(&ports, config);
    let register = &register;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        register.handle(&event.payload).await.map_err(Failure)
    }))
    .await
}
