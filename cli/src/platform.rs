//! The local platform: what a data directory holds and how the functions are wired to it.
//!
//! ```text
//! <data-dir>/buckets/raw/      uploads: datasets/<dataset>/[<split>/]<label>/<file>
//! <data-dir>/buckets/store/    quarantine/, and later snapshots and review samples
//! <data-dir>/buckets/models/   later: model artifacts and cards
//! <data-dir>/cvops.sqlite      the single table and the queues (WAL): training, training-dlq,
//!                              ingest-failures
//! <data-dir>/jobs/             job logs
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cvops_core::clock::{Clock, SystemClock};
use cvops_core::ports::{ObjectStore, Table};
use cvops_ingest::{Ingest, IngestConfig};
use cvops_local::{open_database, FsObjectStore, ObjectEvent, SqliteQueue, SqliteTable};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub const RAW_BUCKET: &str = "raw";
pub const STORE_BUCKET: &str = "store";
pub const MODELS_BUCKET: &str = "models";
/// Where the router keeps events a function failed on for good (AWS: the on-failure destination).
pub const INGEST_FAILURES_QUEUE: &str = "ingest-failures";
/// Training requests, and where those that keep failing end up (SQS's redrive after 5 receives).
pub const TRAINING_QUEUE: &str = "training";
pub const TRAINING_DEAD_LETTER_QUEUE: &str = "training-dlq";
pub const MAX_RECEIVES: u32 = 5;

#[derive(Debug)]
pub struct LocalPlatform {
    pub data_dir: PathBuf,
    pub objects: Arc<FsObjectStore>,
    pub table: Arc<SqliteTable>,
    pub queue: Arc<SqliteQueue>,
    pub clock: Arc<dyn Clock>,
    pub ingest: Ingest,
}

impl LocalPlatform {
    /// Opens (creating if needed) the platform in `data_dir`. Returns the receiver of bucket
    /// events, for the router.
    pub fn open(data_dir: &Path, ingest_config: IngestConfig) -> anyhow::Result<(Self, UnboundedReceiver<ObjectEvent>)> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (sender, events) = unbounded_channel();
        let objects = Arc::new(FsObjectStore::new(data_dir.join("buckets"))?.with_events(sender));
        let db_path = data_dir.join("cvops.sqlite");
        let db = open_database(&db_path).with_context(|| format!("cannot open {}", db_path.display()))?;
        let table = Arc::new(SqliteTable::open(db.clone(), clock.clone())?);
        let queue = Arc::new(SqliteQueue::open(db, clock.clone())?);
        queue.create_queue(INGEST_FAILURES_QUEUE, None, 0)?;
        queue.create_queue(TRAINING_QUEUE, Some(TRAINING_DEAD_LETTER_QUEUE), MAX_RECEIVES)?;
        let ingest = Ingest::new(
            objects.clone() as Arc<dyn ObjectStore>,
            table.clone() as Arc<dyn Table>,
            clock.clone(),
            IngestConfig { store_bucket: STORE_BUCKET.into(), ..ingest_config },
        );
        let platform = Self { data_dir: data_dir.to_owned(), objects, table, queue, clock, ingest };
        Ok((platform, events))
    }

    /// The ingest configuration of the local platform, with limits from the same environment
    /// variables the Lambda reads.
    pub fn ingest_config_from_env() -> anyhow::Result<IngestConfig> {
        Ok(IngestConfig::from_lookup(|name| match name {
            "CVOPS_STORE_BUCKET" => Some(STORE_BUCKET.to_owned()),
            other => std::env::var(other).ok(),
        })?)
    }
}
