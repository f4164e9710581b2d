//! The ports: small capability traits the functions are written against. Each has a local
//! implementation (`cvops-local`) and an AWS one, and one conformance suite (`cvops-tests`) that
//! every implementation must pass.
//!
//! All are `Send + Sync + Debug` and object safe, so handlers hold `Arc<dyn Port>` and tests can
//! wrap any implementation (to inject faults, say) without generics leaking everywhere.

pub mod jobs;
pub mod object_store;
pub mod queue;
pub mod table;

pub use jobs::{JobRunner, JobSpec, JobState, JobStatus, JobsError};
pub use object_store::{ListPage, ObjectMeta, ObjectStore, ObjectStoreError, ObjectStoreExt};
pub use queue::{Message, Queue, QueueError};
pub use table::{Item, Page, Table, TableError, TableExt, Update, CONFLICT_ATTEMPTS, PAGE_SIZE, RESERVED_ATTRIBUTES};

use std::sync::Arc;

use crate::clock::Clock;

/// Every port a handler may be built on, bundled: built once for AWS in each function's `main.rs`
/// (`cvops_aws::ports`) and once by the local platform, then handed to `X::new(&ports, config)`.
/// Cloning clones the handles, not the backends.
#[derive(Debug, Clone)]
pub struct Ports {
    pub objects: Arc<dyn ObjectStore>,
    pub table: Arc<dyn Table>,
    pub queue: Arc<dyn Queue>,
    pub jobs: Arc<dyn JobRunner>,
    pub clock: Arc<dyn Clock>,
}
