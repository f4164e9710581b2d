//! The image catalog: one record per raw-bucket key, and the index items that make deduplication
//! work without scanning a dataset.
//!
//! Its items and keys are in [`crate::schema`] (re-exported here): the image record
//! ([`ImageRecord`]), the first and later copies of some bytes (`key`), near-duplicate bands
//! (`phash`), the dataset names (`created_at`) and the sharded accepted-arrivals counter (`count`).
//!
//! Near duplicates: the 64-bit pHash is cut into [`BANDS`] bands. Two hashes within Hamming
//! distance 4 differ in at most 4 bits, so at least one of the 5 bands is identical
//! (pigeonhole); looking up the image's own band values finds every candidate, and only those
//! are compared. This is why the threshold is capped at [`MAX_NEAR_DUPLICATE_THRESHOLD`].

use serde::{Deserialize, Serialize};

use crate::annotation::{ClassNamesRecord, LabelRecord};
use crate::key::Split;
use crate::ports::{Table, TableError, TableExt};
use crate::reason::ReasonCode;
pub use crate::schema::{
    arrivals_pk, arrivals_shard_pk, band_pk, dataset_pk, duplicate_sk, duplicates_prefix, image_sk, label_sk, quarantine_key,
    quarantine_sidecar_key, sha_sk, ARRIVALS_SK, ARRIVAL_SHARDS, CLASS_NAMES_SK, DATASETS_PK, IMAGE_SK_PREFIX, LABEL_SK_PREFIX,
};
use crate::sequencer::Sequencer;
use crate::validate::Format;

/// Where rejected keys that name no dataset are filed.
pub const NO_DATASET: &str = "_no_dataset";
pub const BANDS: usize = 5;
pub const ARRIVALS_FIELD: &str = "count";
pub const MAX_NEAR_DUPLICATE_THRESHOLD: u32 = (BANDS - 1) as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// A valid sample of the dataset.
    Accepted,
    /// The same bytes as an earlier sample (`duplicate_of`): an alias, not a sample.
    Duplicate,
    /// Invalid; the object is in quarantine with its reason.
    Rejected,
    /// Removed from the raw bucket.
    Deleted,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Accepted => "accepted",
            ImageStatus::Duplicate => "duplicate",
            ImageStatus::Rejected => "rejected",
            ImageStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ImageStatus::Accepted, ImageStatus::Duplicate, ImageStatus::Rejected, ImageStatus::Deleted]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// The catalog's view of one raw-bucket key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub key: String,
    pub dataset: String,
    pub status: ImageStatus,
    /// The S3 sequencer of the last event applied to this key: older events are ignored.
    pub sequencer: Sequencer,
    /// RFC 3339, from the event.
    pub uploaded_at: String,
    pub split: Option<Split>,
    pub label: Option<String>,
    pub format: Option<Format>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub color_type: Option<String>,
    pub bit_depth: Option<u8>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    /// The 64-bit pHash, 16 lowercase hex digits.
    pub phash: Option<String>,
    pub brightness: Option<f64>,
    pub contrast: Option<f64>,
    pub sharpness: Option<f64>,
    /// For a duplicate: the key of the first copy.
    pub duplicate_of: Option<String>,
    /// For an accepted image that closely resembles another: that image's key and the distance.
    pub near_duplicate_of: Option<String>,
    pub near_duplicate_distance: Option<u32>,
    pub reason: Option<ReasonCode>,
    pub message: Option<String>,
    /// For a rejected image: where the object and its `.reason.json` sidecar are, in the store bucket.
    pub quarantine_key: Option<String>,
    /// For an image of a detection dataset: the key of the label file with its boxes (which
    /// may arrive before or after it, or never: then it is a background image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_key: Option<String>,
}

impl ImageRecord {
    /// An empty record for `key`, to be filled by the caller.
    pub fn blank(key: &str, dataset: &str, status: ImageStatus, sequencer: Sequencer, uploaded_at: String) -> Self {
        Self {
            key: key.to_owned(),
            dataset: dataset.to_owned(),
            status,
            sequencer,
            uploaded_at,
            split: None,
            label: None,
            format: None,
            width: None,
            height: None,
            color_type: None,
            bit_depth: None,
            bytes: None,
            sha256: None,
            phash: None,
            brightness: None,
            contrast: None,
            sharpness: None,
            duplicate_of: None,
            near_duplicate_of: None,
            near_duplicate_distance: None,
            reason: None,
            message: None,
            quarantine_key: None,
            labels_key: None,
        }
    }
}

/// The band values of a pHash: 13, 13, 13, 13 and 12 bits.
pub fn bands(phash: u64) -> [u64; BANDS] {
    const WIDTHS: [u32; BANDS] = [13, 13, 13, 13, 12];
    let mut out = [0u64; BANDS];
    let mut shift = 0;
    for (band, width) in WIDTHS.iter().enumerate() {
        out[band] = (phash >> shift) & ((1u64 << width) - 1);
        shift += width;
    }
    out
}

/// Every image record of `dataset`, in key order. Reads the dataset's partition: for commands and
/// reports, never for hot paths.
pub async fn images(table: &dyn Table, dataset: &str) -> Result<Vec<ImageRecord>, TableError> {
    table.query_all(&dataset_pk(dataset), IMAGE_SK_PREFIX).await?.iter().map(|item| item.to_record()).collect()
}

/// Every label-file record of `dataset`, in key order (none for a classification dataset).
pub async fn label_records(table: &dyn Table, dataset: &str) -> Result<Vec<LabelRecord>, TableError> {
    table.query_all(&dataset_pk(dataset), LABEL_SK_PREFIX).await?.iter().map(|item| item.to_record()).collect()
}

/// The class names of a detection dataset, once its `data.yaml` is in.
pub async fn class_names(table: &dyn Table, dataset: &str) -> Result<Option<ClassNamesRecord>, TableError> {
    table.get(&dataset_pk(dataset), CLASS_NAMES_SK).await?.map(|item| item.to_record()).transpose()
}

/// The names of the datasets, in order.
pub async fn dataset_names(table: &dyn Table) -> Result<Vec<String>, TableError> {
    Ok(table.query_all(DATASETS_PK, "").await?.into_iter().map(|item| item.sk).collect())
}

/// How many images ingest has accepted into `dataset` so far (arrivals: removals do not lower it).
/// What the continuous-training rule compares with the count at the serving model's snapshot.
pub async fn accepted_arrivals(table: &dyn Table, dataset: &str) -> Result<u64, TableError> {
    let mut total = 0;
    for shard in 0..ARRIVAL_SHARDS {
        if let Some(item) = table.get(&arrivals_shard_pk(dataset, shard), ARRIVALS_SK).await? {
            total += item.i64_attr(ARRIVALS_FIELD).unwrap_or(0).max(0) as u64;
        }
    }
    Ok(total)
}

/// The sidecar written next to a quarantined object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineSidecar {
    pub reason: ReasonCode,
    pub message: String,
    pub original_bucket: String,
    pub original_key: String,
    pub sequencer: Sequencer,
    /// RFC 3339.
    pub quarantined_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_within_the_threshold_always_share_a_band() {
        // Flip every combination of up to 4 bits spread over the hash: one band stays equal.
        let base = 0x0123_4567_89AB_CDEFu64;
        let positions = [0u32, 7, 13, 20, 26, 33, 39, 45, 52, 58, 63];
        for &a in &positions {
            for &b in &positions {
                for &c in &positions {
                    for &d in &positions {
                        let other = base ^ (1 << a) ^ (1 << b) ^ (1 << c) ^ (1 << d);
                        let equal = bands(base).iter().zip(bands(other)).filter(|(x, y)| **x == *y).count();
                        assert!(equal >= 1, "{a} {b} {c} {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn bands_cover_all_64_bits() {
        assert_eq!(bands(u64::MAX), [8191, 8191, 8191, 8191, 4095]);
        assert_eq!(bands(0), [0; 5]);
    }
}
