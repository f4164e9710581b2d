//! `cvops health --dataset D`: what a team checks before training on a dataset.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use cvops_core::catalog::{ImageRecord, ImageStatus};
use cvops_core::key::Split;
use cvops_core::ReasonCode;
use serde::Serialize;

use super::catalog::{records, require_dataset};
use crate::platform::LocalPlatform;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub json: bool,
}

/// Summary statistics of one numeric feature over the accepted samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub mean: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Some(Self { min: values[0], median: values[values.len() / 2], max: values[values.len() - 1], mean })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetHealth {
    pub dataset: String,
    pub accepted: usize,
    /// Accepted samples per label, then per split.
    pub per_label: BTreeMap<String, BTreeMap<Split, usize>>,
    pub duplicates: usize,
    pub near_duplicates: usize,
    pub rejected: BTreeMap<ReasonCode, usize>,
    pub deleted: usize,
    pub width: Option<Spread>,
    pub height: Option<Spread>,
    pub bytes: Option<Spread>,
    pub brightness: Option<Spread>,
    pub contrast: Option<Spread>,
    pub sharpness: Option<Spread>,
    /// Accepted samples per 16-level band of mean brightness (0-15, 16-31, ... 240-255).
    pub brightness_histogram: [usize; 16],
}

impl DatasetHealth {
    pub fn of(dataset: &str, records: &[ImageRecord]) -> Self {
        let accepted: Vec<&ImageRecord> = records.iter().filter(|r| r.status == ImageStatus::Accepted).collect();
        let mut per_label: BTreeMap<String, BTreeMap<Split, usize>> = BTreeMap::new();
        let mut brightness_histogram = [0usize; 16];
        for r in &accepted {
            let splits = per_label.entry(r.label.clone().unwrap_or_default()).or_default();
            *splits.entry(r.split.unwrap_or(Split::Train)).or_default() += 1;
            if let Some(b) = r.brightness {
                brightness_histogram[((b / 16.0) as usize).min(15)] += 1;
            }
        }
        let mut rejected = BTreeMap::new();
        for r in records.iter().filter(|r| r.status == ImageStatus::Rejected) {
            *rejected.entry(r.reason.unwrap_or(ReasonCode::Corrupt)).or_default() += 1;
        }
        let spread = |f: fn(&ImageRecord) -> Option<f64>| Spread::of(accepted.iter().filter_map(|r| f(r)).collect());
        Self {
            dataset: dataset.to_owned(),
            accepted: accepted.len(),
            per_label,
            duplicates: records.iter().filter(|r| r.status == ImageStatus::Duplicate).count(),
            near_duplicates: accepted.iter().filter(|r| r.near_duplicate_of.is_some()).count(),
            rejected,
            deleted: records.iter().filter(|r| r.status == ImageStatus::Deleted).count(),
            width: spread(|r| r.width.map(f64::from)),
            height: spread(|r| r.height.map(f64::from)),
            bytes: spread(|r| r.bytes.map(|b| b as f64)),
            brightness: spread(|r| r.brightness),
            contrast: spread(|r| r.contrast),
            sharpness: spread(|r| r.sharpness),
            brightness_histogram,
        }
    }

    pub fn print(&self) {
        println!(
            "dataset {}: {} accepted samples, {} near duplicates flagged, {} exact duplicates aliased, {} rejected, {} deleted",
            self.dataset,
            self.accepted,
            self.near_duplicates,
            self.duplicates,
            self.rejected.values().sum::<usize>(),
            self.deleted
        );
        println!();
        println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", "label", "train", "val", "test", "total");
        let mut totals = [0usize; 3];
        for (label, splits) in &self.per_label {
            let n: Vec<usize> = Split::ALL.iter().map(|s| splits.get(s).copied().unwrap_or(0)).collect();
            totals.iter_mut().zip(&n).for_each(|(t, n)| *t += n);
            println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", truncate(label, 14), n[0], n[1], n[2], n.iter().sum::<usize>());
        }
        println!("  {:<14} {:>7} {:>7} {:>7} {:>7}", "all", totals[0], totals[1], totals[2], totals.iter().sum::<usize>());
        println!();
        for (name, spread) in [
            ("width px", &self.width),
            ("height px", &self.height),
            ("file bytes", &self.bytes),
            ("brightness", &self.brightness),
            ("contrast", &self.contrast),
            ("sharpness", &self.sharpness),
        ] {
            if let Some(s) = spread {
                println!("  {name:<11} min {:>9.1}  median {:>9.1}  max {:>9.1}  mean {:>9.1}", s.min, s.median, s.max, s.mean);
            }
        }
        println!("  brightness  0 |{}| 255", sparkline(&self.brightness_histogram));
        if !self.rejected.is_empty() {
            println!();
            println!("  rejected by reason:");
            for (reason, n) in &self.rejected {
                println!("    {:<20} {n}", reason.as_str());
            }
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
    let (platform, _) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let health = DatasetHealth::of(&args.dataset, &records(platform.table.as_ref(), &args.dataset).await?);
    if args.json {
        println!("{}", serde_json::to_string(&health)?);
    } else {
        health.print();
    }
    Ok(ExitCode::SUCCESS)
}
