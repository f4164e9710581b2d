//! cvops-platform: the whole platform on one machine, on embedded storage, with no AWS account.
//!
//! - [`platform`]: [`LocalPlatform`], a data directory: buckets as folders, one SQLite database
//!   for the table and the queues, and the functions wired to them through one `Ports` bundle.
//! - [`router`]: the local event router. Every change in a local bucket becomes the `S3Event` AWS
//!   would send (keys URL-encoded, sequencers increasing), delivered to the function subscribed to
//!   that bucket, with Lambda's asynchronous retries, and a failure queue where AWS would use an
//!   on-failure destination.
//! - [`delivery`]: queue delivery as Lambda's SQS event source mapping does it: batches of up to
//!   ten messages as one `SqsEvent`, partial batch failures honoured.
//! - [`watcher`]: files copied into the bucket folders by hand (or by another process) become
//!   the events S3 would send.
//! - [`runtime`]: `cvops up` as a loop: the endpoint, the router, the training queue and the
//!   monitor's schedule in one process, until told to stop.
//! - [`upload`], [`training`]: what `aws s3 cp` and a training request do, here.
//! - [`job_host`]: what a local training job's process runs; [`endpoint`]: the inference
//!   endpoint on a local address.
//!
//! This crate is the only place that picks the local adapters; the `cvops` command is arguments
//! and printing over it.

pub mod delivery;
pub mod endpoint;
pub mod export;
pub mod import;
pub mod job_host;
pub mod platform;
pub mod router;
pub mod runtime;
pub mod training;
pub mod upload;
pub mod watcher;

pub use platform::*;
