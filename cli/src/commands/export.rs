//! `cvops export --snapshot ID --format imagefolder|yolo|coco|jsonl --out DIR`: a snapshot as
//! files to train from elsewhere; uploading them back gives the same snapshot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cvops_platform::export::{export, ExportFormat};
use cvops_platform::{LocalPlatform, RAW_BUCKET, STORE_BUCKET};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot's id, as `cvops snapshot` prints it.
    #[arg(long)]
    pub snapshot: String,
    /// imagefolder (classes), yolo or coco (boxes), jsonl (either).
    #[arg(long, value_parser = parse_format)]
    pub format: ExportFormat,
    /// A new or empty folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

fn parse_format(s: &str) -> Result<ExportFormat, String> {
    ExportFormat::parse(s).ok_or_else(|| format!("{s:?} is not a format; use imagefolder, yolo, coco or jsonl"))
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let (table, objects) = (platform.table.as_ref(), platform.objects.as_ref());
    let summary = export(table, objects, RAW_BUCKET, STORE_BUCKET, &args.snapshot, args.format, &args.out).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "exported snapshot {} of {} as {}: {} images, {} boxes, in {}",
            summary.snapshot,
            summary.dataset,
            summary.format,
            summary.images,
            summary.boxes,
            summary.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
