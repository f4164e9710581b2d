//! `cvops demo`: the tour a newcomer takes first. A fresh platform, the digits sample set and the
//! bad files uploaded through the same path an S3 upload takes, and the dataset's health.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use cvops_core::key::DatasetName;

use super::catalog::records;
use super::health::DatasetHealth;
use super::upload::upload_dir;
use crate::platform::{LocalPlatform, STORE_BUCKET};

/// Marks a data directory the demo made, so it only ever wipes its own.
const MARKER: &str = ".cvops-demo";
pub const DEFAULT_DEMO_DIR: &str = ".cvops-demo";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sample sets (digits/ and bad/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../samplesets"))]
    pub samples: PathBuf,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    fresh_dir(data_dir)?;
    let digits = args.samples.join("digits");
    let bad = args.samples.join("bad").join("upload");
    for dir in [&digits, &bad] {
        if !dir.is_dir() {
            bail!("sample set {} is missing; run the demo from a cvops checkout or pass --samples", dir.display());
        }
    }
    println!("cvops demo: a fresh local platform in {}", data_dir.display());
    let (platform, mut events) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    let dataset = DatasetName::parse("digits").expect("a valid name");

    println!("\n1. upload the digits sample set (MNIST, {}) as dataset `digits`", digits.display());
    upload_dir(&platform, &mut events, &dataset, &digits).await?.print("digits");

    println!("\n2. upload the bad files ({}) into the same dataset", bad.display());
    upload_dir(&platform, &mut events, &dataset, &bad).await?.print("digits");

    println!("\n3. the dataset's health\n");
    let records = records(platform.table.as_ref(), "digits").await?;
    DatasetHealth::of("digits", &records).print();

    let dir = data_dir.display();
    println!("\nNext:");
    println!("  cvops --data-dir {dir} images --dataset digits --status rejected    # each rejection and what to do");
    println!("  cvops --data-dir {dir} images --dataset digits --status duplicate");
    println!(
        "  ls {}/buckets/{STORE_BUCKET}/quarantine                              # the rejected files, kept with a .reason.json",
        dir
    );
    println!("  cvops validate --json path/to/*.jpg                                  # check files before uploading");
    Ok(ExitCode::SUCCESS)
}

/// Empties a directory the demo made before, or creates one; refuses anything else.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} already holds data the demo did not make; pass --data-dir with a new folder, for example --data-dir {DEFAULT_DEMO_DIR}",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by `cvops demo`; the next demo run wipes this folder\n")?;
    Ok(())
}
