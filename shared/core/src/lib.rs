//! cvops-core: the domain of cvops, free of any cloud SDK and of SQL.
//!
//! - [`validate`]: the image validator every upload (and `cvops validate`) goes through, with its
//!   stable [`reason::ReasonCode`]s.
//! - [`stats`]: brightness, contrast, sharpness and the 64-bit difference hash of a decoded image.
//! - [`key`]: the object-key layout `datasets/<dataset>/<split>/<label>/<file>` as validated types.
//! - [`annotation`]: boxes, the codes an annotation is refused with, label-file and class-name
//!   records.
//! - [`catalog`]: the catalog records ingest writes, and how they map onto table items.
//! - [`ports`]: the small traits (object store, table, queue, job runner) that the functions are
//!   written against; `cvops-local` and (later) `cvops-aws` implement them.
//! - [`snapshot`]: immutable, content-addressed dataset snapshots with their feature baseline.
//! - [`preprocess`], [`model_card`], [`metrics`], [`registry`]: what the trainer, register-model and
//!   the endpoint agree on: one preprocessing, one card format, one way to count, one registry.
//! - [`detect`]: a detector's raw output into boxes, and non-maximum suppression (the endpoint's
//!   and the trainer's validation alike).
//! - [`drift`]: PSI, Wasserstein and Jensen-Shannon, and the OK / WARN / DRIFT verdicts.
//! - [`monitoring`]: the hourly per-version aggregates the endpoint feeds and the monitor reads.
//! - [`clock`]: time as a port, so expiry and ordering can be tested.
//!
//! Why the validator lives here and not in the ingest function: the CLI's `validate` command and
//! the ingest Lambda must give the same answer for the same bytes, so both call this one function.

pub mod annotation;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod detect;
pub mod drift;
pub mod failure;
pub mod health;
pub mod key;
pub mod metrics;
pub mod model_card;
pub mod monitoring;
pub mod ports;
pub mod preprocess;
pub mod reason;
pub mod registry;
pub mod runs;
pub mod schema;
pub mod sequencer;
pub mod snapshot;
pub mod stats;
pub mod task;
pub mod validate;

pub use reason::ReasonCode;
