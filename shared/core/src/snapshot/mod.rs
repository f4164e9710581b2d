//! Dataset snapshots: the immutable list of samples a model is trained on, and the feature
//! baseline monitoring compares live traffic with.
//!
//! A snapshot is content-addressed. The manifest (JSON Lines of key, sha256, label, split, in key
//! order) is cut into parts of [`PART_LINES`] lines, each stored under its own hash
//! (`snapshots/<dataset>/parts/<sha256>.jsonl`), so no part is ever rewritten and a part shared
//! by two snapshots is stored once. The snapshot's id is the hash of its parts' hashes in order:
//! snapshotting the same accepted set twice gives the same id. The descriptor
//! (`snapshots/<dataset>/<id>.json`) is written last, so its presence means the snapshot is whole.
//! Records are read a page at a time and parts are written as they fill: memory holds one part,
//! never the manifest.
//!
//! [`baseline`] holds the feature histograms, [`sample`] the fetch of one entry's image.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::annotation::{BoundingBox, LabelRecord, LabelStatus};
use crate::catalog::{class_names, dataset_pk, ImageRecord, ImageStatus, IMAGE_SK_PREFIX, LABEL_SK_PREFIX};
use crate::key::Split;
use crate::ports::{Item, ObjectStore, ObjectStoreError, Table, TableError, TableExt};
pub use crate::schema::{descriptor_key, snapshot_sk};

mod baseline;
mod sample;

pub use baseline::{Baseline, BoxBaseline, Histogram, Scale};
pub use sample::{fetch_sample, fetch_sample_downscaled, Sample, SAMPLE_SHORT_SIDE};

/// Lines per manifest part (about 10 MB of JSON for classified images).
pub const PART_LINES: usize = 50_000;
/// A part is also cut at this size, whatever its lines hold (an image of boxes can take tens of
/// KB), so a reader's 64 MiB bound on a part always holds.
pub const PART_BYTES: usize = 16 << 20;

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub key: String,
    pub sha256: String,
    /// The class of a classified image; empty for a detection dataset's (see `boxes`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    pub split: Split,
    /// The object's size as ingest recorded it, so a reader can budget its fetches without a
    /// HEAD request per image (absent from manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// A detection dataset's image: its boxes (class index into the snapshot's `labels`), empty
    /// for a background image. Absent for a classified image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<BoundingBox>>,
}

/// The descriptor: what the snapshot holds, where its parts are, and its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub dataset: String,
    pub samples: u64,
    /// The classes: sorted labels of a classification dataset; the class names of a detection
    /// dataset in index order (a box's class indexes them).
    pub labels: Vec<String>,
    /// Samples per label, then per split (for detection: boxes per class, then per split).
    pub counts: BTreeMap<String, BTreeMap<Split, u64>>,
    /// Manifest parts in order: keys in the store bucket.
    pub parts: Vec<String>,
    pub baseline: Baseline,
    /// RFC 3339; not part of the id.
    pub created_at: String,
    /// The dataset's accepted arrivals when the snapshot began (`catalog::accepted_arrivals`):
    /// arrivals beyond it are the "new images" the continuous-training rule counts.
    #[serde(default)]
    pub arrivals: Option<u64>,
    /// The share of train carved into val, when the dataset had no val images of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_from_train: Option<f64>,
    /// A detection snapshot's box baseline; its presence makes the snapshot a detection one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<BoxBaseline>,
    /// A detection snapshot's images per split (background images included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_images: Option<BTreeMap<Split, u64>>,
}

impl Snapshot {
    /// Samples of `split`, over every label (for detection, images: `split_images`).
    pub fn samples_in(&self, split: Split) -> u64 {
        if let Some(images) = &self.split_images {
            return images.get(&split).copied().unwrap_or(0);
        }
        self.counts.values().filter_map(|splits| splits.get(&split)).sum()
    }

    /// Whether the snapshot holds boxes.
    pub fn is_detection(&self) -> bool {
        self.boxes.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("dataset {0} has no accepted images to snapshot; upload some with `cvops upload`")]
    Empty(String),
    #[error(
        "dataset {0} has label files but no class names; upload its data.yaml (`names: [a, b, ...]`) to datasets/{0}/data.yaml"
    )]
    NoClassNames(String),
    #[error("catalog: {0}")]
    Table(#[from] TableError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
}

/// Accumulates lines and writes full parts as it goes.
struct PartWriter<'a> {
    objects: &'a dyn ObjectStore,
    bucket: &'a str,
    dataset: &'a str,
    part_lines: usize,
    buffer: Vec<u8>,
    lines: usize,
    parts: Vec<String>,
    id_hasher: Sha256,
}

impl PartWriter<'_> {
    async fn push(&mut self, line: &ManifestLine) -> Result<(), SnapshotError> {
        serde_json::to_writer(&mut self.buffer, line).expect("a manifest line serialises");
        self.buffer.push(b'\n');
        self.lines += 1;
        if self.lines == self.part_lines || self.buffer.len() >= PART_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.lines == 0 {
            return Ok(());
        }
        let hash = hex::encode(Sha256::digest(&self.buffer));
        let key = format!("snapshots/{}/parts/{hash}.jsonl", self.dataset);
        self.objects.put(self.bucket, &key, Bytes::from(std::mem::take(&mut self.buffer))).await?;
        self.id_hasher.update(hash.as_bytes());
        self.id_hasher.update(b"\n");
        self.parts.push(key);
        self.lines = 0;
        Ok(())
    }
}

/// Snapshots the accepted images of `dataset` into `bucket` and records it in the table.
pub async fn create(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    bucket: &str,
    dataset: &str,
    created_at: String,
) -> Result<Snapshot, SnapshotError> {
    create_with(table, objects, bucket, dataset, created_at, SnapshotOptions::default()).await
}

/// The share of train that becomes val when a dataset has train images and no val images (public
/// sets often come as `train/` and `test/` only), by default.
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;

/// How a snapshot is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnapshotOptions {
    /// Lines per manifest part.
    pub part_lines: usize,
    /// The share of train carved into val, by content hash, when the dataset has no val images.
    pub val_fraction: f64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self { part_lines: PART_LINES, val_fraction: DEFAULT_VAL_FRACTION }
    }
}

/// [`create`] with parts of `part_lines` lines (tests use small parts).
pub async fn create_in_parts(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    bucket: &str,
    dataset: &str,
    created_at: String,
    part_lines: usize,
) -> Result<Snapshot, SnapshotError> {
    create_with(table, objects, bucket, dataset, created_at, SnapshotOptions { part_lines, ..SnapshotOptions::default() }).await
}

/// Whether a train sample whose bytes hash to `sha256` (hex) goes to val when val is carved from
/// train: from bytes 8 to 16 of the hash (the split of a sample without a split folder comes from
/// bytes 0 to 8), so the same bytes always go the same way.
pub fn carved_into_val(sha256: &str, fraction: f64) -> bool {
    let bucket = sha256.get(16..32).and_then(|hex| u64::from_str_radix(hex, 16).ok()).unwrap_or(0) % 10_000;
    (bucket as f64) < fraction * 10_000.0
}

/// The splits the dataset's accepted samples are in (a first, cheap pass: it stops once it saw
/// all three).
async fn splits_present(table: &dyn Table, dataset: &str) -> Result<BTreeSet<Split>, SnapshotError> {
    let pk = dataset_pk(dataset);
    let mut present = BTreeSet::new();
    let mut pages = table.query_pages(&pk, IMAGE_SK_PREFIX);
    while let Some(page) = pages.try_next().await? {
        for item in &page {
            let record: ImageRecord = item.to_record()?;
            if let (ImageStatus::Accepted, Some(split)) = (record.status, record.split) {
                present.insert(split);
            }
        }
        if present.len() == Split::ALL.len() {
            break;
        }
    }
    Ok(present)
}

/// [`create`] cut as `options` say.
pub async fn create_with(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    bucket: &str,
    dataset: &str,
    created_at: String,
    options: SnapshotOptions,
) -> Result<Snapshot, SnapshotError> {
    let arrivals = crate::catalog::accepted_arrivals(table, dataset).await?;
    let present = splits_present(table, dataset).await?;
    let carve_val = !present.contains(&Split::Val) && present.contains(&Split::Train) && options.val_fraction > 0.0;
    let mut writer = PartWriter {
        objects,
        bucket,
        dataset,
        part_lines: options.part_lines.max(1),
        buffer: Vec::new(),
        lines: 0,
        parts: Vec::new(),
        id_hasher: Sha256::new(),
    };
    let mut counts: BTreeMap<String, BTreeMap<Split, u64>> = BTreeMap::new();
    let mut baseline = Baseline::default();
    let mut samples = 0u64;
    let detection = Detection::load(table, dataset).await?;
    let mut box_baseline = detection.as_ref().map(|d| BoxBaseline::new(d.names.len()));
    let mut split_images: BTreeMap<Split, u64> = BTreeMap::new();
    let pk = dataset_pk(dataset);
    let mut pages = table.query_pages(&pk, IMAGE_SK_PREFIX);
    while let Some(page) = pages.try_next().await? {
        for item in &page {
            let record: ImageRecord = item.to_record()?;
            let (Some(sha256), Some(split)) = (record.sha256.clone(), record.split) else { continue };
            if record.status != ImageStatus::Accepted {
                continue;
            }
            let split = match split {
                Split::Train if carve_val && carved_into_val(&sha256, options.val_fraction) => Split::Val,
                split => split,
            };
            let mut line =
                ManifestLine { key: record.key.clone(), sha256, label: String::new(), split, bytes: record.bytes, boxes: None };
            match (&detection, &mut box_baseline, &record.labels_key, &record.label) {
                (Some(detection), Some(box_baseline), Some(labels_key), _) => {
                    let boxes = detection.boxes.get(labels_key).cloned().unwrap_or_default();
                    for b in &boxes {
                        *counts.entry(detection.names[b.class as usize].clone()).or_default().entry(split).or_default() += 1;
                    }
                    box_baseline.add(&boxes, record.width.unwrap_or(1), record.height.unwrap_or(1));
                    line.boxes = Some(boxes);
                }
                (None, _, None, Some(label)) => {
                    *counts.entry(label.clone()).or_default().entry(split).or_default() += 1;
                    line.label = label.clone();
                }
                // A classified image in a detection dataset, or the reverse: not a sample of it.
                _ => continue,
            }
            writer.push(&line).await?;
            *split_images.entry(split).or_default() += 1;
            baseline.add(&record);
            samples += 1;
        }
    }
    if samples == 0 {
        return Err(SnapshotError::Empty(dataset.to_owned()));
    }
    writer.flush().await?;
    if let Some(detection) = &detection {
        // Boxes name classes by index: the names are part of what the snapshot is.
        writer.id_hasher.update(serde_json::to_vec(&detection.names).expect("names serialise"));
    }
    let id = hex::encode(&writer.id_hasher.finalize()[..8]);
    let snapshot = Snapshot {
        id: id.clone(),
        dataset: dataset.to_owned(),
        samples,
        labels: match &detection {
            Some(detection) => detection.names.clone(),
            None => counts.keys().cloned().collect(),
        },
        counts,
        parts: writer.parts,
        baseline,
        created_at,
        arrivals: Some(arrivals),
        val_from_train: carve_val.then_some(options.val_fraction),
        boxes: box_baseline,
        split_images: detection.is_some().then_some(split_images),
    };
    let descriptor = serde_json::to_vec_pretty(&snapshot).expect("a snapshot serialises");
    objects.put(bucket, &descriptor_key(dataset, &id), Bytes::from(descriptor)).await?;
    let item = Item::new(dataset_pk(dataset), snapshot_sk(&id))
        .with("samples", samples)
        .with("descriptor", descriptor_key(dataset, &id))
        .with("created_at", snapshot.created_at.clone());
    match table.put_if_absent(item).await {
        Ok(_) | Err(TableError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(snapshot)
}

/// What a detection snapshot joins its images with: the class names and every label file's boxes.
///
/// Held in memory for the snapshot's run (a label key and 28 bytes a box: about 60 MB for a
/// million boxes over 100,000 images), because images and label files do not sort alike (`a-b.jpg`
/// sorts before `a.jpg`, `a.txt` before `a-b.txt`), so a merge of the two streams is not possible.
struct Detection {
    names: Vec<String>,
    boxes: std::collections::HashMap<String, Vec<BoundingBox>>,
}

impl Detection {
    /// `None` for a classification dataset (no class names and no label files).
    async fn load(table: &dyn Table, dataset: &str) -> Result<Option<Self>, SnapshotError> {
        let names = class_names(table, dataset).await?.map(|n| n.names).filter(|n| !n.is_empty());
        let mut boxes = std::collections::HashMap::new();
        let pk = dataset_pk(dataset);
        let mut pages = table.query_pages(&pk, LABEL_SK_PREFIX);
        while let Some(page) = pages.try_next().await? {
            for item in &page {
                let record: LabelRecord = item.to_record()?;
                if record.status == LabelStatus::Accepted {
                    boxes.insert(record.key, record.boxes);
                }
            }
        }
        let Some(names) = names else {
            return if boxes.is_empty() { Ok(None) } else { Err(SnapshotError::NoClassNames(dataset.to_owned())) };
        };
        // Boxes whose class the names (newer than the file's check) do not reach are left out,
        // as health counts them: unknown_class.
        for list in boxes.values_mut() {
            list.retain(|b| (b.class as usize) < names.len());
        }
        Ok(Some(Self { names, boxes }))
    }
}

/// Reads a snapshot's manifest part by part, calling `each` for every line: the whole manifest is
/// never in memory.
pub async fn for_each_line(
    objects: &dyn ObjectStore,
    bucket: &str,
    snapshot: &Snapshot,
    mut each: impl FnMut(ManifestLine),
) -> Result<(), SnapshotError> {
    for part in &snapshot.parts {
        let data = objects.get(bucket, part, 64 << 20).await?;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line: ManifestLine = serde_json::from_slice(line).map_err(|e| ObjectStoreError::Backend {
                message: format!("manifest part {part} has a malformed line: {e}"),
                retryable: false,
                source: None,
            })?;
            each(line);
        }
    }
    Ok(())
}
