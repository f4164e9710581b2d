use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// The shared SDK configuration, loaded once at cold start.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub sdk: SdkConfig,
    /// Path-style S3 addressing, needed by S3-compatible endpoints on an IP address (moto,
    /// MinIO). On when `AWS_ENDPOINT_URL` is set.
    pub s3_path_style: bool,
}

impl AwsConfig {
    /// Region and credentials from the default chains, `AWS_ENDPOINT_URL` honoured; retries in
    /// standard mode (3 attempts with backoff, throttling included); every call bounded in time so
    /// a function never hangs on the network.
    pub async fn from_env() -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(Self::timeouts())
            .load()
            .await;
        let s3_path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
        Self { sdk, s3_path_style }
    }

    pub fn timeouts() -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(90))
            .build()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk).force_path_style(self.s3_path_style).build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn batch(&self) -> aws_sdk_batch::Client {
        aws_sdk_batch::Client::new(&self.sdk)
    }
}
