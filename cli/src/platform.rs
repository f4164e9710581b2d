//! The local platform: what a data directory holds and how the functions are wired to it.
//!
//! ```text
//! <data-dir>/buckets/raw/      uploads: datasets/<dataset>/[<split>/]<label>/<file>
//! <data-dir>/buckets/store/    quarantine/ and snapshots/
//! <data-dir>/buckets/models/   models/<model>/runs/<run>/<point>/{model.onnx,card.json}
//! <data-dir>/cvops.sqlite      the single table and the queues (WAL): training, training-dlq,
//!                              ingest-failures, register-model-failures
//! <data-dir>/jobs/             job logs
//! ```

use cvops_monitor::{Monitor, MonitorConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cvops_core::clock::{Clock, SystemClock};
use cvops_core::ports::{JobRunner, ObjectStore, Queue, Table};
use cvops_dispatch_training::{Dispatch, DispatchConfig};
use cvops_ingest::{Ingest, IngestConfig};
use cvops_local::{open_database, FsObjectStore, ObjectEvent, ProcessJobRunner, SqliteQueue, SqliteTable};
use cvops_register_model::{Register, RegisterConfig};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub const RAW_BUCKET: &str = "raw";
pub const STORE_BUCKET: &str = "store";
pub const MODELS_BUCKET: &str = "models";
/// Where the router keeps events a function failed on for good (AWS: the on-failure destination).
pub const INGEST_FAILURES_QUEUE: &str = "ingest-failures";
pub const REGISTER_FAILURES_QUEUE: &str = "register-model-failures";
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
    pub jobs: Arc<ProcessJobRunner>,
    pub ingest: Ingest,
    pub dispatch: Dispatch,
    pub register: Register,
    pub monitor: Monitor,
}

/// The hidden subcommand a local training job runs (`cvops <JOB_SUBCOMMAND>`), with the
/// environment a Batch job gets.
pub const JOB_SUBCOMMAND: &str = "run-training-job";

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
        queue.create_queue(REGISTER_FAILURES_QUEUE, None, 0)?;
        queue.create_queue(TRAINING_QUEUE, Some(TRAINING_DEAD_LETTER_QUEUE), MAX_RECEIVES)?;
        let jobs = Arc::new(ProcessJobRunner::new(data_dir.join("jobs"))?);
        let ingest = Ingest::new(
            objects.clone() as Arc<dyn ObjectStore>,
            table.clone() as Arc<dyn Table>,
            clock.clone(),
            IngestConfig { store_bucket: STORE_BUCKET.into(), ..ingest_config },
        );
        let dispatch = Dispatch::new(
            table.clone() as Arc<dyn Table>,
            objects.clone() as Arc<dyn ObjectStore>,
            queue.clone() as Arc<dyn Queue>,
            jobs.clone() as Arc<dyn JobRunner>,
            clock.clone(),
            Self::dispatch_config(data_dir)?,
        );
        let register = Register::new(
            table.clone() as Arc<dyn Table>,
            objects.clone() as Arc<dyn ObjectStore>,
            clock.clone(),
            Self::register_config_from_env()?,
        );
        let monitor = Monitor::new(
            table.clone() as Arc<dyn Table>,
            objects.clone() as Arc<dyn ObjectStore>,
            queue.clone() as Arc<dyn Queue>,
            clock.clone(),
            Self::monitor_config_from_env()?,
        );
        let platform =
            Self { data_dir: data_dir.to_owned(), objects, table, queue, clock, jobs, ingest, dispatch, register, monitor };
        Ok((platform, events))
    }

    /// Jobs are this very executable started again with [`JOB_SUBCOMMAND`]: one `cargo run -p
    /// cvops` builds everything. The data directory travels as an absolute path, since the job
    /// opens the same platform.
    fn dispatch_config(data_dir: &Path) -> anyhow::Result<DispatchConfig> {
        let exe = std::env::current_exe().context("cannot find the cvops executable to start training jobs with")?;
        let data_dir = std::path::absolute(data_dir)?;
        Ok(DispatchConfig {
            raw_bucket: RAW_BUCKET.into(),
            store_bucket: STORE_BUCKET.into(),
            models_bucket: MODELS_BUCKET.into(),
            dead_letter_queue: TRAINING_DEAD_LETTER_QUEUE.into(),
            trainer_image: "local".into(),
            trainer_command: vec![exe.to_string_lossy().into_owned(), JOB_SUBCOMMAND.into()],
            gpus: 0,
            job_env: [("CVOPS_DATA_DIR".to_owned(), data_dir.to_string_lossy().into_owned())].into(),
        })
    }

    /// register-model's configuration: the local buckets, and the promotion floor from
    /// `CVOPS_PROMOTION_FLOOR` as on AWS.
    pub fn register_config_from_env() -> anyhow::Result<RegisterConfig> {
        Ok(RegisterConfig::from_lookup(|name| match name {
            "CVOPS_RAW_BUCKET" => Some(RAW_BUCKET.to_owned()),
            "CVOPS_STORE_BUCKET" => Some(STORE_BUCKET.to_owned()),
            "CVOPS_MODELS_BUCKET" => Some(MODELS_BUCKET.to_owned()),
            other => std::env::var(other).ok(),
        })?)
    }

    /// The monitor's configuration: the local store bucket and training queue, the window and the
    /// retraining rule from the same environment variables the Lambda reads.
    pub fn monitor_config_from_env() -> anyhow::Result<MonitorConfig> {
        MonitorConfig::from_lookup(|name| match name {
            "CVOPS_STORE_BUCKET" => Some(STORE_BUCKET.to_owned()),
            "CVOPS_TRAINING_QUEUE_URL" => Some(TRAINING_QUEUE.to_owned()),
            other => std::env::var(other).ok(),
        })
        .map_err(anyhow::Error::msg)
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
