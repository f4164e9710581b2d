//! The local job host: what AWS Batch, S3's notifications and EventBridge do around a training
//! job, on one machine where no service runs between commands.
//!
//! - [`run_job`]: what a training job's child process runs (`cvops run-training-job`, started by
//!   dispatch-training through the local job runner with a Batch job's environment). The job, the
//!   trainer's library, writes its model and its card and nothing else. The host around it then
//!   does what AWS does on its own: it routes the bucket events the job caused through the router
//!   (the card's `ObjectCreated` to register-model, the one road a card takes), and tells
//!   dispatch-training the job's states, as Batch's state change events do. No other process
//!   routes a job's card: the folder watcher watches the raw bucket only.
//! - [`JobStates`]: the same state changes seen from the process that started the jobs (`cvops
//!   train --wait`, `cvops up`), which also sees a job that died before it could tell its end.
//!   dispatch-training moves a run forward only, so a state told twice changes nothing.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use cvops_core::config::Vars;
use cvops_core::ports::{JobRunner, JobState, JobStatus};
use cvops_core::registry::ModelVersion;
use cvops_dispatch_training::BatchJobDetail;
use cvops_register_model::Outcome;
use cvops_trainer::job::{device, Stderr};
use cvops_trainer::TrainerConfig;

use crate::platform::LocalPlatform;
use crate::router::route_model_card;

/// Runs the training job this process was started for, then routes what it wrote and tells its
/// end. Its output is the job's log; a failure exits non-zero.
pub async fn run_job() -> anyhow::Result<()> {
    let vars = Vars::env();
    let data_dir = vars.required("CVOPS_DATA_DIR").context("this subcommand is started by `cvops train`")?;
    let config = TrainerConfig::from_vars(&vars)?;
    let platform = LocalPlatform::open(Path::new(&data_dir))?;
    let job_id = vars.text("AWS_BATCH_JOB_ID").unwrap_or_default();
    let mut states = JobStates::default();
    let mut tell = async |state: JobState, reason: Option<String>| {
        let status = JobStatus { id: job_id.clone(), state, reason };
        if let Err(e) = states.tell(&platform, &status).await {
            eprintln!("warning: could not record the job's state {}: {e:#}", batch_status(state));
        }
    };
    tell(JobState::Running, None).await;
    let trained = cvops_trainer::run(&config, platform.objects.as_ref(), &device(), &Stderr).await;
    for event in platform.pending_events() {
        for outcome in route_model_card(&platform, &event).await? {
            let (version, promoted) = match outcome {
                Outcome::Registered { version, promoted } => (version, promoted),
                Outcome::Rejected { version } => (version, false),
                _ => continue,
            };
            eprintln!("register-model: {}", version_summary(&version, promoted));
        }
    }
    match trained {
        Ok(card) => {
            if let Some(metrics) = &card.metrics {
                eprintln!("done: {}", metrics.summary());
            }
            tell(JobState::Succeeded, None).await;
            Ok(())
        }
        Err(e) => {
            tell(JobState::Failed, Some(e.to_string())).await;
            Err(e.into())
        }
    }
}

fn version_summary(version: &ModelVersion, promoted: bool) -> serde_json::Value {
    serde_json::json!({
        "model": version.model,
        "version": version.version,
        "status": version.status,
        "task": version.task,
        "metric": version.task.metric(),
        "score": version.score(),
        "accuracy": version.score().filter(|_| version.task == cvops_core::task::Task::Classification),
        "promoted": promoted,
        "reason_code": version.reason_code,
        "gate_code": version.gate.as_ref().and_then(|g| g.code.clone()),
    })
}

/// The state Batch names in its events.
pub fn batch_status(state: JobState) -> &'static str {
    match state {
        JobState::Submitted => "SUBMITTED",
        JobState::Running => "RUNNING",
        JobState::Succeeded => "SUCCEEDED",
        JobState::Failed => "FAILED",
    }
}

/// Follows the jobs this process started and tells dispatch-training each change of state, once.
#[derive(Debug, Default)]
pub struct JobStates {
    told: HashMap<String, JobState>,
}

impl JobStates {
    /// Tells dispatch-training the state of `job_id` if it changed since it was last told.
    pub async fn tell(&mut self, platform: &LocalPlatform, status: &JobStatus) -> anyhow::Result<bool> {
        if self.told.get(&status.id) == Some(&status.state) {
            return Ok(false);
        }
        let detail = BatchJobDetail {
            job_id: status.id.clone(),
            status: batch_status(status.state).into(),
            status_reason: status.reason.clone(),
        };
        platform.dispatch.job_state_changed(&detail).await?;
        self.told.insert(status.id.clone(), status.state);
        Ok(true)
    }

    /// Looks at every job this process started whose end it has not told yet, and tells what
    /// changed; returns those jobs' states.
    pub async fn follow(&mut self, platform: &LocalPlatform) -> anyhow::Result<Vec<JobStatus>> {
        let mut changed = Vec::new();
        for id in platform.jobs.job_ids() {
            if self.told.get(&id).is_some_and(|state| state.is_final()) {
                continue;
            }
            let status = platform.jobs.describe(&id).await?;
            if self.tell(platform, &status).await? {
                changed.push(status);
            }
        }
        Ok(changed)
    }
}
