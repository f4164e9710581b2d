//! `cvops train`: a training request through the same path as on AWS. The request goes onto the
//! training queue; the queue delivers it to dispatch-training as an SQS batch; dispatch snapshots
//! the dataset, records the run and submits the job, here a child process running this very
//! executable's hidden `run-training-job` subcommand with a Batch job's environment. The job trains,
//! writes the model and its card, and routes the card's ObjectCreated event to register-model.
//! `--wait` follows the job's log and prints the registered version.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cvops_core::ports::{JobRunner, JobState, Queue, Table};
use cvops_core::registry::{self, ModelVersion};
use cvops_dispatch_training::{run_pk, run_sk, BatchJobDetail, DispatchEvent, RunRecord, TrainingRequest};
use cvops_trainer::job::{device, Stderr};
use cvops_trainer::TrainerConfig;

use super::catalog::require_dataset;
use crate::platform::{LocalPlatform, TRAINING_DEAD_LETTER_QUEUE, TRAINING_QUEUE};
use crate::queues::deliver;
use crate::router::route_model_card;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub dataset: String,
    /// The model's name in the registry [default: the dataset's name].
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Any other hyperparameter, such as `--set learning_rate=0.003 --set width=32`.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub set: Vec<(String, f64)>,
    /// Train on this snapshot instead of a fresh one.
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Follow the job's progress and print the registered version.
    #[arg(long)]
    pub wait: bool,
}

pub fn parse_assignment(text: &str) -> Result<(String, f64), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let value = value.parse::<f64>().map_err(|_| format!("{value:?} is not a number"))?;
    Ok((name.to_owned(), value))
}

impl Args {
    pub fn request(&self) -> TrainingRequest {
        let mut hyperparameters: BTreeMap<String, f64> = self.set.iter().cloned().collect();
        if let Some(epochs) = self.epochs {
            hyperparameters.insert("epochs".into(), f64::from(epochs));
        }
        TrainingRequest {
            dataset: self.dataset.clone(),
            model: self.model.clone().unwrap_or_else(|| self.dataset.clone()),
            snapshot: self.snapshot.clone(),
            hyperparameters,
            sweep: BTreeMap::new(),
            // Every `cvops train` is a deliberate new run.
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            reason: Some("manual".into()),
        }
    }
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let (platform, _events) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let run = submit(&platform, &args.request()).await?;
    if !args.wait {
        println!(
            "follow it with: cvops --data-dir {} runs    (or tail -f {})",
            data_dir.display(),
            job_log(&platform, &run).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let versions = wait(&platform, &run).await?;
    for version in &versions {
        print_version(version);
    }
    Ok(ExitCode::SUCCESS)
}

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
    let run: RunRecord = run.to_record()?;
    println!(
        "run {} of model {}: snapshot {} of {}, job {}",
        run.run_id,
        run.model,
        run.snapshot,
        run.dataset,
        run.job_id.as_deref().unwrap_or("not submitted")
    );
    Ok(run)
}

fn job_log(platform: &LocalPlatform, run: &RunRecord) -> PathBuf {
    platform.data_dir.join("jobs").join(format!("{}.log", run.job_id.as_deref().unwrap_or_default()))
}

/// Follows the job's log until it ends, then returns the versions its cards became.
pub async fn wait(platform: &LocalPlatform, run: &RunRecord) -> anyhow::Result<Vec<ModelVersion>> {
    let job_id = run.job_id.clone().ok_or_else(|| anyhow!("run {} has no job", run.run_id))?;
    let log = job_log(platform, run);
    let mut offset = 0u64;
    let status = loop {
        let status = platform.jobs.describe(&job_id).await?;
        offset = print_new_lines(&log, offset)?;
        if status.state.is_final() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let detail = BatchJobDetail {
        job_id: job_id.clone(),
        status: if status.state == JobState::Succeeded { "SUCCEEDED" } else { "FAILED" }.into(),
        status_reason: status.reason.clone(),
    };
    platform.dispatch.job_state_changed(&detail).await?;
    if status.state == JobState::Failed {
        bail!("training job {job_id} failed ({}); its log is {}", status.reason.unwrap_or_default(), log.display());
    }
    let versions = registry::versions(platform.table.as_ref(), &run.model).await?;
    Ok(versions.into_iter().filter(|v| v.lineage.as_ref().is_some_and(|l| l.run_id == run.run_id)).collect())
}

fn print_new_lines(log: &Path, offset: u64) -> anyhow::Result<u64> {
    let Ok(mut file) = std::fs::File::open(log) else { return Ok(offset) };
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    // Only whole lines; the rest waits for the next look.
    let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    for line in text[..complete].lines() {
        println!("  | {line}");
    }
    Ok(offset + complete as u64)
}

pub fn print_version(version: &ModelVersion) {
    match (&version.evaluation, &version.gate) {
        (Some(evaluation), Some(gate)) => println!(
            "{} v{}: test accuracy {} on {} images (register-model's own evaluation); {}: {}",
            version.model,
            version.version,
            gate.accuracy.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "not evaluated".into()),
            evaluation.images,
            if gate.passed {
                "promoted to production".to_owned()
            } else {
                format!("not promoted ({})", gate.code.as_deref().unwrap_or("gate"))
            },
            gate.explanation
        ),
        _ => println!(
            "{} v{}: rejected ({}): {}",
            version.model,
            version.version,
            version.reason_code.as_deref().unwrap_or("unknown"),
            version.reason.as_deref().unwrap_or_default()
        ),
    }
}

/// The hidden subcommand a local training job runs: the trainer on the local buckets, then the
/// card's event to register-model, and the job's state to dispatch-training (what Batch's state
/// change events do on AWS).
pub async fn run_job() -> anyhow::Result<ExitCode> {
    let data_dir =
        std::env::var("CVOPS_DATA_DIR").context("CVOPS_DATA_DIR is not set: this subcommand is started by `cvops train`")?;
    let config = TrainerConfig::from_env()?;
    let (platform, mut events) = LocalPlatform::open(Path::new(&data_dir), LocalPlatform::ingest_config_from_env()?)?;
    let job_id = std::env::var("AWS_BATCH_JOB_ID").unwrap_or_default();
    let report = |status: &'static str, reason: Option<String>| {
        let detail = BatchJobDetail { job_id: job_id.clone(), status: status.into(), status_reason: reason };
        let dispatch = &platform.dispatch;
        async move {
            if let Err(e) = dispatch.job_state_changed(&detail).await {
                eprintln!("warning: could not record the job's state {}: {e}", detail.status);
            }
        }
    };
    report("RUNNING", None).await;
    let trained = cvops_trainer::run(&config, platform.objects.as_ref(), &device(), &Stderr).await;
    while let Ok(event) = events.try_recv() {
        for outcome in route_model_card(&platform, &event).await? {
            let (version, promoted) = match outcome {
                cvops_register_model::Outcome::Registered { version, promoted } => (version, promoted),
                cvops_register_model::Outcome::Rejected { version } => (version, false),
                _ => continue,
            };
            eprintln!("register-model: {}", version_summary(&version, promoted));
        }
    }
    match trained {
        Ok(_) => {
            report("SUCCEEDED", None).await;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            report("FAILED", Some(e.to_string())).await;
            Err(e.into())
        }
    }
}

fn version_summary(version: &ModelVersion, promoted: bool) -> serde_json::Value {
    serde_json::json!({
        "model": version.model,
        "version": version.version,
        "status": version.status,
        "accuracy": version.accuracy(),
        "promoted": promoted,
        "reason_code": version.reason_code,
        "gate_code": version.gate.as_ref().and_then(|g| g.code.clone()),
    })
}
