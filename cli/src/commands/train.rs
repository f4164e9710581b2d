//! `cvops train`: a training request through the same path as on AWS. The request goes onto the
//! training queue; the queue delivers it to dispatch-training as an SQS batch; dispatch snapshots
//! the dataset, records the run and submits the job, here a child process running this very
//! executable's hidden `run-training-job` subcommand with a Batch job's environment (the platform's
//! job host). The job trains, writes the model and its card, and routes the card's ObjectCreated
//! event to register-model.
//! `--wait` follows the job's log and prints the registered version.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use cvops_core::registry::ModelVersion;
use cvops_dispatch_training::{RunRecord, TrainingRequest};
use cvops_platform::training::{self, job_log};
use cvops_platform::LocalPlatform;

use super::catalog::require_dataset;

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
    let platform = LocalPlatform::open(data_dir)?;
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

/// [`training::submit`], saying which run and job it became.
pub async fn submit(platform: &LocalPlatform, request: &TrainingRequest) -> anyhow::Result<RunRecord> {
    let run = training::submit(platform, request).await?;
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

/// [`training::wait`], printing the job's log as it grows.
pub async fn wait(platform: &LocalPlatform, run: &RunRecord) -> anyhow::Result<Vec<ModelVersion>> {
    training::wait(platform, run, &mut |line| println!("  | {line}")).await
}

pub fn print_version(version: &ModelVersion) {
    match (version.evaluation_score(), &version.gate) {
        (Some(score), Some(gate)) => println!(
            "{} v{}: test {} {} on {} images (register-model's own evaluation); {}: {}",
            version.model,
            version.version,
            score.metric,
            gate.score.map(|s| super::models::format_value(score.metric, s)).unwrap_or_else(|| "not evaluated".into()),
            score.images,
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
