//! The monitoring feed: what every prediction adds to its model version's hourly aggregate, and
//! how those aggregates sit in the single table.
//!
//! An aggregate is a set of counters: requests, errors, and histograms of latency, confidence, the
//! predicted class and the input features (brightness, contrast, sharpness, width, height, binned
//! exactly as the snapshot's [`Baseline`], so the monitor compares them bin by bin). The endpoint
//! accumulates them in memory and flushes them with one atomic [`Table::add_all`] per item, so a
//! request costs no table write. Each flush goes to one of [`SHARDS`] items chosen at random: a
//! hot model's writes spread over several partitions instead of throttling one. The monitor
//! reads all shards of an hour and sums them.
//!
//! Items: `MON#<model>#v<version>#<hour>#<shard>` / `AGG` hold the counters; `MONIDX#<model>` /
//! `<hour>#v<version>` says that a version served traffic that hour, so the monitor finds the
//! windows with a query instead of a scan. `<hour>` is `YYYY-MM-DDTHH` in UTC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ports::{Item, Table, TableError, TableExt};
pub use crate::schema::{aggregate_pk, monitoring_index_pk as index_pk, monitoring_index_sk as index_sk, AGGREGATE_SK};
use crate::snapshot::{Baseline, Histogram, Scale};
use crate::stats::ImageStats;

/// Items each model-version-hour's counters are spread over.
pub const SHARDS: u32 = 8;
/// Below this top-class score a prediction is "low confidence": counted, and sampled for review.
pub const LOW_CONFIDENCE: f64 = 0.5;
/// Aggregates are kept for 90 days (the table's TTL removes them).
pub const RETENTION_SECONDS: i64 = 90 * 24 * 3600;

/// The features of one input image, as the catalog records them at ingest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputFeatures {
    pub brightness: f64,
    pub contrast: f64,
    pub sharpness: f64,
    pub width: u32,
    pub height: u32,
}

impl InputFeatures {
    pub fn of(stats: &ImageStats, width: u32, height: u32) -> Self {
        Self { brightness: stats.brightness, contrast: stats.contrast, sharpness: stats.sharpness, width, height }
    }
}

impl Baseline {
    /// Adds one input's features, binned as a snapshot's baseline bins its samples.
    pub fn add_features(&mut self, f: &InputFeatures) {
        self.brightness.add(f.brightness);
        self.contrast.add(f.contrast);
        self.sharpness.add(f.sharpness);
        self.width.add(f64::from(f.width));
        self.height.add(f64::from(f.height));
    }
}

/// What one request contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub latency_ms: f64,
    /// The request reached this version but got no prediction (an undecodable image, say).
    pub error: bool,
    /// The top class and its score, when there was a prediction.
    pub prediction: Option<(usize, f64)>,
    pub features: Option<InputFeatures>,
}

/// The counters of one model version over some span (an hour, a window of hours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub requests: u64,
    pub errors: u64,
    pub low_confidence: u64,
    /// Milliseconds, on log10(1 + ms): 20 bins a decade from 0 to 10 s.
    pub latency: Histogram,
    /// The top class's score.
    pub confidence: Histogram,
    /// Predictions per class index.
    pub classes: BTreeMap<usize, u64>,
    /// The input features, binned as the training baseline is.
    pub features: Baseline,
}

impl Default for Aggregate {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: 0,
            low_confidence: 0,
            latency: Histogram::new(Scale::Log10OnePlus, 0.0, 4.0, 80),
            confidence: Histogram::new(Scale::Linear, 0.0, 1.0, 20),
            classes: BTreeMap::new(),
            features: Baseline::default(),
        }
    }
}

impl Aggregate {
    pub fn observe(&mut self, observation: &Observation) {
        self.requests += 1;
        self.errors += u64::from(observation.error);
        self.latency.add(observation.latency_ms);
        if let Some((class, score)) = observation.prediction {
            *self.classes.entry(class).or_default() += 1;
            self.confidence.add(score);
            self.low_confidence += u64::from(score < LOW_CONFIDENCE);
        }
        if let Some(f) = &observation.features {
            self.features.add_features(f);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    fn histograms(&self) -> [(&'static str, &Histogram); 7] {
        [
            ("latency", &self.latency),
            ("confidence", &self.confidence),
            ("brightness", &self.features.brightness),
            ("contrast", &self.features.contrast),
            ("sharpness", &self.features.sharpness),
            ("width", &self.features.width),
            ("height", &self.features.height),
        ]
    }

    fn histograms_mut(&mut self) -> [(&'static str, &mut Histogram); 7] {
        [
            ("latency", &mut self.latency),
            ("confidence", &mut self.confidence),
            ("brightness", &mut self.features.brightness),
            ("contrast", &mut self.features.contrast),
            ("sharpness", &mut self.features.sharpness),
            ("width", &mut self.features.width),
            ("height", &mut self.features.height),
        ]
    }

    /// The non-zero counters as `(attribute, delta)`: `requests`, `errors`, `low_confidence`,
    /// `class_<i>`, `<histogram>_<bin>` (bins two digits wide, so the console sorts them).
    pub fn to_deltas(&self) -> Vec<(String, i64)> {
        let mut deltas = Vec::new();
        let mut push = |name: String, value: u64| {
            if value > 0 {
                deltas.push((name, value as i64));
            }
        };
        push("requests".into(), self.requests);
        push("errors".into(), self.errors);
        push("low_confidence".into(), self.low_confidence);
        for (class, count) in &self.classes {
            push(format!("class_{class}"), *count);
        }
        for (name, histogram) in self.histograms() {
            for (bin, count) in histogram.counts.iter().enumerate() {
                push(format!("{name}_{bin:02}"), *count);
            }
        }
        deltas
    }

    /// Adds the counters of a stored item (attributes it does not know are ignored).
    pub fn add_item(&mut self, item: &Item) {
        for (name, value) in &item.attrs {
            let Some(count) = value.as_i64().filter(|c| *c > 0).map(|c| c as u64) else { continue };
            match name.as_str() {
                "requests" => self.requests += count,
                "errors" => self.errors += count,
                "low_confidence" => self.low_confidence += count,
                _ => {
                    let Some((prefix, index)) = name.rsplit_once('_') else { continue };
                    let Ok(index) = index.parse::<usize>() else { continue };
                    if prefix == "class" {
                        *self.classes.entry(index).or_default() += count;
                    } else if let Some((_, histogram)) = self.histograms_mut().into_iter().find(|(n, _)| *n == prefix) {
                        if let Some(bin) = histogram.counts.get_mut(index) {
                            *bin += count;
                        }
                    }
                }
            }
        }
    }

    pub fn merge(&mut self, other: &Aggregate) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.low_confidence += other.low_confidence;
        for (class, count) in &other.classes {
            *self.classes.entry(*class).or_default() += count;
        }
        let others = other.histograms();
        for ((_, mine), (_, theirs)) in self.histograms_mut().into_iter().zip(others) {
            for (a, b) in mine.counts.iter_mut().zip(&theirs.counts) {
                *a += b;
            }
        }
    }
}

/// `YYYY-MM-DDTHH` of an RFC 3339 time (UTC, as the clock port gives it).
pub fn hour_of(rfc3339: &str) -> String {
    rfc3339.chars().take(13).collect()
}

/// Writes one accumulated aggregate: the counters to a random shard, and the index entry.
pub async fn flush(
    table: &dyn Table,
    model: &str,
    version: u32,
    hour: &str,
    shard: u32,
    aggregate: &Aggregate,
    expires_at: i64,
) -> Result<(), TableError> {
    if aggregate.is_empty() {
        return Ok(());
    }
    // The index first: writing it twice is harmless, while the counters are written last and
    // once, so a flush that fails can be retried without counting anything twice.
    let index = Item::new(index_pk(model), index_sk(hour, version))
        .with("hour", hour)
        .with("model_version", version)
        .expiring_at(expires_at);
    table.put(index).await?;
    table
        .add_all(&aggregate_pk(model, version, hour, shard % SHARDS), AGGREGATE_SK, &aggregate.to_deltas(), Some(expires_at))
        .await
}

/// The versions of `model` that served traffic in the hours `from..=to` (`YYYY-MM-DDTHH`).
pub async fn versions_served(table: &dyn Table, model: &str, from: &str, to: &str) -> Result<Vec<u32>, TableError> {
    // '~' sorts after '#', so every version of the last hour is inside.
    let upper = format!("{to}~");
    let mut versions: Vec<u32> = table
        .query_all(&index_pk(model), "")
        .await?
        .iter()
        .filter(|item| item.sk.as_str() >= from && item.sk.as_str() < upper.as_str())
        .filter_map(|item| item.i64_attr("model_version").map(|v| v as u32))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    Ok(versions)
}

/// The sum of every shard of `model` v`version` over `hours`.
pub async fn read_window(table: &dyn Table, model: &str, version: u32, hours: &[String]) -> Result<Aggregate, TableError> {
    let mut total = Aggregate::default();
    for hour in hours {
        for shard in 0..SHARDS {
            if let Some(item) = table.get(&aggregate_pk(model, version, hour, shard), AGGREGATE_SK).await? {
                total.add_item(&item);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(latency_ms: f64, class: usize, score: f64, brightness: f64) -> Observation {
        Observation {
            latency_ms,
            error: false,
            prediction: Some((class, score)),
            features: Some(InputFeatures { brightness, contrast: 40.0, sharpness: 900.0, width: 28, height: 28 }),
        }
    }

    #[test]
    fn an_aggregate_survives_the_round_trip_through_counters() {
        let mut aggregate = Aggregate::default();
        aggregate.observe(&observation(0.4, 3, 0.99, 30.0));
        aggregate.observe(&observation(12.0, 7, 0.31, 200.0));
        aggregate.observe(&Observation { latency_ms: 0.2, error: true, prediction: None, features: None });
        let mut item = Item::new("pk", "AGG");
        for (name, delta) in aggregate.to_deltas() {
            item = item.with(&name, delta);
        }
        let mut back = Aggregate::default();
        back.add_item(&item);
        assert_eq!(back, aggregate);
        assert_eq!((back.requests, back.errors, back.low_confidence), (3, 1, 1));
        assert_eq!(back.classes, BTreeMap::from([(3, 1), (7, 1)]));
    }

    #[test]
    fn merging_adds_every_counter() {
        let (mut a, mut b) = (Aggregate::default(), Aggregate::default());
        a.observe(&observation(1.0, 1, 0.9, 50.0));
        b.observe(&observation(1.0, 1, 0.9, 50.0));
        b.observe(&observation(100.0, 2, 0.6, 120.0));
        a.merge(&b);
        assert_eq!(a.requests, 3);
        assert_eq!(a.classes[&1], 2);
        assert_eq!(a.features.brightness.total(), 3);
        assert_eq!(a.latency.total(), 3);
    }

    #[test]
    fn hours_are_the_first_thirteen_characters_of_the_time() {
        assert_eq!(hour_of("2026-11-27T15:04:05.123Z"), "2026-11-27T15");
        assert!(index_sk("2026-11-27T15", 3) < index_sk("2026-11-27T16", 1), "index entries sort by hour first");
    }
}
