//! `cvops health --dataset D`: what a team checks before training on a dataset.

use std::path::Path;
use std::process::ExitCode;

use cvops_core::annotation::{ClassNamesRecord, LabelRecord};
use cvops_core::catalog::{class_names, label_records, ImageRecord};
pub use cvops_core::health::{DatasetHealth, DetectionHealth};
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

/// Whether a dataset holds boxes: it has class names, label files or images in the detection
/// layout.
pub fn is_detection(images: &[ImageRecord], labels: &[LabelRecord], names: Option<&ClassNamesRecord>) -> bool {
    names.is_some() || !labels.is_empty() || images.iter().any(|r| r.labels_key.is_some())
}

/// The health of a detection dataset as a person reads it.
pub fn print_detection(health: &DetectionHealth) {
    let per_image = health.boxes_per_image.as_ref().map_or(0.0, |s| s.mean);
    println!(
        "dataset {} (detection): {} images, {} boxes ({per_image:.1} per image), {} background images, {} classes",
        health.dataset,
        health.images,
        health.boxes,
        health.background_images,
        health.class_names.len()
    );
    println!(
        "  {} near duplicates flagged, {} exact duplicates aliased, {} refused, {} deleted",
        health.near_duplicates,
        health.duplicates,
        health.rejected.values().sum::<usize>(),
        health.deleted
    );
    if health.class_names.is_empty() {
        println!("  no data.yaml yet: {} label files wait for the class names", health.awaiting_class_names);
    }
    println!();
    println!("  {:<14} {:>7} {:>7}", "class", "boxes", "images");
    for (class, count) in &health.classes {
        println!("  {:<14} {:>7} {:>7}", truncate(class, 14), count.boxes, count.images);
    }
    println!();
    println!("  {:<14} {:>7} {:>7}", "split", "images", "boxes");
    for (split, count) in &health.per_split {
        println!("  {:<14} {:>7} {:>7}", split.as_str(), count.images, count.boxes);
    }
    println!();
    if let Some(s) = &health.boxes_per_image {
        println!("  boxes/image min {:>9.1}  median {:>9.1}  max {:>9.1}  mean {:>9.1}", s.min, s.median, s.max, s.mean);
    }
    if let Some(s) = &health.box_area {
        println!(
            "  box area    min {:>9.4}  median {:>9.4}  max {:>9.4}  mean {:>9.4}  (of the image)",
            s.min, s.median, s.max, s.mean
        );
    }
    if let Some(s) = &health.box_aspect {
        println!(
            "  box aspect  min {:>9.2}  median {:>9.2}  max {:>9.2}  mean {:>9.2}  (width/height)",
            s.min, s.median, s.max, s.mean
        );
    }
    println!("  box size    0 |{}| 1   (side, as a fraction of the image's)", sparkline(&health.box_size_histogram));
    println!("  box aspect  1:8 |{}| 8:1", sparkline(&health.box_aspect_histogram));
    println!(
        "  COCO sizes  {} small, {} medium, {} large; {} tiny (a side under 8 px)",
        health.box_sizes.small, health.box_sizes.medium, health.box_sizes.large, health.tiny_boxes
    );
    if !health.rejected.is_empty() {
        println!();
        println!("  refused by reason:");
        for (reason, n) in &health.rejected {
            println!("    {reason:<20} {n}");
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
    let table = platform.table.as_ref();
    require_dataset(table, &args.dataset).await?;
    let images = records(table, &args.dataset).await?;
    let labels = label_records(table, &args.dataset).await?;
    let names = class_names(table, &args.dataset).await?;
    if is_detection(&images, &labels, names.as_ref()) {
        let health = DetectionHealth::of(&args.dataset, &images, &labels, names.as_ref());
        if args.json {
            println!("{}", serde_json::to_string(&health)?);
        } else {
            print_detection(&health);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let health = DatasetHealth::of(&args.dataset, &images);
    if args.json {
        println!("{}", serde_json::to_string(&health)?);
    } else {
        print(&health);
    }
    Ok(ExitCode::SUCCESS)
}
