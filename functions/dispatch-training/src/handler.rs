//! The dispatch-training handler: queue messages into runs and jobs; job state changes into run
//! status.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use cvops_core::catalog::{dataset_pk, DATASETS_PK};
use cvops_core::clock::Clock;
use cvops_core::failure::Retryable;
use cvops_core::key::Split;
use cvops_core::ports::{
    Item, JobRunner, JobSpec, JobsError, ObjectStore, Ports, Queue, QueueError, Table, TableError, TableExt, Update,
};
use cvops_core::registry;
pub use cvops_core::runs::{job_pk, run_pk, run_sk, RunRecord, RunStatus, JOB_RUN_SK};
use cvops_core::snapshot::{self, SnapshotError, SnapshotOptions};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument, warn};

pub use crate::config::DispatchConfig;
use crate::request::{RequestError, TrainingRequest};

/// A model needs train images to learn from and val images to pick its epoch: a snapshot without
/// either is refused before any run or job exists. (Without test images a version is registered
/// but not evaluated, so it never promotes by itself: that is the gate's to say.)
fn require_training_splits(snap: &snapshot::Snapshot) -> Result<(), RequestError> {
    for split in [Split::Train, Split::Val] {
        if snap.samples_in(split) == 0 {
            let counts = Split::ALL.iter().map(|s| format!("{s} {}", snap.samples_in(*s))).collect::<Vec<_>>().join(", ");
            return Err(RequestError::MissingSplit { dataset: snap.dataset.clone(), split: split.as_str(), counts });
        }
    }
    Ok(())
}

/// Everything the function receives: training requests from SQS, or Batch's job state changes
/// from EventBridge.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum DispatchEvent {
    Sqs(SqsEvent),
    JobStateChange(Box<EventBridgeEvent<BatchJobDetail>>),
}

/// The part of a "Batch Job State Change" event's detail the function reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchJobDetail {
    pub job_id: String,
    pub status: String,
    #[serde(default)]
    pub status_reason: Option<String>,
}

/// How long a delivery's claim on a run holds off other deliveries: the training queue's
/// visibility timeout, after which SQS would hand the message to someone else anyway.
const CLAIM_LEASE: chrono::Duration = chrono::Duration::seconds(360);

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The request can never succeed: dead-letter it.
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("catalog: {0}")]
    Table(#[from] TableError),
    #[error("snapshot: {0}")]
    Snapshot(SnapshotError),
    #[error("job runner: {0}")]
    Jobs(#[from] JobsError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// Another delivery of a request for the same run holds the claim: retry later.
    #[error("run {0} is being submitted by another delivery")]
    Claimed(String),
}

/// A refused request never succeeds (it is dead-lettered); everything else may on a retry.
impl Retryable for DispatchError {
    fn is_retryable(&self) -> bool {
        !matches!(self, DispatchError::Request(_))
    }
}

impl From<SnapshotError> for DispatchError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Empty(dataset) => DispatchError::Request(RequestError::EmptyDataset(dataset)),
            SnapshotError::NoClassNames(dataset) => DispatchError::Request(RequestError::NoClassNames(dataset)),
            SnapshotError::Table(e) => DispatchError::Table(e),
            other => DispatchError::Snapshot(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dispatch {
    table: Arc<dyn Table>,
    objects: Arc<dyn ObjectStore>,
    queue: Arc<dyn Queue>,
    jobs: Arc<dyn JobRunner>,
    clock: Arc<dyn Clock>,
    config: DispatchConfig,
}

impl Dispatch {
    pub fn new(ports: &Ports, config: DispatchConfig) -> Self {
        let Ports { objects, table, queue, jobs, clock } = ports.clone();
        Self { table, objects, queue, jobs, clock, config }
    }

    pub async fn handle(&self, event: &DispatchEvent) -> Result<SqsBatchResponse, DispatchError> {
        match event {
            DispatchEvent::Sqs(event) => Ok(self.handle_messages(event).await),
            DispatchEvent::JobStateChange(event) => {
                self.job_state_changed(&event.detail).await?;
                Ok(SqsBatchResponse::default())
            }
        }
    }

    /// Each message on its own: a refused request is dead-lettered with its reason and counts as
    /// handled; a transient failure is a batch item failure, so SQS redelivers only that one.
    pub async fn handle_messages(&self, event: &SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in &event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let failed = match self.handle_message(message).await {
                Ok(run) => {
                    info!(run_id = %run.run_id, job_id = ?run.job_id, "training dispatched");
                    false
                }
                Err(DispatchError::Request(refused)) => match self.dead_letter(message, &refused).await {
                    Ok(()) => false,
                    Err(e) => {
                        warn!(error = %e, "could not dead-letter a refused request; SQS will redeliver it");
                        true
                    }
                },
                Err(e) => {
                    warn!(error = %e, message_id = %id, "dispatch failed; SQS will redeliver the message");
                    true
                }
            };
            if failed {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    #[instrument(skip_all, fields(message_id = message.message_id.as_deref().unwrap_or_default()))]
    async fn handle_message(&self, message: &SqsMessage) -> Result<RunRecord, DispatchError> {
        let request = TrainingRequest::parse(message.body.as_deref().unwrap_or_default())?;
        let delivery = message.message_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.dispatch_as(&request, &delivery).await
    }

    async fn dead_letter(&self, message: &SqsMessage, refused: &RequestError) -> Result<(), QueueError> {
        warn!(code = refused.code(), reason = %refused, "training request refused; sent to the dead-letter queue");
        let attributes = BTreeMap::from([
            ("error_code".to_owned(), refused.code().to_owned()),
            ("reason".to_owned(), refused.to_string()),
            ("original_message_id".to_owned(), message.message_id.clone().unwrap_or_default()),
        ]);
        self.queue.send(&self.config.dead_letter_queue, message.body.as_deref().unwrap_or_default(), &attributes).await?;
        Ok(())
    }

    /// Snapshot (if needed), record the run, submit its job. Safe to repeat.
    pub async fn dispatch(&self, request: &TrainingRequest) -> Result<RunRecord, DispatchError> {
        self.dispatch_as(request, &uuid::Uuid::new_v4().to_string()).await
    }

    /// [`Self::dispatch`] on behalf of `delivery` (the SQS message id: a redelivery of the same
    /// message is the same delivery, and may finish what its first attempt started).
    ///
    /// The run is claimed with a conditional write before anything is submitted, and the job is
    /// looked up by its deterministic name before a submit: a delivery that submitted and then
    /// failed to record the job id leaves a job the next delivery finds instead of a second one.
    pub async fn dispatch_as(&self, request: &TrainingRequest, delivery: &str) -> Result<RunRecord, DispatchError> {
        if self.table.get(DATASETS_PK, &request.dataset).await?.is_none() {
            return Err(RequestError::UnknownDataset(request.dataset.clone()).into());
        }
        let run_id = request.run_id();
        let (pk, sk) = (run_pk(&request.model), run_sk(&run_id));
        // A redelivery finds its run, and its snapshot, before anything new is made.
        let existing = self.table.get(&pk, &sk).await?;
        let (run, version) = match existing {
            Some(item) => (item.to_record::<RunRecord>()?, item.version),
            None => self.record_run(request, &run_id).await?,
        };
        if run.job_id.is_some() {
            info!(run_id = %run.run_id, "run already dispatched: a redelivered request");
            return Ok(run);
        }
        let run = self.claim(run, version, delivery).await?;
        let job_id = match self.jobs.find(&run.job_name()).await? {
            Some(job_id) => {
                info!(run_id = %run.run_id, %job_id, "the job was submitted by an earlier delivery: recording it");
                job_id
            }
            None => self.jobs.submit(&self.job_spec(&run)).await?,
        };
        self.table
            .put(Item::new(job_pk(&job_id), JOB_RUN_SK).with("model", run.model.clone()).with("run_id", run.run_id.clone()))
            .await?;
        self.record_job(&run, job_id).await
    }

    /// Writes the job id into the run; a job state event may have moved the run on meanwhile,
    /// so it is read again and its status never moves back.
    async fn record_job(&self, run: &RunRecord, job_id: String) -> Result<RunRecord, DispatchError> {
        let (pk, sk) = (run_pk(&run.model), run_sk(&run.run_id));
        let now = self.clock.now().to_rfc3339();
        self.table
            .update(&pk, &sk, |item| {
                let item = item.ok_or_else(|| TableError::Conflict { pk: pk.clone(), sk: sk.clone() })?;
                let mut run: RunRecord = item.to_record()?;
                run.job_id = Some(job_id.clone());
                run.status = run.status.max(RunStatus::Submitted);
                run.updated_at = now.clone();
                Ok::<_, DispatchError>(Update::Write(Item::from_record(&pk, &sk, &run)?, run))
            })
            .await
    }

    /// Snapshots the dataset if the request names no snapshot, and records the run (pending).
    async fn record_run(&self, request: &TrainingRequest, run_id: &str) -> Result<(RunRecord, u64), DispatchError> {
        let snapshot_id = match &request.snapshot {
            Some(id) => {
                if self.table.get(&dataset_pk(&request.dataset), &snapshot::snapshot_sk(id)).await?.is_none() {
                    return Err(RequestError::UnknownSnapshot { dataset: request.dataset.clone(), snapshot: id.clone() }.into());
                }
                id.clone()
            }
            None => {
                let now = self.clock.now().to_rfc3339();
                let options = self.snapshot_options();
                let store = &self.config.store_bucket;
                let snap =
                    snapshot::create_with(self.table.as_ref(), self.objects.as_ref(), store, &request.dataset, now, options)
                        .await?;
                require_training_splits(&snap)?;
                snap.id
            }
        };
        let (pk, sk) = (run_pk(&request.model), run_sk(run_id));
        let now = self.clock.now().to_rfc3339();
        registry::remember_model(self.table.as_ref(), &request.model, &now).await?;
        let fresh = RunRecord {
            run_id: run_id.to_owned(),
            model: request.model.clone(),
            dataset: request.dataset.clone(),
            snapshot: snapshot_id,
            points: request.points(),
            reason: request.reason.clone(),
            status: RunStatus::Pending,
            job_id: None,
            status_reason: None,
            claimed_by: None,
            created_at: now.clone(),
            updated_at: now,
        };
        match self.table.put_if_absent(Item::from_record(&pk, &sk, &fresh)?).await {
            Ok(version) => Ok((fresh, version)),
            Err(TableError::Conflict { .. }) => {
                let item =
                    self.table.get(&pk, &sk).await?.ok_or_else(|| TableError::Conflict { pk: pk.clone(), sk: sk.clone() })?;
                Ok((item.to_record::<RunRecord>()?, item.version))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims the run's submission for `delivery` with a conditional write. A claim held by
    /// another delivery stands until its lease runs out; the same delivery (a redelivered
    /// message) takes its own claim back at once.
    async fn claim(&self, mut run: RunRecord, version: u64, delivery: &str) -> Result<RunRecord, DispatchError> {
        let now = self.clock.now();
        if run.status > RunStatus::Submitting {
            // A job state event got here first: the job exists, only its id is to be recorded.
            return Ok(run);
        }
        if run.status == RunStatus::Submitting && run.claimed_by.as_deref() != Some(delivery) {
            let claimed_at = chrono::DateTime::parse_from_rfc3339(&run.updated_at).map(|t| t.to_utc()).unwrap_or(now);
            if now - claimed_at < CLAIM_LEASE {
                return Err(DispatchError::Claimed(run.run_id));
            }
        }
        run.status = RunStatus::Submitting;
        run.claimed_by = Some(delivery.to_owned());
        run.updated_at = now.to_rfc3339();
        let (pk, sk) = (run_pk(&run.model), run_sk(&run.run_id));
        match self.table.put_if_version(Item::from_record(&pk, &sk, &run)?, version).await {
            Ok(_) => Ok(run),
            Err(TableError::Conflict { .. }) => Err(DispatchError::Claimed(run.run_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// How this function cuts snapshots (the share of train carved into val).
    pub fn snapshot_options(&self) -> SnapshotOptions {
        SnapshotOptions { val_fraction: self.config.val_fraction, ..SnapshotOptions::default() }
    }

    /// What the trainer job gets: the run, the snapshot to read, where to write the model, and
    /// the hyperparameter points (a child of an array job takes `AWS_BATCH_JOB_ARRAY_INDEX`).
    pub fn job_spec(&self, run: &RunRecord) -> JobSpec {
        let mut env = self.config.job_env.clone();
        env.extend([
            ("CVOPS_RUN_ID".to_owned(), run.run_id.clone()),
            ("CVOPS_MODEL".to_owned(), run.model.clone()),
            ("CVOPS_DATASET".to_owned(), run.dataset.clone()),
            ("CVOPS_SNAPSHOT".to_owned(), run.snapshot.clone()),
            ("CVOPS_SNAPSHOT_DESCRIPTOR".to_owned(), snapshot::descriptor_key(&run.dataset, &run.snapshot)),
            ("CVOPS_RAW_BUCKET".to_owned(), self.config.raw_bucket.clone()),
            ("CVOPS_STORE_BUCKET".to_owned(), self.config.store_bucket.clone()),
            ("CVOPS_MODELS_BUCKET".to_owned(), self.config.models_bucket.clone()),
            ("CVOPS_HYPERPARAMETER_POINTS".to_owned(), serde_json::to_string(&run.points).expect("points serialise")),
        ]);
        JobSpec {
            name: run.job_name(),
            image: self.config.trainer_image.clone(),
            command: self.config.trainer_command.clone(),
            env,
            gpus: self.config.gpus,
            array_size: run.point_count(),
        }
    }

    /// Moves the run forward to the job's state; never backwards (events arrive out of order).
    #[instrument(skip_all, fields(job_id = %detail.job_id, status = %detail.status))]
    pub async fn job_state_changed(&self, detail: &BatchJobDetail) -> Result<Option<RunRecord>, DispatchError> {
        let Some(status) = RunStatus::from_batch(&detail.status) else { return Ok(None) };
        let Some(index) = self.table.get(&job_pk(&detail.job_id), JOB_RUN_SK).await? else {
            info!("not a cvops run's job (or an array child): ignored");
            return Ok(None);
        };
        let (model, run_id) =
            (index.str_attr("model").unwrap_or_default().to_owned(), index.str_attr("run_id").unwrap_or_default().to_owned());
        let (pk, sk) = (run_pk(&model), run_sk(&run_id));
        let now = self.clock.now().to_rfc3339();
        self.table
            .update(&pk, &sk, |item| {
                let Some(item) = item else { return Ok(Update::Keep(None)) };
                let mut run: RunRecord = item.to_record()?;
                if run.status >= RunStatus::Succeeded || status <= run.status {
                    return Ok(Update::Keep(Some(run)));
                }
                run.status = status;
                run.job_id.get_or_insert_with(|| detail.job_id.clone());
                run.status_reason = detail.status_reason.clone();
                run.updated_at = now.clone();
                Ok::<_, DispatchError>(Update::Write(Item::from_record(&pk, &sk, &run)?, Some(run)))
            })
            .await
    }
}
