//! The `cvops` command: the whole platform on one machine.
//!
//! - [`platform`]: the local platform in a data directory: buckets as folders, one SQLite
//!   database for the table and the queues, and the functions wired to them.
//! - [`router`]: the local event router. Every change in a local bucket becomes the `S3Event` AWS
//!   would send (keys URL-encoded, sequencers increasing), delivered to the function subscribed to
//!   that bucket, with retries, and a failure queue where AWS would use an on-failure destination.
//! - [`queues`]: local queue delivery as Lambda's SQS event source mapping does it: batches of up
//!   to ten messages as one `SqsEvent`, partial batch failures honoured.
//! - [`commands`]: one module per subcommand.
//!
//! This crate is the only place that picks the local adapters.

pub mod commands;
pub mod http;
pub mod platform;
pub mod queues;
pub mod router;
