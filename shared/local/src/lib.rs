//! cvops-local: the embedded implementations of the cvops ports, for running the whole platform on
//! one machine without an AWS account.
//!
//! - [`FsObjectStore`]: buckets as folders; puts are atomic (temp file + rename) and durable
//!   (flushed, file then folder, before they return), and every change can be announced as an
//!   [`ObjectEvent`], which the CLI's router turns into the `S3Event` AWS would have sent.
//! - [`SqliteTable`] and [`SqliteQueue`]: one SQLite database in WAL mode with `synchronous =
//!   FULL`, shared by both.
//! - [`ProcessJobRunner`]: jobs as child processes with the environment a Batch job gets.
//!
//! Calls do their (short) blocking I/O on the calling task: local mode runs one user's data on one
//! machine, and keeping the adapters synchronous inside keeps them simple to reason about.

mod db;
mod fs_store;
mod jobs;
mod queue;
mod table;

pub use db::{integrity_check, open_database};
pub use fs_store::{next_sequencer, FsObjectStore, ObjectEvent, ObjectEventKind};
pub use jobs::ProcessJobRunner;
pub use queue::SqliteQueue;
pub use table::SqliteTable;
