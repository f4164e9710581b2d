//! `cvops upload DIR --dataset NAME`: each file is put into the local raw bucket, which triggers
//! ingest through the local event router, exactly as `aws s3 cp --recursive` would on AWS.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use cvops_core::key::DatasetName;
use cvops_platform::upload::{upload_dir_as, DatasetFormat, UploadProgress, UploadSummary};
use cvops_platform::LocalPlatform;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder of `<split>/<label>/<file>` or `<label>/<file>` (split: train, val or test), or a
    /// detection dataset: YOLO (data.yaml, images/<split>/, labels/<split>/), COCO
    /// (<split>/_annotations.coco.json or annotations/instances_<split>.json) or Pascal VOC
    /// (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt); or a manifest file (.csv:
    /// path,label[,split]; .jsonl: {"path", "label"[, "split"]} or {"path", "split", "boxes"}).
    pub dir: PathBuf,
    /// The dataset to upload into (a-z, 0-9, '-', '_').
    #[arg(long)]
    pub dataset: String,
    /// The layout: imagefolder, yolo, coco, voc or manifest; found from the folder when omitted.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<DatasetFormat>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<DatasetFormat, String> {
    DatasetFormat::parse(s).ok_or_else(|| format!("{s:?} is not a format; use imagefolder, yolo, coco, voc or manifest"))
}

pub fn print_summary(summary: &UploadSummary, dataset: &str) {
    println!(
        "uploaded {} files to {dataset}: {} accepted ({} near duplicates), {} exact duplicates, {} rejected{}",
        summary.files,
        summary.accepted,
        summary.near_duplicates,
        summary.duplicates,
        summary.rejected_total(),
        if summary.failed > 0 {
            format!(", {} failed (kept in the ingest-failures queue)", summary.failed)
        } else {
            String::new()
        }
    );
    for (reason, n) in &summary.rejected {
        println!("  rejected {reason:<20} {n}");
    }
    if summary.label_files > 0 || summary.classes.is_some() {
        println!(
            "  {} label files, {} boxes, {} annotations refused{}",
            summary.label_files,
            summary.boxes,
            summary.refused_annotations.values().sum::<usize>(),
            summary.classes.map(|n| format!(", {n} class names")).unwrap_or_default()
        );
        for (reason, n) in &summary.refused_annotations {
            println!("  refused  {reason:<20} {n}");
        }
    }
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let dataset = DatasetName::parse(&args.dataset).map_err(|e| anyhow!(e))?;
    let platform = LocalPlatform::open(data_dir)?;
    let format = args.format.unwrap_or_else(|| DatasetFormat::detect(&args.dir));
    let summary = upload_as(&platform, &dataset, &args.dir, format).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary, dataset.as_str());
    }
    Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// An upload in the layout found from the folder, with a progress bar on the terminal.
pub async fn upload(platform: &LocalPlatform, dataset: &DatasetName, dir: &Path) -> anyhow::Result<UploadSummary> {
    upload_as(platform, dataset, dir, DatasetFormat::detect(dir)).await
}

/// [`upload_dir_as`] with a progress bar on the terminal.
pub async fn upload_as(
    platform: &LocalPlatform,
    dataset: &DatasetName,
    dir: &Path,
    format: DatasetFormat,
) -> anyhow::Result<UploadSummary> {
    upload_dir_as(platform, dataset, dir, format, &mut Bar::new(dataset)).await
}

/// The upload's progress bar; failures are printed above it.
struct Bar(ProgressBar);

impl Bar {
    fn new(dataset: &DatasetName) -> Self {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} files, {per_sec} {msg}").expect("the template is valid"),
        );
        bar.set_prefix(format!("uploading to {dataset}"));
        Self(bar)
    }
}

impl UploadProgress for Bar {
    fn started(&mut self, files: usize) {
        self.0.set_length(files as u64);
    }

    fn uploaded(&mut self, summary: &UploadSummary) {
        self.0.set_message(format!("{} rejected", summary.rejected_total()));
        self.0.inc(1);
    }

    fn failed(&mut self, error: &anyhow::Error) {
        self.0.suspend(|| eprintln!("{error:#}"));
    }

    fn finished(&mut self) {
        self.0.finish_and_clear();
    }
}
