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
pub use table::{Item, Page, Table, TableError, TableExt, RESERVED_ATTRIBUTES};
