//! `cvops datasets` and `cvops images`: reading the catalog.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use std::collections::BTreeMap;

use cvops_core::annotation::{LabelRecord, LabelStatus, LabeledBox, RefusedAnnotation};
use cvops_core::catalog::{class_names, label_records, ImageRecord, ImageStatus, DATASETS_PK};
use cvops_core::ports::Table;

use cvops_platform::LocalPlatform;

#[derive(Debug, clap::Args)]
pub struct DatasetsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[arg(long)]
    pub dataset: String,
    #[arg(long)]
    pub label: Option<String>,
    /// accepted, duplicate, rejected or deleted
    #[arg(long, value_parser = parse_status)]
    pub status: Option<ImageStatus>,
    /// One JSON record per line.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(s: &str) -> Result<ImageStatus, String> {
    ImageStatus::parse(s).ok_or_else(|| format!("{s:?} is not a status; use accepted, duplicate, rejected or deleted"))
}

/// Every record of a dataset. Reads the dataset's partition: for commands, never for hot paths.
pub async fn records(table: &dyn Table, dataset: &str) -> anyhow::Result<Vec<ImageRecord>> {
    Ok(cvops_core::catalog::images(table, dataset).await?)
}

/// Fails with a message that says how to list the datasets when `dataset` is not one.
pub async fn require_dataset(table: &dyn Table, dataset: &str) -> anyhow::Result<()> {
    match table.get(DATASETS_PK, dataset).await? {
        Some(_) => Ok(()),
        None => Err(anyhow!("no dataset {dataset:?}; `cvops datasets` lists them")),
    }
}

pub async fn dataset_names(table: &dyn Table) -> anyhow::Result<Vec<String>> {
    Ok(cvops_core::catalog::dataset_names(table).await?)
}

pub async fn datasets(data_dir: &Path, args: DatasetsArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let names = dataset_names(platform.table.as_ref()).await?;
    if names.is_empty() && !args.json {
        println!("no datasets yet; add one with: cvops upload DIR --dataset NAME");
    } else if !args.json {
        println!("{:<24} {:>9} {:>10} {:>9} {:>9} {:>8}", "dataset", "accepted", "near-dups", "dups", "rejected", "deleted");
    }
    for name in names {
        let records = records(platform.table.as_ref(), &name).await?;
        let count = |status| records.iter().filter(|r| r.status == status).count();
        let near = records.iter().filter(|r| r.status == ImageStatus::Accepted && r.near_duplicate_of.is_some()).count();
        let (accepted, dups, rejected, deleted) = (
            count(ImageStatus::Accepted),
            count(ImageStatus::Duplicate),
            count(ImageStatus::Rejected),
            count(ImageStatus::Deleted),
        );
        if args.json {
            let line = serde_json::json!({"dataset": name, "accepted": accepted, "near_duplicates": near,
                "duplicates": dups, "rejected": rejected, "deleted": deleted});
            println!("{line}");
        } else {
            println!("{name:<24} {accepted:>9} {near:>10} {dups:>9} {rejected:>9} {deleted:>8}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn images(data_dir: &Path, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let labels = label_records(platform.table.as_ref(), &args.dataset).await?;
    let labels: BTreeMap<&str, &LabelRecord> = labels.iter().map(|l| (l.key.as_str(), l)).collect();
    let names = class_names(platform.table.as_ref(), &args.dataset).await?.map(|n| n.names).unwrap_or_default();
    let selected = records(platform.table.as_ref(), &args.dataset)
        .await?
        .into_iter()
        .filter(|r| args.label.as_ref().is_none_or(|l| r.label.as_ref() == Some(l)) && args.status.is_none_or(|s| r.status == s));
    for record in selected {
        // A boxed image's boxes (in its pixels) and refused annotations, from its label file.
        let label_file = record.labels_key.as_deref().and_then(|key| labels.get(key));
        let boxes: Vec<LabeledBox> = label_file
            .filter(|l| l.status == LabelStatus::Accepted)
            .map(|l| {
                let (w, h) = (record.width.unwrap_or(0), record.height.unwrap_or(0));
                l.boxes.iter().map(|b| LabeledBox::new(b, &names, w, h)).collect()
            })
            .unwrap_or_default();
        let refused: &[RefusedAnnotation] = label_file.map_or(&[], |l| &l.refused);
        if args.json {
            let mut line = serde_json::to_value(&record)?;
            if record.labels_key.is_some() {
                line["boxes"] = serde_json::to_value(&boxes)?;
                line["refused_annotations"] = serde_json::to_value(refused)?;
            }
            println!("{line}");
        } else {
            let detail = match record.status {
                ImageStatus::Accepted => match &record.near_duplicate_of {
                    Some(of) => format!("near duplicate of {of}"),
                    None => String::new(),
                },
                ImageStatus::Duplicate => format!("same bytes as {}", record.duplicate_of.as_deref().unwrap_or("?")),
                ImageStatus::Rejected => {
                    format!("{}: {}", record.reason.map(|r| r.as_str()).unwrap_or("?"), record.message.as_deref().unwrap_or(""))
                }
                ImageStatus::Deleted => String::new(),
            };
            println!(
                "{:<9} {:<5} {:<10} {}  {}",
                record.status.as_str(),
                record.split.map(|s| s.as_str()).unwrap_or("-"),
                record.label.as_deref().unwrap_or("-"),
                record.key,
                detail
            );
            for b in &boxes {
                let p = &b.bbox;
                println!("          box {:<12} x {:.0} y {:.0} w {:.0} h {:.0}", b.label, p.x, p.y, p.width, p.height);
            }
            for r in refused {
                println!("          refused line {} {}: {}", r.line, r.reason, r.message);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
