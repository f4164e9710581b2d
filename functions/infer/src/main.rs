//! The infer Lambda: the endpoint from the library behind `lambda_http` (a function URL with
//! AWS_IAM auth, or an HTTP API; binary bodies arrive base64-encoded and lambda_http decodes them).
//! Configuration, ports and the model cache once per container. The monitoring feed flushes on
//! a timer (which ticks while the container is thawed) and once more when Lambda shuts the
//! container down (the graceful-shutdown hook), so its last counters are not lost.

use cvops_aws::{env, AwsConfig};
use cvops_infer::{Endpoint, InferConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    env::init_tracing();
    let config = InferConfig::from_env()?;
    let ports = cvops_aws::ports::from_env(&AwsConfig::from_env().await)?;
    let endpoint = Endpoint::build(&ports, config);
    endpoint.feed.spawn_flusher(endpoint.flush_every);
    let last_flush = endpoint.feed.clone();
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        if let Err(e) = last_flush.flush().await {
            tracing::error!(error = %e, "the last monitoring aggregates could not be written");
        }
    })
    .await;
    lambda_http::run(endpoint.router).await
}
