//! cvops-aws: the cvops ports on the AWS SDK for Rust.
//!
//! - [`S3ObjectStore`]: byte-limited streaming gets, puts, copies, deletes, paginated listings.
//! - [`DynamoTable`]: the single-table design; failed conditions come back as
//!   `TableError::Conflict`, counters use `ADD`, expiry is the `expires_at` TTL attribute.
//! - [`SqsQueue`]: send, receive, delete, change visibility, message attributes; queues are named
//!   by URL.
//! - [`BatchJobRunner`]: Batch jobs with GPU requirements, array properties and a retry strategy
//!   that retries host and spot terminations only.
//! - [`AwsConfig`]: the SDK configuration, read once from the environment (region, credentials
//!   chain, `AWS_ENDPOINT_URL`), with standard-mode retries and timeouts.
//! - [`iam`]: what IAM must grant for each call the adapters make, and which calls each function
//!   makes (the template test checks `infra/template.yaml` against it).
//!
//! - [`ports::from_env`]: all of them bundled as `cvops_core::ports::Ports`, for `X::new(&ports,
//!   config)`; [`lambda::Failure`]: a handler's error as Lambda reports it.
//!
//! Only `main.rs` of a function (and the AWS tests) construct these; handlers see the ports.

mod batch;
mod config;
mod dynamodb;
pub mod env;
mod errors;
pub mod iam;
pub mod lambda;
pub mod ports;
mod s3;
mod sqs;

pub use batch::BatchJobRunner;
pub use config::AwsConfig;
pub use dynamodb::{DynamoTable, TTL_ATTRIBUTE};
pub use s3::S3ObjectStore;
pub use sqs::SqsQueue;
