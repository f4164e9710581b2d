//! The image catalog: one record per raw-bucket key, and the index items that make deduplication
//! work without scanning a dataset.
//!
//! Items in the single table (pk, sk):
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | image record | `DS#<dataset>` | `IMG#<key>` | [`ImageRecord`] |
//! | first copy of some bytes | `DS#<dataset>` | `SHA#<sha256>` | `key` |
//! | a later copy of them | `DS#<dataset>` | `DUP#<sha256>#<key>` | `key` |
//! | near-duplicate band | `PH#<dataset>#<band>#<bits>` | `<key>` | `phash` |
//! | dataset registry | `DATASETS` | `<dataset>` | `created_at` |
//! | accepted arrivals | `ARRIVALS#<dataset>#<shard>` | `ACCEPTED` | `count` |
//!
//! Near duplicates: the 64-bit pHash is cut into [`BANDS`] bands. Two hashes within Hamming
//! distance 4 differ in at most 4 bits, so at least one of the 5 bands is identical
//! (pigeonhole); looking up the image's own band values finds every candidate, and only those
//! are compared. This is why the threshold is capped at [`MAX_NEAR_DUPLICATE_THRESHOLD`].

use serde::{Deserialize, Serialize};

use crate::key::Split;
use crate::ports::{Table, TableError};
use crate::reason::ReasonCode;
use crate::sequencer::Sequencer;
use crate::validate::Format;

/// Where rejected keys that name no dataset are filed.
pub const NO_DATASET: &str = "_no_dataset";
pub const DATASETS_PK: &str = "DATASETS";
pub const BANDS: usize = 5;
/// Items the accepted-arrivals counter of a dataset is spread over, so a bulk upload does not
/// make one item hot.
pub const ARRIVAL_SHARDS: u32 = 8;
pub const ARRIVALS_SK: &str = "ACCEPTED";
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
        }
    }
}

pub fn dataset_pk(dataset: &str) -> String {
    format!("DS#{dataset}")
}

pub fn image_sk(key: &str) -> String {
    format!("IMG#{key}")
}

pub const IMAGE_SK_PREFIX: &str = "IMG#";

pub fn sha_sk(sha256: &str) -> String {
    format!("SHA#{sha256}")
}

/// A duplicate's entry under its bytes' hash: when the first copy goes, one of these takes its
/// place as the sample, so deleting an image never drops bytes that are still uploaded.
pub fn duplicate_sk(sha256: &str, key: &str) -> String {
    format!("{}{key}", duplicates_prefix(sha256))
}

pub fn duplicates_prefix(sha256: &str) -> String {
    format!("DUP#{sha256}#")
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

pub fn band_pk(dataset: &str, band: usize, value: u64) -> String {
    format!("PH#{dataset}#{band}#{value:04x}")
}

/// The arrivals shard of an image, from its content hash.
pub fn arrivals_pk(dataset: &str, sha256: &str) -> String {
    let shard = u32::from_str_radix(sha256.get(..2).unwrap_or("0"), 16).unwrap_or(0) % ARRIVAL_SHARDS;
    format!("ARRIVALS#{dataset}#{shard}")
}

/// How many images ingest has accepted into `dataset` so far (arrivals: removals do not lower it).
/// What the continuous-training rule compares with the count at the serving model's snapshot.
pub async fn accepted_arrivals(table: &dyn Table, dataset: &str) -> Result<u64, TableError> {
    let mut total = 0;
    for shard in 0..ARRIVAL_SHARDS {
        if let Some(item) = table.get(&format!("ARRIVALS#{dataset}#{shard}"), ARRIVALS_SK).await? {
            total += item.i64_attr(ARRIVALS_FIELD).unwrap_or(0).max(0) as u64;
        }
    }
    Ok(total)
}

/// The quarantine location (store bucket) of a rejected upload: unique per event, so a later
/// bad upload to the same key never overwrites an earlier one.
pub fn quarantine_key(raw_key: &str, sequencer: &Sequencer) -> String {
    format!("quarantine/{raw_key}/{}", sequencer.as_str())
}

pub fn quarantine_sidecar_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}.reason.json")
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
