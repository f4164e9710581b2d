//! The dispatch-training Lambda: SQS training requests and EventBridge "Batch Job State Change"
//! events, one handler. Configuration and ports once per container.

use aws_lambda_events::sqs::SqsBatchResponse;
use cvops_aws::lambda::Failure;
use cvops_aws::{env, AwsConfig};
use cvops_dispatch_training::{Dispatch, DispatchConfig, DispatchEvent};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = DispatchConfig::from_env()?;
    let aws = AwsConfig::from_env().await;
    let ports = cvops_aws::ports::with_batch_from_env(cvops_aws::ports::from_env(&aws)?, &aws)?;
    let dispatch = Dispatch::new(&ports, config);
    let dispatch = &dispatch;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<DispatchEvent>| async move {
        dispatch.handle(&event.payload).await.map_err(Failure).map(|response: SqsBatchResponse| response)
    }))
    .await
}
