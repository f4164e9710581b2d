//! `cvops snapshot --dataset D`: freeze the accepted samples of a dataset into an immutable,
//! content-addressed snapshot (what training will read), with its feature baseline.

use std::path::Path;
use std::process::ExitCode;

use cvops_core::key::Split;
use cvops_core::snapshot;

use super::catalog::require_dataset;
use super::health::sparkline;
use cvops_platform::{LocalPlatform, STORE_BUCKET};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub dataset: String,
    /// Print the snapshot descriptor as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let created_at = platform.clock.now().to_rfc3339();
    let (table, objects, options) = (platform.table.as_ref(), platform.objects.as_ref(), platform.dispatch.snapshot_options());
    let snap = snapshot::create_with(table, objects, STORE_BUCKET, &args.dataset, created_at, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&snap)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "snapshot {} of {}: {} samples, {} labels, {} manifest part(s)",
        snap.id,
        snap.dataset,
        snap.samples,
        snap.labels.len(),
        snap.parts.len()
    );
    let carved = snap.val_from_train.map(|share| format!(" (carved from train: {:.0}%)", share * 100.0)).unwrap_or_default();
    let (train, val, test) = (snap.samples_in(Split::Train), snap.samples_in(Split::Val), snap.samples_in(Split::Test));
    println!("  train {train}  val {val}{carved}  test {test}");
    let show = |counts: &[u64]| sparkline(&counts.iter().map(|&c| c as usize).collect::<Vec<_>>());
    println!("  baseline brightness |{}|", show(&snap.baseline.brightness.counts));
    println!("  baseline contrast   |{}|", show(&snap.baseline.contrast.counts));
    println!("  baseline sharpness  |{}|", show(&snap.baseline.sharpness.counts));
    println!("  descriptor: {}/buckets/{STORE_BUCKET}/{}", data_dir.display(), snapshot::descriptor_key(&snap.dataset, &snap.id));
    Ok(ExitCode::SUCCESS)
}
