//! Uploading a folder into a dataset, as `aws s3 cp --recursive` does on AWS: each file is put
//! into the raw bucket, and the event the put causes goes through the router to ingest, one file
//! at a time. [`layout`] turns the folder's layout (classes or boxes) into the puts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cvops_core::annotation::AnnotationCode;
use cvops_core::key::DatasetName;
use cvops_core::ReasonCode;
use cvops_ingest::Outcome;
use cvops_local::ObjectEventKind;
use serde::Serialize;

use crate::platform::{LocalPlatform, RAW_BUCKET};
use crate::router::route;

mod coco;
pub mod layout;
mod manifest;
mod voc;

pub use layout::{plan, DatasetFormat, Put, Source};

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
    /// Label files read (detection datasets), with the boxes they hold.
    pub label_files: usize,
    pub boxes: usize,
    /// Annotations refused (and quarantined), by code; a label file refused whole counts once.
    pub refused_annotations: BTreeMap<AnnotationCode, usize>,
    /// The classes a `data.yaml` named, when one was uploaded.
    pub classes: Option<usize>,
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
            Outcome::Labeled { boxes, refused, .. } => {
                self.label_files += 1;
                self.boxes += boxes;
                for (code, n) in refused {
                    *self.refused_annotations.entry(*code).or_default() += n;
                }
            }
            Outcome::LabelsRejected { reason, .. } => *self.refused_annotations.entry(*reason).or_default() += 1,
            Outcome::ClassNames { classes, .. } => self.classes = Some(*classes),
            Outcome::Deleted { .. } | Outcome::Ignored { .. } => self.unchanged += 1,
        }
    }
}

/// What an upload tells whoever shows its progress. Every method does nothing by default.
pub trait UploadProgress {
    /// `files` files are about to be uploaded.
    fn started(&mut self, _files: usize) {}
    /// One more file is uploaded and ingested; `summary` so far.
    fn uploaded(&mut self, _summary: &UploadSummary) {}
    /// Ingest failed on an event for good (it waits in the failure queue).
    fn failed(&mut self, _error: &anyhow::Error) {}
    fn finished(&mut self) {}
}

/// No progress shown.
impl UploadProgress for () {}

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

/// Uploads every file under `dir` into `dataset`, in the layout it is in, and routes the events
/// each put causes.
pub async fn upload_dir(
    platform: &LocalPlatform,
    dataset: &DatasetName,
    dir: &Path,
    progress: &mut dyn UploadProgress,
) -> anyhow::Result<UploadSummary> {
    upload_dir_as(platform, dataset, dir, DatasetFormat::detect(dir), progress).await
}

/// Uploads `dir` into `dataset`, read as `format`.
pub async fn upload_dir_as(
    platform: &LocalPlatform,
    dataset: &DatasetName,
    dir: &Path,
    format: DatasetFormat,
    progress: &mut dyn UploadProgress,
) -> anyhow::Result<UploadSummary> {
    let puts = plan(dataset, dir, format)?;
    progress.started(puts.len());
    let mut summary = UploadSummary::default();
    for put in &puts {
        let key = &put.key;
        match &put.source {
            Source::File(path) => {
                platform.objects.put_file(RAW_BUCKET, key, path).with_context(|| format!("cannot upload {}", path.display()))?;
            }
            Source::Bytes(bytes) => {
                use cvops_core::ports::ObjectStore;
                platform
                    .objects
                    .put(RAW_BUCKET, key, bytes.clone().into())
                    .await
                    .with_context(|| format!("cannot upload {key}"))?;
            }
        }
        summary.files += 1;
        for event in platform.pending_events() {
            let own_upload = event.key == *key && matches!(event.kind, ObjectEventKind::Created { .. });
            match route(platform, &event).await {
                Ok(outcomes) if own_upload => outcomes.iter().for_each(|o| summary.count(o)),
                Ok(_) => {}
                Err(e) => {
                    summary.failed += 1;
                    progress.failed(&e);
                }
            }
        }
        progress.uploaded(&summary);
    }
    progress.finished();
    Ok(summary)
}
