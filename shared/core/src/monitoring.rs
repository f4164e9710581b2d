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
use crate::snapshot::{Baseline, BoxBaseline, Histogram, Scale};
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

/// One box a detector served, as the monitor bins it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservedBox {
    pub class: usize,
    pub score: f64,
    /// sqrt(box area / image area), as the snapshot's box baseline measures it.
    pub relative_size: f64,
    pub log2_aspect: f64,
}

impl ObservedBox {
    /// A box of `width` x `height` pixels in an image of `image_width` x `image_height`.
    pub fn new(class: usize, score: f64, width: f64, height: f64, image_width: u32, image_height: u32) -> Self {
        let area = f64::from(image_width.max(1)) * f64::from(image_height.max(1));
        Self { class, score, relative_size: (width * height / area).sqrt(), log2_aspect: (width / height).log2() }
    }
}

/// What one request contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub latency_ms: f64,
    /// The request reached this version but got no prediction (an undecodable image, say).
    pub error: bool,
    /// A classifier's top class and its score, when there was a prediction.
    pub prediction: Option<(usize, f64)>,
    /// A detector's served boxes, when there was a prediction (`None` for a classifier).
    pub boxes: Option<Vec<ObservedBox>>,
    pub features: Option<InputFeatures>,
}

/// A detector's served boxes over some span, binned as the snapshot's [`BoxBaseline`] bins its
/// boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxWindow {
    pub boxes_per_image: Histogram,
    pub relative_size: Histogram,
    pub log2_aspect: Histogram,
    /// Served boxes per class index.
    pub per_class: BTreeMap<usize, u64>,
    /// Each served box's score.
    pub confidence: Histogram,
}

impl Default for BoxWindow {
    fn default() -> Self {
        let bins = BoxBaseline::new(0);
        Self {
            boxes_per_image: bins.boxes_per_image,
            relative_size: bins.relative_size,
            log2_aspect: bins.log2_aspect,
            per_class: BTreeMap::new(),
            confidence: Histogram::new(Scale::Linear, 0.0, 1.0, 20),
        }
    }
}

impl BoxWindow {
    /// Images with detector answers in the window.
    pub fn images(&self) -> u64 {
        self.boxes_per_image.total()
    }
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
    /// A detector's boxes (empty for a classifier).
    #[serde(default)]
    pub boxes: BoxWindow,
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
            boxes: BoxWindow::default(),
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
        if let Some(boxes) = &observation.boxes {
            // An image in which the detector is sure of nothing is a low-confidence one too.
            let best = boxes.iter().map(|b| b.score).fold(0.0, f64::max);
            self.low_confidence += u64::from(best < LOW_CONFIDENCE);
            let window = &mut self.boxes;
            window.boxes_per_image.add(boxes.len() as f64);
            for b in boxes {
                window.relative_size.add(b.relative_size);
                window.log2_aspect.add(b.log2_aspect);
                window.confidence.add(b.score);
                *window.per_class.entry(b.class).or_default() += 1;
            }
        }
        if let Some(f) = &observation.features {
            self.features.add_features(f);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests == 0
    }

    fn histograms(&self) -> [(&'static str, &Histogram); 11] {
        [
            ("latency", &self.latency),
            ("confidence", &self.confidence),
            ("brightness", &self.features.brightness),
            ("contrast", &self.features.contrast),
            ("sharpness", &self.features.sharpness),
            ("width", &self.features.width),
            ("height", &self.features.height),
            ("boxesperimage", &self.boxes.boxes_per_image),
            ("boxsize", &self.boxes.relative_size),
            ("boxaspect", &self.boxes.log2_aspect),
            ("boxconfidence", &self.boxes.confidence),
        ]
    }

    fn histograms_mut(&mut self) -> [(&'static str, &mut Histogram); 11] {
        [
            ("latency", &mut self.latency),
            ("confidence", &mut self.confidence),
            ("brightness", &mut self.features.brightness),
            ("contrast", &mut self.features.contrast),
            ("sharpness", &mut self.features.sharpness),
            ("width", &mut self.features.width),
            ("height", &mut self.features.height),
            ("boxesperimage", &mut self.boxes.boxes_per_image),
            ("boxsize", &mut self.boxes.relative_size),
            ("boxaspect", &mut self.boxes.log2_aspect),
            ("boxconfidence", &mut self.boxes.confidence),
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
        for (class, count) in &self.boxes.per_class {
            push(format!("boxclass_{class}"), *count);
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
                    } else if prefix == "boxclass" {
                        *self.boxes.per_class.entry(index).or_default() += count;
                    } else if let Some((_, histogram)) = self.histograms_mut().into_iter().find(|(n, _)| *n == prefix) {
                        if let Some(bin) = histogram.counts.get_mut(index) {
                            *bin += count;
                        }
                    }
                }
            }
        }
    }

    /// The aggregate these counters make (what [`Self::to_deltas`] gave, or part of it).
    fn from_deltas(deltas: &[(String, i64)]) -> Self {
        let mut item = Item::new("", "");
        for (name, delta) in deltas {
            item = item.with(name, *delta);
        }
        let mut aggregate = Aggregate::default();
        aggregate.add_item(&item);
        aggregate
    }

    pub fn merge(&mut self, other: &Aggregate) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.low_confidence += other.low_confidence;
        for (class, count) in &other.classes {
            *self.classes.entry(*class).or_default() += count;
        }
        for (class, count) in &other.boxes.per_class {
            *self.boxes.per_class.entry(*class).or_default() += count;
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

/// The most counters one atomic update carries: DynamoDB caps an update expression at 4 KB and a
/// counter takes about 12 characters of it, while a busy detector's hour fills some 300 bins
/// and a counter per class.
pub const MAX_COUNTERS_PER_UPDATE: usize = 200;

/// A flush that did not finish: the error, and the counters it did not write (to be written by
/// a later flush; those it wrote are not in it, so nothing is counted twice).
#[derive(Debug)]
pub struct FlushError {
    pub error: TableError,
    pub unwritten: Aggregate,
}

/// Writes one accumulated aggregate: the index entry, then the counters to a shard, in atomic
/// updates of at most [`MAX_COUNTERS_PER_UPDATE`] counters each.
pub async fn flush(
    table: &dyn Table,
    model: &str,
    version: u32,
    hour: &str,
    shard: u32,
    aggregate: &Aggregate,
    expires_at: i64,
) -> Result<(), FlushError> {
    // Not `is_empty`: what a failed flush hands back may hold no `requests` (written already)
    // and still have counters to write.
    let deltas = aggregate.to_deltas();
    if deltas.is_empty() {
        return Ok(());
    }
    // The index first: writing it twice is harmless, while each group of counters is written
    // once, so a flush that fails hands back exactly what it did not add.
    let index = Item::new(index_pk(model), index_sk(hour, version))
        .with("hour", hour)
        .with("model_version", version)
        .expiring_at(expires_at);
    if let Err(error) = table.put(index).await {
        return Err(FlushError { error, unwritten: aggregate.clone() });
    }
    let pk = aggregate_pk(model, version, hour, shard % SHARDS);
    for (i, group) in deltas.chunks(MAX_COUNTERS_PER_UPDATE).enumerate() {
        if let Err(error) = table.add_all(&pk, AGGREGATE_SK, group, Some(expires_at)).await {
            let rest = &deltas[i * MAX_COUNTERS_PER_UPDATE..];
            return Err(FlushError { error, unwritten: Aggregate::from_deltas(rest) });
        }
    }
    Ok(())
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
            boxes: None,
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
        aggregate.observe(&Observation { latency_ms: 0.2, error: true, prediction: None, boxes: None, features: None });
        let back = Aggregate::from_deltas(&aggregate.to_deltas());
        assert_eq!(back, aggregate);
        assert_eq!((back.requests, back.errors, back.low_confidence), (3, 1, 1));
        assert_eq!(back.classes, BTreeMap::from([(3, 1), (7, 1)]));
    }

    #[test]
    fn a_detectors_boxes_survive_the_round_trip_and_an_unsure_image_is_low_confidence() {
        let mut aggregate = Aggregate::default();
        let boxes = vec![ObservedBox::new(2, 0.9, 20.0, 10.0, 100, 100), ObservedBox::new(5, 0.3, 50.0, 50.0, 100, 100)];
        let detected = |boxes: Vec<ObservedBox>| Observation {
            latency_ms: 3.0,
            error: false,
            prediction: None,
            boxes: Some(boxes),
            features: None,
        };
        aggregate.observe(&detected(boxes));
        aggregate.observe(&detected(Vec::new()));
        let back = Aggregate::from_deltas(&aggregate.to_deltas());
        assert_eq!(back, aggregate);
        assert_eq!((back.boxes.images(), back.low_confidence), (2, 1));
        assert_eq!(back.boxes.per_class, BTreeMap::from([(2, 1), (5, 1)]));
        assert_eq!(back.boxes.relative_size.bin(0.5), back.boxes.relative_size.counts.iter().rposition(|c| *c > 0).unwrap());
        assert!(back.classes.is_empty() && back.confidence.total() == 0, "a detector's boxes are not a classifier's classes");
    }

    #[test]
    fn counters_beyond_one_update_are_split_and_a_failure_hands_back_only_the_unwritten() {
        // More counters than one update carries: 700 classes, one prediction each.
        let mut aggregate = Aggregate::default();
        for class in 0..700 {
            aggregate.observe(&Observation {
                latency_ms: 1.0,
                error: false,
                prediction: Some((class, 0.9)),
                boxes: None,
                features: None,
            });
        }
        let deltas = aggregate.to_deltas();
        assert!(deltas.len() > 2 * MAX_COUNTERS_PER_UPDATE);
        let rest = Aggregate::from_deltas(&deltas[MAX_COUNTERS_PER_UPDATE..]);
        let mut whole = Aggregate::from_deltas(&deltas[..MAX_COUNTERS_PER_UPDATE]);
        whole.merge(&rest);
        assert_eq!(whole, aggregate, "the groups add up to the whole");
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
