//! The subcommands. Each module has an `Args` struct and a `run`.

pub mod catalog;
pub mod demo;
pub mod export;
pub mod health;
pub mod import;
pub mod models;
pub mod monitor;
pub mod predict;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod traffic;
pub mod train;
pub mod up;
pub mod upload;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cvops",
    version,
    about = "Serverless CVOps, here on one machine: validate, index and deduplicate image datasets; train, register and promote models"
)]
pub struct Cli {
    /// Where the local platform keeps its buckets and database [default: .cvops, and
    /// .cvops-demo for `demo`].
    #[arg(long, global = true, env = "CVOPS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate image files as ingest would; exit 0 if all are valid, 1 if any is not, 2 on misuse.
    Validate(validate::Args),
    /// Upload a folder of images (classes, or boxes as YOLO, COCO or VOC) or a CSV/JSON Lines
    /// manifest into a dataset (each file triggers ingest, as an S3 upload would).
    Upload(upload::Args),
    /// List the datasets with their counts.
    Datasets(catalog::DatasetsArgs),
    /// List the images of a dataset.
    Images(catalog::ImagesArgs),
    /// Print a dataset's health: counts per label and split, sizes, brightness, duplicates, rejections.
    Health(health::Args),
    /// Freeze a dataset's accepted samples into an immutable snapshot with its feature baseline.
    Snapshot(snapshot::Args),
    /// Write a snapshot out as files (imagefolder, yolo, coco or jsonl) to train from elsewhere.
    Export(export::Args),
    /// Train a model on a dataset: a training request to the queue, a snapshot, a run, a job.
    Train(train::Args),
    /// List the training runs and their status.
    Runs(models::RunsArgs),
    /// List the registered model versions with their score, stage and lineage; `models import`
    /// brings in a classifier or a detector trained elsewhere.
    Models(models::ModelsArgs),
    /// Predict with a model on image files or folders, in this process, as the endpoint would
    /// answer; exit 0 when every file got a prediction, 1 when any did not.
    Predict(predict::Args),
    /// Point a model's production alias at a registered version.
    Promote(models::PromoteArgs),
    /// Point a model's production alias back at the version it named before.
    Rollback(models::RollbackArgs),
    /// Show or set a model's promotion gate (floor, minimum test images).
    Gate(models::GateArgs),
    /// Serve the production models over HTTP: the inference endpoint's router, locally.
    Serve(serve::Args),
    /// Run the monitor now: drift, confidence and service per model version against its training
    /// baseline, and the retraining rule; print the reports.
    Monitor(monitor::Args),
    /// Show or change a model's continuous-training rule (retrain on drift, on new images; cooldown).
    Retraining(monitor::RetrainArgs),
    /// Write the latest monitoring reports as an HTML page with charts.
    Report(report::Args),
    /// The whole local platform in one process: the endpoint, the event router, the training
    /// queue, the monitor on a schedule, and a watcher that ingests files copied into the raw
    /// bucket's folder. Ctrl-C stops it cleanly.
    Up(up::Args),
    /// The tour: upload the digits sample set and the bad files into a fresh data directory, print
    /// the dataset's health and a detection dataset's, train a model, register and promote it, print its evaluation.
    Demo(demo::Args),
    /// A local training job (started by `cvops train` with a Batch job's environment).
    #[command(name = cvops_platform::JOB_SUBCOMMAND, hide = true)]
    RunTrainingJob,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from(".cvops"));
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Upload(args) => upload::run(&data_dir, args).await,
        Command::Datasets(args) => catalog::datasets(&data_dir, args).await,
        Command::Images(args) => catalog::images(&data_dir, args).await,
        Command::Health(args) => health::run(&data_dir, args).await,
        Command::Snapshot(args) => snapshot::run(&data_dir, args).await,
        Command::Export(args) => export::run(&data_dir, args).await,
        Command::Train(args) => train::run(&data_dir, args).await,
        Command::Runs(args) => models::runs(&data_dir, args).await,
        Command::Models(args) => models::models(&data_dir, args).await,
        Command::Predict(args) => predict::run(&data_dir, args).await,
        Command::Promote(args) => models::promote(&data_dir, args).await,
        Command::Rollback(args) => models::rollback(&data_dir, args).await,
        Command::Gate(args) => models::gate(&data_dir, args).await,
        Command::Serve(args) => serve::run(&data_dir, args).await,
        Command::Monitor(args) => monitor::run(&data_dir, args).await,
        Command::Report(args) => report::run(&data_dir, args).await,
        Command::Retraining(args) => monitor::retraining(&data_dir, args).await,
        Command::Up(args) => up::run(&data_dir, args).await,
        Command::RunTrainingJob => cvops_platform::job_host::run_job().await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => {
            let demo_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from(demo::DEFAULT_DEMO_DIR));
            demo::run(&demo_dir, args).await
        }
    }
}
