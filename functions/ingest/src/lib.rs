//! The ingest function: every object created in the raw bucket is validated, indexed and
//! deduplicated; every invalid one is quarantined with its reason; every removal is recorded.
//!
//! - [`notice`]: S3 event records into validated [`notice::Notice`]s (keys URL-decoded, kinds
//!   and sequencers checked), and the `s3:TestEvent` S3 sends when a notification is configured.
//! - [`handler`]: [`Ingest`], generic over the ports, so the Lambda binary and the local event
//!   router run the same code.
//!
//! Idempotency and ordering: the catalog record of a key stores the S3 sequencer of the last
//! event applied to it, and is written with a conditional put (absent, or at the version that
//! was read). An event whose sequencer is not newer changes nothing. Index items (first copy of
//! a hash, near-duplicate bands) are written before the record, and the record is the commit
//! point: a retry after a failure in between redoes the index writes, which are idempotent.

pub mod config;
pub mod data_yaml;
pub mod handler;
mod labels;
pub mod notice;

pub use config::IngestConfig;
pub use handler::{Ingest, IngestError, Outcome};
pub use notice::IngestEvent;
