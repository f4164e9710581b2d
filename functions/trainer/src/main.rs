//! The Batch job: config from the environment once, the S3 adapter, then the job. A failure exits
//! non-zero, so Batch marks the job FAILED (and retries only host or spot terminations).

use std::process::ExitCode;

use cvops_aws::{AwsConfig, S3ObjectStore};
use cvops_trainer::job::{device, Stderr};
use cvops_trainer::TrainerConfig;

#[tokio::main]
async fn main() -> ExitCode {
    cvops_aws::env::init_tracing();
    let config = match TrainerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let aws = AwsConfig::from_env().await;
    let objects = S3ObjectStore::new(aws.s3());
    match cvops_trainer::run(&config, &objects, &device(), &Stderr).await {
        Ok(card) => {
            if let Some(metrics) = &card.metrics {
                eprintln!("done: {}", metrics.summary());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
