//! A training request through the same path as on AWS: onto the training queue, delivered to
//! dispatch-training as an SQS batch, which snapshots the dataset, records the run and submits
//! the job (here a child process: see [`crate::job_host`]). Then the job followed to its end,
//! its final state told to dispatch-training as Batch's state change event would.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use cvops_core::ports::{JobRunner, JobState, Queue, Table};
use cvops_core::registry::{self, ModelVersion};
use cvops_dispatch_training::{run_pk, run_sk, DispatchEvent, RunRecord, TrainingRequest};

use crate::delivery::deliver;
use crate::job_host::JobStates;
use crate::platform::{LocalPlatform, TRAINING_DEAD_LETTER_QUEUE, TRAINING_QUEUE};

/// Sends the request through the training queue to dispatch-training; returns the run, or the
/// reason the request was refused.
pub async fn submit(platform: &LocalPlatform, request: &TrainingRequest) -> anyhow::Result<RunRecord> {
    let body = serde_json::to_string(request)?;
    platform.queue.send(TRAINING_QUEUE, &body, &BTreeMap::new()).await?;
    let dispatch = &platform.dispatch;
    deliver(platform.queue.as_ref(), TRAINING_QUEUE, Duration::from_secs(60), |event| async move {
        dispatch.handle(&DispatchEvent::Sqs(event)).await
    })
    .await?;
    let run = platform.table.get(&run_pk(&request.model), &run_sk(&request.run_id())).await?;
    let Some(run) = run else {
        // Refused: the dead-letter queue holds it with the reason.
        let dead = platform.queue.receive(TRAINING_DEAD_LETTER_QUEUE, 10, Duration::ZERO).await?;
        let reason = dead.iter().find(|m| m.body == body).and_then(|m| m.attributes.get("reason").cloned());
        bail!(
            "the training request was refused ({}); it is kept in the {TRAINING_DEAD_LETTER_QUEUE} queue",
            reason.unwrap_or_else(|| "see the dead-letter queue".into())
        );
    };
    Ok(run.to_record()?)
}

/// The log file of a run's local job.
pub fn job_log(platform: &LocalPlatform, run: &RunRecord) -> PathBuf {
    platform.jobs.log_path(run.job_id.as_deref().unwrap_or_default())
}

/// Follows the job's log until it ends, handing each whole line to `on_line`; then tells
/// dispatch-training the job's final state and returns the versions its cards became.
pub async fn wait(platform: &LocalPlatform, run: &RunRecord, on_line: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<ModelVersion>> {
    let job_id = run.job_id.clone().ok_or_else(|| anyhow!("run {} has no job", run.run_id))?;
    let log = job_log(platform, run);
    let mut offset = 0u64;
    let mut states = JobStates::default();
    let status = loop {
        let status = platform.jobs.describe(&job_id).await?;
        offset = read_new_lines(&log, offset, on_line)?;
        if status.state.is_final() {
            break status;
        }
        // The job's host tells it too; a failure to tell it here does not stop the wait.
        if let Err(e) = states.tell(platform, &status).await {
            tracing::warn!(error = %e, job_id, "could not record the job's state");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The job host told its end already, unless the job died before it could.
    states.tell(platform, &status).await?;
    if status.state == JobState::Failed {
        bail!("training job {job_id} failed ({}); its log is {}", status.reason.unwrap_or_default(), log.display());
    }
    let versions = registry::versions(platform.table.as_ref(), &run.model).await?;
    Ok(versions.into_iter().filter(|v| v.lineage.as_ref().is_some_and(|l| l.run_id == run.run_id)).collect())
}

/// Hands the whole lines written to `log` since `offset` to `on_line`; returns the new offset.
fn read_new_lines(log: &Path, offset: u64, on_line: &mut dyn FnMut(&str)) -> anyhow::Result<u64> {
    let Ok(mut file) = std::fs::File::open(log) else { return Ok(offset) };
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    // Only whole lines; the rest waits for the next look.
    let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    text[..complete].lines().for_each(&mut *on_line);
    Ok(offset + complete as u64)
}
