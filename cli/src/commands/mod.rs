//! The subcommands. Each module has an `Args` struct and a `run`.

pub mod catalog;
pub mod demo;
pub mod health;
pub mod snapshot;
pub mod upload;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cvops",
    version,
    about = "Serverless CVOps, here on one machine: validate, index and deduplicate image datasets"
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
    /// Upload a folder of images into a dataset (each file triggers ingest, as an S3 upload would).
    Upload(upload::Args),
    /// List the datasets with their counts.
    Datasets(catalog::DatasetsArgs),
    /// List the images of a dataset.
    Images(catalog::ImagesArgs),
    /// Print a dataset's health: counts per label and split, sizes, brightness, duplicates, rejections.
    Health(health::Args),
    /// Freeze a dataset's accepted samples into an immutable snapshot with its feature baseline.
    Snapshot(snapshot::Args),
    /// The tour: upload the digits sample set and the bad files into a fresh data directory and
    /// print the dataset's health.
    Demo(demo::Args),
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
        Command::Demo(args) => {
            let demo_dir = cli.data_dir.clone().unwrap_or_else(|| PathBuf::from(demo::DEFAULT_DEMO_DIR));
            demo::run(&demo_dir, args).await
        }
    }
}
