//! `cvops upload DIR --dataset NAME`: each file is put into the local raw bucket, which triggers
//! ingest through the local event router, exactly as `aws s3 cp --recursive` would on AWS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use cvops_core::key::DatasetName;
use cvops_core::ReasonCode;
use cvops_ingest::Outcome;
use cvops_local::{ObjectEvent, ObjectEventKind};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::platform::{LocalPlatform, RAW_BUCKET};
use crate::router::route;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder of `<split>/<label>/<file>` or `<label>/<file>` (split: train, val or test).
    pub dir: PathBuf,
    /// The dataset to upload into (a-z, 0-9, '-', '_').
    #[arg(long)]
    pub dataset: String,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What an upload did, file by file, added up.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct UploadSummary {
    pub files: usize,
    pub accepted: usize,
    pub duplicates: usize,
    pub near_duplicates: usize,
    pub rejected: BTreeMap<ReasonCode, usize>,
    /// Uploads whose key already held the same event (nothing changed).
    pub unchanged: usize,
    /// Events ingest failed on; they wait in the failure queue.
    pub failed: usize,
}

impl UploadSummary {
    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Accepted { near_duplicate_of, .. } => {
                self.accepted += 1;
                self.near_duplicates += usize::from(near_duplicate_of.is_some());
            }
            Outcome::Duplicate { .. } => self.duplicates += 1,
            Outcome::Rejected { reason, .. } => *self.rejected.entry(*reason).or_default() += 1,
            Outcome::Deleted { .. } | Outcome::Ignored { .. } => self.unchanged += 1,
        }
    }

    pub fn print(&self, dataset: &str) {
        println!(
            "uploaded {} files to {dataset}: {} accepted ({} near duplicates), {} exact duplicates, {} rejected{}",
            self.files,
            self.accepted,
            self.near_duplicates,
            self.duplicates,
            self.rejected_total(),
            if self.failed > 0 { format!(", {} failed (kept in the ingest-failures queue)", self.failed) } else { String::new() }
        );
        for (reason, n) in &self.rejected {
            println!("  rejected {reason:<20} {n}");
        }
    }
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let dataset = DatasetName::parse(&args.dataset).map_err(|e| anyhow!(e))?;
    let (platform, mut events) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    let summary = upload_dir(&platform, &mut events, &dataset, &args.dir).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        summary.print(dataset.as_str());
    }
    Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The files under `dir`, sorted, hidden files and folders skipped.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Uploads every file under `dir` and routes the events each put causes, one file at a time,
/// with a progress bar.
pub async fn upload_dir(
    platform: &LocalPlatform,
    events: &mut UnboundedReceiver<ObjectEvent>,
    dataset: &DatasetName,
    dir: &Path,
) -> anyhow::Result<UploadSummary> {
    let files = files_under(dir)?;
    if files.is_empty() {
        bail!("no files under {}; lay them out as <split>/<label>/<file> or <label>/<file>", dir.display());
    }
    let progress = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} files, {per_sec} {msg}").expect("the template is valid"),
    );
    progress.set_prefix(format!("uploading to {dataset}"));
    let mut summary = UploadSummary::default();
    for path in &files {
        let relative = path.strip_prefix(dir).expect("walked from dir");
        let relative = relative.to_str().ok_or_else(|| anyhow!("{} is not valid UTF-8; rename it", relative.display()))?;
        let key = format!("datasets/{dataset}/{}", relative.replace(std::path::MAIN_SEPARATOR, "/"));
        platform.objects.put_file(RAW_BUCKET, &key, path).with_context(|| format!("cannot upload {}", path.display()))?;
        summary.files += 1;
        while let Ok(event) = events.try_recv() {
            let own_upload = event.key == key && matches!(event.kind, ObjectEventKind::Created { .. });
            match route(platform, &event).await {
                Ok(outcomes) if own_upload => outcomes.iter().for_each(|o| summary.count(o)),
                Ok(_) => {}
                Err(e) => {
                    summary.failed += 1;
                    progress.suspend(|| eprintln!("{e:#}"));
                }
            }
        }
        progress.set_message(format!("{} rejected", summary.rejected_total()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(summary)
}
