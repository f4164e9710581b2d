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

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{dataset_pk, ImageRecord, ImageStatus, IMAGE_SK_PREFIX};
use crate::key::Split;
use crate::ports::{Item, ObjectStore, ObjectStoreError, Table, TableError};

/// Lines per manifest part (about 10 MB of JSON).
pub const PART_LINES: usize = 50_000;

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub key: String,
    pub sha256: String,
    pub label: String,
    pub split: Split,
    /// The object's size as ingest recorded it, so a reader can budget its fetches without a
    /// HEAD request per image (absent from manifests written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// How a feature's values map to bins: fixed for every snapshot and every monitoring window, so
/// their histograms can be compared bin by bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Linear,
    /// log2(x)
    Log2,
    /// log10(1 + x)
    Log10OnePlus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub scale: Scale,
    /// The range of the scaled value the bins cover; values outside land in the end bins.
    pub low: f64,
    pub high: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(scale: Scale, low: f64, high: f64, bins: usize) -> Self {
        Self { scale, low, high, counts: vec![0; bins] }
    }

    /// The value on the histogram's scale.
    pub fn scaled(&self, value: f64) -> f64 {
        match self.scale {
            Scale::Linear => value,
            Scale::Log2 => value.max(1.0).log2(),
            Scale::Log10OnePlus => value.max(0.0).ln_1p() / std::f64::consts::LN_10,
        }
    }

    /// The inverse of [`Histogram::scaled`].
    pub fn unscaled(&self, scaled: f64) -> f64 {
        match self.scale {
            Scale::Linear => scaled,
            Scale::Log2 => scaled.exp2(),
            Scale::Log10OnePlus => 10f64.powf(scaled) - 1.0,
        }
    }

    /// The centre of each bin, on the histogram's scale.
    pub fn centres(&self) -> Vec<f64> {
        let width = (self.high - self.low) / self.counts.len() as f64;
        (0..self.counts.len()).map(|i| self.low + (i as f64 + 0.5) * width).collect()
    }

    /// The `q`-quantile (0 to 1), interpolated inside its bin and mapped back to the value's
    /// units; `None` when empty. Exact to a bin's width.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let width = (self.high - self.low) / self.counts.len() as f64;
        let target = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= target {
                let inside = ((target - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(self.unscaled(self.low + (i as f64 + inside) * width));
            }
            below += count;
        }
        Some(self.unscaled(self.high))
    }

    pub fn bin(&self, value: f64) -> usize {
        let scaled = self.scaled(value);
        let position = (scaled - self.low) / (self.high - self.low) * self.counts.len() as f64;
        (position.max(0.0) as usize).min(self.counts.len() - 1)
    }

    pub fn add(&mut self, value: f64) {
        if value.is_finite() {
            let bin = self.bin(value);
            self.counts[bin] += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The training distribution of the input features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub brightness: Histogram,
    pub contrast: Histogram,
    pub sharpness: Histogram,
    pub width: Histogram,
    pub height: Histogram,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            brightness: Histogram::new(Scale::Linear, 0.0, 256.0, 32),
            contrast: Histogram::new(Scale::Linear, 0.0, 128.0, 32),
            sharpness: Histogram::new(Scale::Log10OnePlus, 0.0, 7.0, 28),
            width: Histogram::new(Scale::Log2, 4.0, 16.0, 24),
            height: Histogram::new(Scale::Log2, 4.0, 16.0, 24),
        }
    }
}

impl Baseline {
    pub fn add(&mut self, record: &ImageRecord) {
        let features = [
            (&mut self.brightness, record.brightness),
            (&mut self.contrast, record.contrast),
            (&mut self.sharpness, record.sharpness),
            (&mut self.width, record.width.map(f64::from)),
            (&mut self.height, record.height.map(f64::from)),
        ];
        for (histogram, value) in features {
            if let Some(value) = value {
                histogram.add(value);
            }
        }
    }
}

/// The descriptor: what the snapshot holds, where its parts are, and its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub dataset: String,
    pub samples: u64,
    pub labels: Vec<String>,
    /// Samples per label, then per split.
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
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("dataset {0} has no accepted images to snapshot; upload some with `cvops upload`")]
    Empty(String),
    #[error("catalog: {0}")]
    Table(#[from] TableError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
}

pub fn descriptor_key(dataset: &str, id: &str) -> String {
    format!("snapshots/{dataset}/{id}.json")
}

pub fn snapshot_sk(id: &str) -> String {
    format!("SNAP#{id}")
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
        if self.lines == self.part_lines {
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
    create_in_parts(table, objects, bucket, dataset, created_at, PART_LINES).await
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
    let arrivals = crate::catalog::accepted_arrivals(table, dataset).await?;
    let mut writer = PartWriter {
        objects,
        bucket,
        dataset,
        part_lines: part_lines.max(1),
        buffer: Vec::new(),
        lines: 0,
        parts: Vec::new(),
        id_hasher: Sha256::new(),
    };
    let mut counts: BTreeMap<String, BTreeMap<Split, u64>> = BTreeMap::new();
    let mut baseline = Baseline::default();
    let mut samples = 0u64;
    let mut cursor = None;
    loop {
        let page = table.query(&dataset_pk(dataset), IMAGE_SK_PREFIX, 500, cursor).await?;
        for item in &page.items {
            let record: ImageRecord = item.to_record()?;
            let (Some(sha256), Some(label), Some(split)) = (record.sha256.clone(), record.label.clone(), record.split) else {
                continue;
            };
            if record.status != ImageStatus::Accepted {
                continue;
            }
            let line = ManifestLine { key: record.key.clone(), sha256, label: label.clone(), split, bytes: record.bytes };
            writer.push(&line).await?;
            *counts.entry(label).or_default().entry(split).or_default() += 1;
            baseline.add(&record);
            samples += 1;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if samples == 0 {
        return Err(SnapshotError::Empty(dataset.to_owned()));
    }
    writer.flush().await?;
    let id = hex::encode(&writer.id_hasher.finalize()[..8]);
    let snapshot = Snapshot {
        id: id.clone(),
        dataset: dataset.to_owned(),
        samples,
        labels: counts.keys().cloned().collect(),
        counts,
        parts: writer.parts,
        baseline,
        created_at,
        arrivals: Some(arrivals),
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

/// One manifest entry fetched for training or evaluation.
#[derive(Debug)]
pub enum Sample {
    Image(ManifestLine, image::DynamicImage),
    /// Left out, with why: `missing` (the object is gone), `changed_since_snapshot` (its bytes no
    /// longer have the manifest's sha256), `undecodable`.
    Skipped(&'static str),
}

/// The short side, in pixels, of the images [`fetch_sample`] returns (smaller images come as they
/// are): more than any model input cvops evaluates on needs, and a bound on what an image in
/// flight holds (a 100-megapixel photo arrives as about 1.3 megapixels).
pub const SAMPLE_SHORT_SIDE: u32 = 1024;

/// Reads a manifest entry's object from `bucket`, checks it against the manifest's sha256 and
/// decodes it, downscaled to a short side of [`SAMPLE_SHORT_SIDE`] (while decoding, for a JPEG):
/// register-model's evaluation sees a snapshot as the trainer does, and neither holds a
/// full-size photo per image in flight.
pub async fn fetch_sample(
    objects: &dyn ObjectStore,
    bucket: &str,
    line: ManifestLine,
    limits: &crate::validate::ValidationLimits,
) -> Result<Sample, ObjectStoreError> {
    fetch_sample_downscaled(objects, bucket, line, limits, SAMPLE_SHORT_SIDE).await
}

/// [`fetch_sample`] with the short side the caller needs (the trainer's inputs are far smaller).
pub async fn fetch_sample_downscaled(
    objects: &dyn ObjectStore,
    bucket: &str,
    line: ManifestLine,
    limits: &crate::validate::ValidationLimits,
    short_side: u32,
) -> Result<Sample, ObjectStoreError> {
    let data = match objects.get(bucket, &line.key, limits.max_bytes).await {
        Ok(data) => data,
        Err(ObjectStoreError::NotFound { .. }) => return Ok(Sample::Skipped("missing")),
        Err(e) => return Err(e),
    };
    if hex::encode(Sha256::digest(&data)) != line.sha256 {
        return Ok(Sample::Skipped("changed_since_snapshot"));
    }
    Ok(match crate::validate::decode_image_downscaled(&data, limits, short_side) {
        Ok(image) => Sample::Image(line, image),
        Err(_) => Sample::Skipped("undecodable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_range_land_in_the_end_bins() {
        let mut h = Histogram::new(Scale::Linear, 0.0, 256.0, 32);
        for v in [-5.0, 0.0, 7.9, 8.0, 255.9, 300.0, f64::NAN] {
            h.add(v);
        }
        assert_eq!((h.counts[0], h.counts[1], h.counts[31], h.total()), (3, 1, 2, 6));
    }

    #[test]
    fn log_scales_spread_sizes_and_sharpness() {
        let w = Histogram::new(Scale::Log2, 4.0, 16.0, 24);
        assert!(w.bin(28.0) < w.bin(224.0) && w.bin(224.0) < w.bin(4032.0));
        let s = Histogram::new(Scale::Log10OnePlus, 0.0, 7.0, 28);
        assert_eq!(s.bin(0.0), 0);
        assert!(s.bin(100.0) < s.bin(12_000.0));
    }
}
