//! Loading a snapshot for training: the manifest's images fetched through the object-store port
//! (many at once), checked against the manifest's sha256, decoded and resized in parallel on
//! every core, and kept as bytes (CHW planes, a quarter of the floats' size).
//!
//! Memory is bounded by bytes, not only by counts: the objects being fetched and decoded hold at
//! most [`FETCHED_BYTES_IN_FLIGHT`] between them (each one's size from the manifest), every image is
//! decoded straight to a short side of [`DECODE_SHORT_SIDE`] (a JPEG at 1/2, 1/4 or 1/8 scale in
//! the IDCT, so a camera photo's full-size pixels never exist; anything else within the decode
//! budget, then shrunk), and decoded images wait for conversion in batches of at most
//! [`PENDING_BYTES`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cvops_core::annotation::BoundingBox;
use cvops_core::key::Split;
use cvops_core::ports::{ObjectStore, ObjectStoreError};
use cvops_core::preprocess::planes;
use cvops_core::snapshot::{self, ManifestLine, Sample, Snapshot, SnapshotError};
use cvops_core::validate::ValidationLimits;
use futures::{stream, StreamExt};
use image::DynamicImage;
use rayon::prelude::*;
use tokio::sync::Semaphore;

/// Fetches in flight at once.
const CONCURRENT_FETCHES: usize = 32;
/// Bytes of fetched objects held at once, from their sizes (a larger object waits for the others
/// and then goes alone).
pub const FETCHED_BYTES_IN_FLIGHT: u64 = 256 << 20;
/// The short side images are decoded to: twice the largest input side the trainer picks by
/// itself, so the final resize still averages.
pub const DECODE_SHORT_SIDE: u32 = 128;
/// Decoded images wait for conversion in batches of at most this many bytes (or 256 images).
pub const PENDING_BYTES: u64 = 64 << 20;
/// The semaphore counts kibibytes, so that its permits fit a `u32`.
const KIB: u64 = 1024;
/// Images decoded to decide the input size and channels when the request does not say.
const PROBE: usize = 64;

/// One split's images as CHW bytes, and their label indices (a classification snapshot's) or
/// their boxes (a detection snapshot's; an image's label index is then 0).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub planes: Vec<u8>,
    pub labels: Vec<u32>,
    /// Per image, empty for a classification snapshot.
    pub boxes: Vec<Vec<BoundingBox>>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct LoadedData {
    pub labels: Vec<String>,
    pub size: u32,
    pub channels: u8,
    pub train: Samples,
    pub val: Samples,
    pub test: Samples,
    /// Manifest entries skipped: the object is gone, changed since the snapshot, or undecodable.
    pub skipped: BTreeMap<&'static str, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
    #[error("the snapshot has no {0} images; a model needs train and val images")]
    EmptySplit(&'static str),
}

/// Reads the snapshot descriptor from the store bucket.
pub async fn read_snapshot(objects: &dyn ObjectStore, bucket: &str, key: &str) -> Result<Snapshot, DataError> {
    let data = objects.get(bucket, key, 64 << 20).await?;
    serde_json::from_slice(&data).map_err(|e| {
        DataError::Objects(ObjectStoreError::Backend {
            message: format!("snapshot descriptor {key} is malformed: {e}"),
            retryable: false,
            source: None,
        })
    })
}

/// Loads every image of the snapshot. `size` fixes the square input side; `None` takes the
/// median short side of the first images, clamped to 16..=64 for a classifier and to 64..=128
/// for a detector (whose boxes must stay several pixels wide), a detector's rounded down to a
/// multiple of its stride. Channels are 1 when those images are all grey, else 3. `progress` is
/// called with (done, total) as images arrive.
pub async fn load(
    objects: &dyn ObjectStore,
    raw_bucket: &str,
    store_bucket: &str,
    snapshot: &Snapshot,
    size: Option<u32>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<LoadedData, DataError> {
    let mut lines = Vec::with_capacity(snapshot.samples as usize);
    snapshot::for_each_line(objects, store_bucket, snapshot, |line| lines.push(line)).await?;
    let total = lines.len();
    let labels = snapshot.labels.clone();
    let detection = snapshot.is_detection();
    let label_index: BTreeMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
    let limits = ValidationLimits::default();
    let done = Arc::new(AtomicUsize::new(0));
    let short_side = DECODE_SHORT_SIDE.max(size.unwrap_or(0).saturating_mul(2));
    let in_flight = Arc::new(Semaphore::new((FETCHED_BYTES_IN_FLIGHT / KIB) as usize));

    let mut fetched = stream::iter(lines)
        .map(|line| {
            let (limits, done, in_flight) = (&limits, done.clone(), in_flight.clone());
            async move {
                // The manifest says how large the object is (its sha256 is checked on arrival);
                // an older manifest that does not costs a HEAD request.
                let size = match line.bytes {
                    Some(bytes) => bytes.min(limits.max_bytes),
                    None => match objects.head(raw_bucket, &line.key).await {
                        Ok(meta) => meta.size.min(limits.max_bytes),
                        Err(ObjectStoreError::NotFound { .. }) => 0,
                        Err(e) => return Err(e),
                    },
                };
                let permits = size.div_ceil(KIB).clamp(1, FETCHED_BYTES_IN_FLIGHT / KIB) as u32;
                let _held = in_flight.acquire_many(permits).await.expect("the semaphore is never closed");
                let result = snapshot::fetch_sample_downscaled(objects, raw_bucket, line, limits, short_side).await;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                result
            }
        })
        .buffered(CONCURRENT_FETCHES);

    // Decide the input from the first images, then convert in parallel batches as they arrive.
    let mut data = LoadedData {
        labels: labels.clone(),
        size: 0,
        channels: 0,
        train: Samples::default(),
        val: Samples::default(),
        test: Samples::default(),
        skipped: BTreeMap::new(),
    };
    let mut pending: Vec<(ManifestLine, DynamicImage)> = Vec::new();
    let mut pending_bytes = 0u64;
    loop {
        let next = fetched.next().await;
        let finished = next.is_none();
        match next.transpose()? {
            Some(Sample::Image(line, image)) => {
                pending_bytes += image.as_bytes().len() as u64;
                pending.push((line, image));
            }
            Some(Sample::Skipped(why)) => *data.skipped.entry(why).or_default() += 1,
            None => {}
        }
        if data.size == 0 && (pending.len() >= PROBE || finished) {
            data.size = input_side(size.unwrap_or_else(|| typical_side(&pending, detection)), detection);
            data.channels = if pending.iter().all(|(_, image)| !image.color().has_color()) { 1 } else { 3 };
        }
        if data.size > 0 && (pending.len() >= 256 || pending_bytes >= PENDING_BYTES || finished) {
            pending_bytes = 0;
            let converted: Vec<(Split, u32, Vec<BoundingBox>, Vec<u8>)> = std::mem::take(&mut pending)
                .into_par_iter()
                .filter_map(|(line, image)| {
                    let (label, boxes) = match line.boxes {
                        Some(boxes) if detection => (0, boxes),
                        _ => (*label_index.get(line.label.as_str())?, Vec::new()),
                    };
                    Some((line.split, label, boxes, planes(&image, data.size, data.size, data.channels)))
                })
                .collect();
            for (split, label, boxes, bytes) in converted {
                let samples = match split {
                    Split::Train => &mut data.train,
                    Split::Val => &mut data.val,
                    Split::Test => &mut data.test,
                };
                samples.planes.extend_from_slice(&bytes);
                samples.labels.push(label);
                if detection {
                    samples.boxes.push(boxes);
                }
            }
        }
        if finished {
            break;
        }
    }
    if data.train.is_empty() {
        return Err(DataError::EmptySplit("train"));
    }
    if data.val.is_empty() {
        return Err(DataError::EmptySplit("val"));
    }
    Ok(data)
}

fn typical_side(images: &[(ManifestLine, DynamicImage)], detection: bool) -> u32 {
    let mut sides: Vec<u32> = images.iter().map(|(_, image)| image.width().min(image.height())).collect();
    sides.sort_unstable();
    let median = sides.get(sides.len() / 2).copied().unwrap_or(32);
    if detection {
        median.clamp(64, 128)
    } else {
        median.clamp(16, 64)
    }
}

/// A detector's input is a whole number of grid cells.
fn input_side(side: u32, detection: bool) -> u32 {
    let stride = crate::detector::STRIDE as u32;
    if detection {
        (side / stride).max(4) * stride
    } else {
        side
    }
}
