//! `cvops health --dataset D`: what a team checks before training on a dataset.

use std::path::Path;
use std::process::ExitCode;

pub use cvops_core::health::DatasetHealth;
use cvops_core::key::Split;

use super::catalog::{records, require_dataset};
use cvops_platform::LocalPlatform;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub json: bool,
}

/// The health report as a person reads it.
pub fn print(health: &DatasetHealth) {
    println!(
        "dataset {}: {} accepted samples, {} near duplicates flagged, {} exact duplicates aliased, {} rejected, {} deleted",
        health.dataset,
        health.accepted,
        health.near_duplicates,
        health.duplicates,
        health.rejected.values().sum::<usize>(),
        health.deleted
    );
    println!();
    println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", "label", "train", "val", "test", "total");
    let mut totals = [0usize; 3];
    for (label, splits) in &health.per_label {
        let n: Vec<usize> = Split::ALL.iter().map(|s| splits.get(s).copied().unwrap_or(0)).collect();
        totals.iter_mut().zip(&n).for_each(|(t, n)| *t += n);
        println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", truncate(label, 14), n[0], n[1], n[2], n.iter().sum::<usize>());
    }
    println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", "all", totals[0], totals[1], totals[2], totals.iter().sum::<usize>());
    println!();
    for (name, spread) in [
        ("width px", &health.width),
        ("height px", &health.height),
        ("file bytes", &health.bytes),
        ("brightness", &health.brightness),
        ("contrast", &health.contrast),
        ("sharpness", &health.sharpness),
    ] {
        if let Some(s) = spread {
            println!("  {name:<11} min {:>9.1}  median {:>9.1}  max {:>9.1}  mean {:>9.1}", s.min, s.median, s.max, s.mean);
        }
    }
    println!("  brightness  0 |{}| 255", sparkline(&health.brightness_histogram));
    if !health.rejected.is_empty() {
        println!();
        println!("  rejected by reason:");
        for (reason, n) in &health.rejected {
            println!("    {:<20} {n}", reason.as_str());
        }
    }
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        s.chars().take(width - 1).chain(['…']).collect()
    }
}

/// A one-line bar chart: a picture of the distribution beats sixteen numbers.
pub fn sparkline(counts: &[usize]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    counts.iter().map(|&n| if n == 0 { ' ' } else { BARS[(n * 7).div_ceil(max).min(7)] }).collect()
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let health = DatasetHealth::of(&args.dataset, &records(platform.table.as_ref(), &args.dataset).await?);
    if args.json {
        println!("{}", serde_json::to_string(&health)?);
    } else {
        print(&health);
    }
    Ok(ExitCode::SUCCESS)
}
