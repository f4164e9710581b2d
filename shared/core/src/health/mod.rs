//! Dataset health: what a team checks before training on a dataset, as one aggregate of its
//! catalog records (`cvops health` prints it, the demo shows it, `--json` writes it).
//! [`detection`] is the same for a dataset of boxes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{ImageRecord, ImageStatus};
use crate::key::Split;
use crate::ReasonCode;

pub mod detection;

pub use detection::DetectionHealth;

/// Summary statistics of one numeric feature over the accepted samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub mean: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        Some(Self { min: values[0], median: values[values.len() / 2], max: values[values.len() - 1], mean })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetHealth {
    pub dataset: String,
    pub accepted: usize,
    /// Accepted samples per label, then per split.
    pub per_label: BTreeMap<String, BTreeMap<Split, usize>>,
    pub duplicates: usize,
    pub near_duplicates: usize,
    pub rejected: BTreeMap<ReasonCode, usize>,
    pub deleted: usize,
    pub width: Option<Spread>,
    pub height: Option<Spread>,
    pub bytes: Option<Spread>,
    pub brightness: Option<Spread>,
    pub contrast: Option<Spread>,
    pub sharpness: Option<Spread>,
    /// Accepted samples per 16-level band of mean brightness (0-15, 16-31, ... 240-255).
    pub brightness_histogram: [usize; 16],
}

impl DatasetHealth {
    pub fn of(dataset: &str, records: &[ImageRecord]) -> Self {
        let accepted: Vec<&ImageRecord> = records.iter().filter(|r| r.status == ImageStatus::Accepted).collect();
        let mut per_label: BTreeMap<String, BTreeMap<Split, usize>> = BTreeMap::new();
        let mut brightness_histogram = [0usize; 16];
        for r in &accepted {
            let splits = per_label.entry(r.label.clone().unwrap_or_default()).or_default();
            *splits.entry(r.split.unwrap_or(Split::Train)).or_default() += 1;
            if let Some(b) = r.brightness {
                brightness_histogram[((b / 16.0) as usize).min(15)] += 1;
            }
        }
        let mut rejected = BTreeMap::new();
        for r in records.iter().filter(|r| r.status == ImageStatus::Rejected) {
            *rejected.entry(r.reason.unwrap_or(ReasonCode::Corrupt)).or_default() += 1;
        }
        let spread = |f: fn(&ImageRecord) -> Option<f64>| Spread::of(accepted.iter().filter_map(|r| f(r)).collect());
        Self {
            dataset: dataset.to_owned(),
            accepted: accepted.len(),
            per_label,
            duplicates: records.iter().filter(|r| r.status == ImageStatus::Duplicate).count(),
            near_duplicates: accepted.iter().filter(|r| r.near_duplicate_of.is_some()).count(),
            rejected,
            deleted: records.iter().filter(|r| r.status == ImageStatus::Deleted).count(),
            width: spread(|r| r.width.map(f64::from)),
            height: spread(|r| r.height.map(f64::from)),
            bytes: spread(|r| r.bytes.map(|b| b as f64)),
            brightness: spread(|r| r.brightness),
            contrast: spread(|r| r.contrast),
            sharpness: spread(|r| r.sharpness),
            brightness_histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::Sequencer;

    fn record(key: &str, status: ImageStatus, label: &str, brightness: f64) -> ImageRecord {
        let mut r = ImageRecord::blank(key, "d", status, Sequencer::new("0A"), "2026-01-01T00:00:00Z".into());
        r.label = Some(label.into());
        r.split = Some(Split::Val);
        r.brightness = Some(brightness);
        r
    }

    #[test]
    fn counts_only_accepted_samples_and_files_each_kind_apart() {
        let mut rejected = record("r", ImageStatus::Rejected, "cat", 0.0);
        rejected.reason = Some(ReasonCode::Truncated);
        let records = [
            record("a", ImageStatus::Accepted, "cat", 10.0),
            record("b", ImageStatus::Accepted, "cat", 250.0),
            record("c", ImageStatus::Accepted, "dog", 30.0),
            record("dup", ImageStatus::Duplicate, "cat", 10.0),
            record("gone", ImageStatus::Deleted, "dog", 10.0),
            rejected,
        ];
        let health = DatasetHealth::of("d", &records);
        assert_eq!((health.accepted, health.duplicates, health.deleted), (3, 1, 1));
        assert_eq!(health.per_label["cat"][&Split::Val], 2);
        assert_eq!(health.rejected[&ReasonCode::Truncated], 1);
        assert_eq!((health.brightness_histogram[0], health.brightness_histogram[1], health.brightness_histogram[15]), (1, 1, 1));
        let brightness = health.brightness.unwrap();
        assert_eq!((brightness.min, brightness.median, brightness.max), (10.0, 30.0, 250.0));
    }
}
