//! [`LocalPlatform`]: what a data directory holds and how the functions are wired to it.
//!
//! ```text
//! <data-dir>/buckets/raw/      uploads: datasets/<dataset>/[<split>/]<label>/<file>
//! <data-dir>/buckets/store/    quarantine/ and snapshots/
//! <data-dir>/buckets/models/   models/<model>/runs/<run>/<point>/{model.onnx,card.json}
//! <data-dir>/cvops.sqlite      the single table and the queues (WAL): training, training-dlq,
//!                              ingest-failures, register-model-failures
//! <data-dir>/jobs/             job logs
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cvops_core::clock::{Clock, SystemClock};
use cvops_core::config::{ConfigError, Vars};
use cvops_core::ports::Ports;
use cvops_dispatch_training::{Dispatch, DispatchConfig};
use cvops_infer::InferConfig;
use cvops_ingest::{Ingest, IngestConfig};
use cvops_local::{open_database, FsObjectStore, ObjectEvent, ProcessJobRunner, SqliteQueue, SqliteTable};
use cvops_monitor::{Monitor, MonitorConfig};
use cvops_register_model::{Register, RegisterConfig};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::Mutex;

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
    /// The ports below, as the handlers take them.
    pub ports: Ports,
    pub objects: Arc<FsObjectStore>,
    pub table: Arc<SqliteTable>,
    pub queue: Arc<SqliteQueue>,
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<ProcessJobRunner>,
    pub ingest: Ingest,
    pub dispatch: Dispatch,
    pub register: Register,
    pub monitor: Monitor,
    /// The optional variables the functions read their settings from (the environment, unless
    /// opened with others).
    pub settings: Vars,
    /// Changes to the buckets made through [`Self::objects`], in order, for the router.
    events: Mutex<UnboundedReceiver<ObjectEvent>>,
}

/// The hidden subcommand a local training job runs (`cvops <JOB_SUBCOMMAND>`), with the
/// environment a Batch job gets.
pub const JOB_SUBCOMMAND: &str = "run-training-job";

impl LocalPlatform {
    /// Opens (creating if needed) the platform in `data_dir`, with the functions' settings (limits,
    /// floors, windows) read from the same environment variables the Lambdas read.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(data_dir, Vars::env())
    }

    /// [`Self::open`] with the settings taken from `settings`. The resources (buckets, queues)
    /// are the data directory's own, given to each function as values.
    pub fn open_with(data_dir: &Path, settings: Vars) -> anyhow::Result<Self> {
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
        let ports = Ports {
            objects: objects.clone(),
            table: table.clone(),
            queue: queue.clone(),
            jobs: jobs.clone(),
            clock: clock.clone(),
        };
        let ingest = Ingest::new(&ports, IngestConfig::new(STORE_BUCKET).with_settings(&settings)?);
        let dispatch = Dispatch::new(&ports, Self::dispatch_config(data_dir)?.with_settings(&settings)?);
        let register = Register::new(&ports, Self::register_config(&settings)?);
        let monitor = Monitor::new(&ports, Self::monitor_config(&settings)?);
        Ok(Self {
            data_dir: data_dir.to_owned(),
            ports,
            objects,
            table,
            queue,
            clock,
            jobs,
            ingest,
            dispatch,
            register,
            monitor,
            settings,
            events: Mutex::new(events),
        })
    }

    /// The bucket changes made so far and not yet taken, in order (nothing waits for more). For
    /// when no [`Self::next_event`] is waiting: while one waits, it holds the events, and this
    /// returns none.
    pub fn pending_events(&self) -> Vec<ObjectEvent> {
        let mut pending = Vec::new();
        if let Ok(mut events) = self.events.try_lock() {
            while let Ok(event) = events.try_recv() {
                pending.push(event);
            }
        }
        pending
    }

    /// The next bucket change made through [`Self::objects`], waiting for one.
    pub async fn next_event(&self) -> Option<ObjectEvent> {
        self.events.lock().await.recv().await
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
            val_fraction: cvops_core::snapshot::DEFAULT_VAL_FRACTION,
            job_env: [("CVOPS_DATA_DIR".to_owned(), data_dir.to_string_lossy().into_owned())].into(),
        })
    }

    /// register-model's configuration: the local buckets, and the promotion floor from
    /// `CVOPS_PROMOTION_FLOOR` as on AWS.
    pub fn register_config(settings: &Vars) -> Result<RegisterConfig, ConfigError> {
        RegisterConfig::new(RAW_BUCKET, STORE_BUCKET, MODELS_BUCKET).with_settings(settings)
    }

    /// The monitor's configuration: the local store bucket and training queue, the window and the
    /// retraining rule from the same variables the Lambda reads.
    pub fn monitor_config(settings: &Vars) -> Result<MonitorConfig, ConfigError> {
        MonitorConfig::new(STORE_BUCKET, TRAINING_QUEUE).with_settings(settings)
    }

    /// The endpoint's configuration: the local models bucket, low-confidence inputs sampled to
    /// the store bucket, the limits from the same variables the Lambda reads.
    pub fn infer_config(&self) -> Result<InferConfig, ConfigError> {
        let mut config = InferConfig::new(MODELS_BUCKET);
        config.review_bucket = Some(STORE_BUCKET.into());
        config.with_settings(&self.settings)
    }
}
