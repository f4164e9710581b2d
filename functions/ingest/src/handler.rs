//! The ingest handler: S3 notices in, catalog records, index items and quarantined objects out.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cvops_core::annotation::AnnotationCode;
use cvops_core::catalog::{
    arrivals_pk, band_pk, bands, dataset_pk, duplicate_sk, duplicates_prefix, image_sk, quarantine_key, quarantine_sidecar_key,
    sha_sk, ImageRecord, ImageStatus, QuarantineSidecar, ARRIVALS_FIELD, ARRIVALS_SK, DATASETS_PK, NO_DATASET,
};
use cvops_core::clock::Clock;
use cvops_core::failure::Retryable;
use cvops_core::key::{ImageKey, RawKey, Split};
use cvops_core::ports::{Item, ObjectStore, ObjectStoreError, Ports, Table, TableError, TableExt};
use cvops_core::reason::{ReasonCode, Rejection};
use cvops_core::stats::hamming;
use cvops_core::validate::{validate, ValidationReport};
use futures::TryStreamExt;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::config::IngestConfig;
use crate::notice::{IngestEvent, Notice, NoticeError, NoticeKind};

/// How often a record write is retried after losing a race for the same key.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("catalog: {0}")]
    Table(#[from] TableError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
    #[error("the record for {0} kept changing under us; retry the event")]
    Contended(String),
    #[error("bad event record: {0}")]
    Event(#[from] NoticeError),
}

/// Whether Lambda (or the local router) should deliver the event again.
impl Retryable for IngestError {
    fn is_retryable(&self) -> bool {
        match self {
            IngestError::Table(e) => e.is_retryable(),
            IngestError::Objects(e) => e.is_retryable(),
            IngestError::Contended(_) => true,
            IngestError::Event(_) => false,
        }
    }
}

/// What happened to one event record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Accepted {
        key: String,
        dataset: String,
        split: Split,
        near_duplicate_of: Option<String>,
    },
    Duplicate {
        key: String,
        dataset: String,
        duplicate_of: String,
    },
    Rejected {
        key: String,
        dataset: String,
        reason: ReasonCode,
        message: String,
        quarantine_key: String,
    },
    Deleted {
        key: String,
    },
    /// A label file read: its good boxes kept, its bad lines (if any) quarantined.
    Labeled {
        key: String,
        dataset: String,
        boxes: usize,
        refused: BTreeMap<AnnotationCode, usize>,
        /// False while the dataset has no `data.yaml`: class indices are checked when it comes.
        classes_checked: bool,
    },
    /// A label file or `data.yaml` refused whole and quarantined.
    LabelsRejected {
        key: String,
        dataset: String,
        reason: AnnotationCode,
        message: String,
        quarantine_key: String,
    },
    /// A dataset's class names recorded; `checked` label files waiting for them were checked.
    ClassNames {
        key: String,
        dataset: String,
        classes: usize,
        checked: usize,
    },
    /// Nothing changed: a replay, an event older than what is recorded, a test event.
    Ignored {
        key: Option<String>,
        why: String,
    },
}

/// The ingest function, over any object store and table.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) table: Arc<dyn Table>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: IngestConfig,
}

impl Ingest {
    pub fn new(ports: &Ports, config: IngestConfig) -> Self {
        Self { objects: ports.objects.clone(), table: ports.table.clone(), clock: ports.clock.clone(), config }
    }

    /// Handles every record of an event, in order. Records are independent: all are attempted,
    /// and the first error is returned after the rest have run, so a retry of the whole event
    /// (which is what Lambda does) redoes only what failed; the others are replays.
    pub async fn handle(&self, event: &IngestEvent) -> Result<Vec<Outcome>, IngestError> {
        let records = match event {
            IngestEvent::Test(test) => {
                info!(bucket = %test.bucket, "s3:TestEvent ignored");
                return Ok(vec![Outcome::Ignored { key: None, why: format!("{} for bucket {}", test.event, test.bucket) }]);
            }
            IngestEvent::Records(event) => &event.records,
        };
        let mut outcomes = Vec::with_capacity(records.len());
        let mut first_error = None;
        for record in records {
            let result = match Notice::try_from(record) {
                Ok(notice) => self.handle_notice(&notice).await,
                Err(NoticeError::OtherEvent(name)) => {
                    Ok(Outcome::Ignored { key: None, why: format!("event {name} is not handled") })
                }
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    warn!(error = %e, retryable = e.is_retryable(), "event record failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(outcomes),
        }
    }

    #[instrument(skip_all, fields(key = %notice.key, sequencer = notice.sequencer.as_str()))]
    pub async fn handle_notice(&self, notice: &Notice) -> Result<Outcome, IngestError> {
        for _ in 0..CONFLICT_RETRIES {
            let result = match notice.kind {
                NoticeKind::Created => self.created(notice).await,
                NoticeKind::Removed => self.removed(notice).await,
            };
            match result {
                Err(IngestError::Table(TableError::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Err(IngestError::Contended(notice.key.clone()))
    }

    /// The record at (`pk`, `sk`) with its item version, for a conditional write after it.
    pub(crate) async fn current<T: serde::de::DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<(T, u64)>, IngestError> {
        Ok(match self.table.get(pk, sk).await? {
            Some(item) => Some((item.to_record()?, item.version)),
            None => None,
        })
    }

    /// Writes the record: the commit point of every change to a key.
    async fn commit(&self, record: &ImageRecord, read_version: Option<u64>) -> Result<(), IngestError> {
        let item = Item::from_record(dataset_pk(&record.dataset), image_sk(&record.key), record)?;
        self.table.put_if_unchanged(item, read_version).await?;
        Ok(())
    }

    async fn created(&self, notice: &Notice) -> Result<Outcome, IngestError> {
        // Where the key puts the image: its label (classification), its split, its label file (detection).
        let place = match RawKey::parse(&notice.key) {
            Ok(RawKey::Labels(key)) => return self.labels_created(notice, key).await,
            Ok(RawKey::ClassNames(dataset)) => return self.class_names_created(notice, dataset).await,
            Ok(RawKey::Image(key)) => Ok((Some(key.label), key.split, None)),
            Ok(RawKey::AnnotatedImage(key)) => Ok((None, Some(key.split), Some(key.labels_key()))),
            Err(rejection) => Err(rejection),
        };
        let dataset = catalog_dataset(&notice.key);
        let current = self.current::<ImageRecord>(&dataset_pk(&dataset), &image_sk(&notice.key)).await?;
        if let Some((record, _)) = &current {
            if record.sequencer > notice.sequencer {
                return Ok(ignored(notice, "a newer event for this key was already applied"));
            }
            if record.sequencer == notice.sequencer {
                if record.status == ImageStatus::Rejected {
                    // The record is written before the original is removed: finish that step.
                    self.remove_rejected_original(notice).await?;
                }
                return Ok(ignored(notice, "this event was already applied"));
            }
        }
        let read_version = current.as_ref().map(|(_, version)| *version);
        // The same bytes put again under the same key (an upload run twice) are no new arrival.
        let previous_sha =
            current.as_ref().filter(|(r, _)| r.status == ImageStatus::Accepted).and_then(|(r, _)| r.sha256.clone());
        match &current {
            // New bytes under a known key: the old bytes' index entries go, whatever the new ones are.
            Some((previous, _)) => self.release_indexes(previous).await?,
            None if dataset != NO_DATASET => self.register_dataset(&dataset).await?,
            None => {}
        }
        let mut record = ImageRecord::blank(
            &notice.key,
            &dataset,
            ImageStatus::Accepted,
            notice.sequencer.clone(),
            notice.event_time.to_rfc3339(),
        );

        let (label, key_split, labels_key) = match place {
            Ok(place) => place,
            Err(rejection) => return self.reject(notice, record, read_version, rejection).await,
        };
        record.label = label;
        record.labels_key = labels_key;
        let data = match self.objects.get(&notice.bucket, &notice.key, self.config.limits.max_bytes).await {
            Ok(data) => data,
            Err(ObjectStoreError::NotFound { .. }) => {
                return Ok(ignored(notice, "the object is gone; its removal event records that"));
            }
            Err(ObjectStoreError::TooLarge { size, .. }) => {
                record.bytes = Some(size);
                let rejection = ValidationReport::over_byte_limit(size, &self.config.limits);
                return self.reject(notice, record, read_version, rejection).await;
            }
            Err(e) => return Err(e.into()),
        };
        let report = validate(&data, &self.config.limits);
        fill_facts(&mut record, &report);
        if let Some(rejection) = report.rejection.clone() {
            return self.reject(notice, record, read_version, rejection).await;
        }
        let split = key_split.unwrap_or_else(|| Split::from_sha256(&report.sha256_bytes()));
        record.split = Some(split);

        if let Some(first) = self.claim_first_copy(&dataset, &report.sha256, &notice.key).await? {
            record.status = ImageStatus::Duplicate;
            record.duplicate_of = Some(first.clone());
            let entry =
                Item::new(dataset_pk(&dataset), duplicate_sk(&report.sha256, &notice.key)).with("key", notice.key.clone());
            self.table.put(entry).await?;
            self.commit(&record, read_version).await?;
            info!(duplicate_of = %first, "exact duplicate recorded as an alias");
            return Ok(Outcome::Duplicate { key: notice.key.clone(), dataset, duplicate_of: first });
        }

        let phash = report.stats.expect("a valid report has stats").phash;
        if let Some((similar, distance)) = self.nearest(&dataset, phash, &notice.key).await? {
            record.near_duplicate_of = Some(similar);
            record.near_duplicate_distance = Some(distance);
        }
        self.index_bands(&dataset, &notice.key, phash).await?;
        self.commit(&record, read_version).await?;
        if previous_sha.as_deref() != Some(report.sha256.as_str()) {
            self.table.add(&arrivals_pk(&dataset, &report.sha256), ARRIVALS_SK, ARRIVALS_FIELD, 1).await?;
        }
        info!(split = %split, near_duplicate_of = ?record.near_duplicate_of, "accepted");
        Ok(Outcome::Accepted { key: notice.key.clone(), dataset, split, near_duplicate_of: record.near_duplicate_of })
    }

    /// Claims `sha256` for `key` in the dataset. Returns the first copy's key when another key
    /// holds it; `None` when this key is (or, on a retry, already was) the first.
    async fn claim_first_copy(&self, dataset: &str, sha256: &str, key: &str) -> Result<Option<String>, IngestError> {
        let (pk, sk) = (dataset_pk(dataset), sha_sk(sha256));
        for _ in 0..CONFLICT_RETRIES {
            match self.table.put_if_absent(Item::new(&pk, &sk).with("key", key)).await {
                Ok(_) => return Ok(None),
                Err(TableError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            // Absent again here means the holder was deleted in between: try to claim again.
            if let Some(holder) = self.table.get(&pk, &sk).await? {
                let holder = holder.str_attr("key").unwrap_or_default().to_owned();
                return Ok((holder != key).then_some(holder));
            }
        }
        Err(IngestError::Contended(key.to_owned()))
    }

    /// Puts `key` into the near-duplicate band index under each band of `phash`.
    async fn index_bands(&self, dataset: &str, key: &str, phash: u64) -> Result<(), IngestError> {
        for (band, value) in bands(phash).into_iter().enumerate() {
            let item = Item::new(band_pk(dataset, band, value), key).with("phash", format!("{phash:016x}"));
            self.table.put(item).await?;
        }
        Ok(())
    }

    /// The closest earlier image within the threshold, found through the band index.
    async fn nearest(&self, dataset: &str, phash: u64, key: &str) -> Result<Option<(String, u32)>, IngestError> {
        let mut best: Option<(String, u32)> = None;
        for (band, value) in bands(phash).into_iter().enumerate() {
            let pk = band_pk(dataset, band, value);
            let mut pages = self.table.query_pages(&pk, "");
            while let Some(page) = pages.try_next().await? {
                for item in &page {
                    let Some(other) = item.str_attr("phash").and_then(|h| u64::from_str_radix(h, 16).ok()) else { continue };
                    let distance = hamming(phash, other);
                    let closer = best.as_ref().is_none_or(|(best_key, d)| (distance, item.sk.as_str()) < (*d, best_key.as_str()));
                    if item.sk != key && distance <= self.config.near_duplicate_threshold && closer {
                        best = Some((item.sk.clone(), distance));
                    }
                }
            }
        }
        Ok(best)
    }

    /// Copies the object and a reason sidecar to quarantine, records the rejection, then removes
    /// the original from the raw bucket, in that order, so no failure can lose the bytes.
    async fn reject(
        &self,
        notice: &Notice,
        mut record: ImageRecord,
        read_version: Option<u64>,
        rejection: Rejection,
    ) -> Result<Outcome, IngestError> {
        let quarantined = quarantine_key(&notice.key, &notice.sequencer);
        let sidecar = QuarantineSidecar {
            reason: rejection.reason,
            message: rejection.message.clone(),
            original_bucket: notice.bucket.clone(),
            original_key: notice.key.clone(),
            sequencer: notice.sequencer.clone(),
            quarantined_at: self.clock.now().to_rfc3339(),
        };
        if !self.copy_to_quarantine(&notice.bucket, &notice.key, &quarantined, &sidecar).await? {
            return Ok(ignored(notice, "the object is gone; its removal event records that"));
        }

        record.status = ImageStatus::Rejected;
        record.reason = Some(rejection.reason);
        record.message = Some(rejection.message.clone());
        record.quarantine_key = Some(quarantined.clone());
        self.commit(&record, read_version).await?;
        self.remove_rejected_original(notice).await?;
        info!(reason = %rejection.reason, quarantine_key = %quarantined, "rejected and quarantined");
        Ok(Outcome::Rejected {
            key: notice.key.clone(),
            dataset: record.dataset,
            reason: rejection.reason,
            message: rejection.message,
            quarantine_key: quarantined,
        })
    }

    /// Copies the object to `quarantined` in the store bucket and writes `sidecar` beside it, in
    /// that order; false when the object is already gone.
    pub(crate) async fn copy_to_quarantine(
        &self,
        bucket: &str,
        key: &str,
        quarantined: &str,
        sidecar: &impl Serialize,
    ) -> Result<bool, IngestError> {
        match self.objects.copy(bucket, key, &self.config.store_bucket, quarantined).await {
            Ok(()) => {}
            Err(ObjectStoreError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let sidecar = serde_json::to_vec_pretty(sidecar).expect("the sidecar serialises");
        self.objects.put(&self.config.store_bucket, &quarantine_sidecar_key(quarantined), Bytes::from(sidecar)).await?;
        Ok(true)
    }

    /// Deletes the raw original of a rejected upload, unless the key now holds newer bytes (a
    /// re-upload whose own event will follow); S3 has no conditional delete, so the etag is
    /// compared just before.
    pub(crate) async fn remove_rejected_original(&self, notice: &Notice) -> Result<(), IngestError> {
        match self.objects.head(&notice.bucket, &notice.key).await {
            Ok(meta) => {
                let same = notice.etag.as_deref().is_none_or(|etag| etag == meta.etag.trim_matches('"'));
                if same {
                    self.objects.delete(&notice.bucket, &notice.key).await?;
                }
                Ok(())
            }
            Err(ObjectStoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn removed(&self, notice: &Notice) -> Result<Outcome, IngestError> {
        match RawKey::parse(&notice.key) {
            Ok(RawKey::Labels(key)) => return self.labels_removed(notice, key).await,
            Ok(RawKey::ClassNames(_)) => {
                return Ok(ignored(
                    notice,
                    "the class names are kept for the labels that use them; upload a new data.yaml to change them",
                ))
            }
            _ => {}
        }
        let dataset = catalog_dataset(&notice.key);
        let current = self.current::<ImageRecord>(&dataset_pk(&dataset), &image_sk(&notice.key)).await?;
        let (mut record, read_version) = match current {
            Some((record, _)) if record.sequencer >= notice.sequencer => {
                return Ok(ignored(notice, "a newer event for this key was already applied"));
            }
            Some((record, version)) => (record, Some(version)),
            // A tombstone, so that a late create event for the removed object cannot resurrect it.
            None => (
                ImageRecord::blank(
                    &notice.key,
                    &dataset,
                    ImageStatus::Deleted,
                    notice.sequencer.clone(),
                    notice.event_time.to_rfc3339(),
                ),
                None,
            ),
        };
        record.sequencer = notice.sequencer.clone();
        if record.status == ImageStatus::Rejected {
            // Ingest removed the original itself after quarantining it: the rejection stands.
            self.commit(&record, read_version).await?;
            return Ok(ignored(notice, "the original of a rejected upload was removed; it stays in quarantine"));
        }
        self.release_indexes(&record).await?;
        record.status = ImageStatus::Deleted;
        self.commit(&record, read_version).await?;
        info!("recorded as deleted");
        Ok(Outcome::Deleted { key: notice.key.clone() })
    }

    /// Removes what an accepted image put in the indexes: its claim on its bytes' hash (if it
    /// holds it) and its near-duplicate bands.
    async fn release_indexes(&self, record: &ImageRecord) -> Result<(), IngestError> {
        let pk = dataset_pk(&record.dataset);
        if record.status == ImageStatus::Duplicate {
            if let Some(sha) = &record.sha256 {
                self.table.delete(&pk, &duplicate_sk(sha, &record.key)).await?;
            }
            return Ok(());
        }
        if record.status != ImageStatus::Accepted {
            return Ok(());
        }
        if let Some(sha) = &record.sha256 {
            let sk = sha_sk(sha);
            let held = self.table.get(&pk, &sk).await?.is_some_and(|holder| holder.str_attr("key") == Some(record.key.as_str()));
            if held {
                self.table.delete(&pk, &sk).await?;
            }
            // Also when not held: a retry after the delete above must still promote a duplicate.
            if held || self.table.get(&pk, &sk).await?.is_none() {
                self.promote_a_duplicate(&record.dataset, sha, &record.key).await?;
            }
        }
        if let Some(phash) = record.phash.as_deref().and_then(|h| u64::from_str_radix(h, 16).ok()) {
            for (band, value) in bands(phash).into_iter().enumerate() {
                self.table.delete(&band_pk(&record.dataset, band, value), &record.key).await?;
            }
        }
        Ok(())
    }

    /// The first copy of `sha256` (`gone`) left: the earliest remaining duplicate becomes the
    /// sample, claiming the hash and the near-duplicate bands the first copy held. Safe to
    /// repeat: a redelivered removal finds the claim already taken by the same duplicate and
    /// finishes its record.
    async fn promote_a_duplicate(&self, dataset: &str, sha256: &str, gone: &str) -> Result<(), IngestError> {
        let pk = dataset_pk(dataset);
        for entry in self.table.query_all(&pk, &duplicates_prefix(sha256)).await? {
            let Some(key) = entry.str_attr("key").map(str::to_owned) else { continue };
            let Some((mut record, version)) = self.current::<ImageRecord>(&pk, &image_sk(&key)).await? else { continue };
            if record.status != ImageStatus::Duplicate || record.sha256.as_deref() != Some(sha256) {
                self.table.delete(&pk, &entry.sk).await?;
                continue;
            }
            match self.claim_first_copy(dataset, sha256, &key).await? {
                None => {}
                // Someone else holds the bytes again (a new upload of them won the race).
                Some(holder) if holder != gone => return Ok(()),
                Some(_) => return Err(IngestError::Contended(key)),
            }
            if let Some(phash) = record.phash.as_deref().and_then(|h| u64::from_str_radix(h, 16).ok()) {
                self.index_bands(dataset, &key, phash).await?;
            }
            record.status = ImageStatus::Accepted;
            record.duplicate_of = None;
            self.commit(&record, Some(version)).await?;
            self.table.delete(&pk, &entry.sk).await?;
            info!(%key, %gone, "a duplicate became the sample in place of the removed first copy");
            return Ok(());
        }
        Ok(())
    }

    pub(crate) async fn register_dataset(&self, dataset: &str) -> Result<(), IngestError> {
        let item = Item::new(DATASETS_PK, dataset).with("created_at", self.clock.now().to_rfc3339());
        match self.table.put_if_absent(item).await {
            Ok(_) | Err(TableError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The dataset a key's record is filed under: the one it names, or [`NO_DATASET`].
pub(crate) fn catalog_dataset(key: &str) -> String {
    ImageKey::dataset_of(key).map(|d| d.to_string()).unwrap_or_else(|| NO_DATASET.to_owned())
}

pub(crate) fn ignored(notice: &Notice, why: &str) -> Outcome {
    Outcome::Ignored { key: Some(notice.key.clone()), why: why.to_owned() }
}

fn fill_facts(record: &mut ImageRecord, report: &ValidationReport) {
    record.format = report.format;
    record.width = report.width;
    record.height = report.height;
    record.color_type = report.color_type.clone();
    record.bit_depth = report.bit_depth;
    record.bytes = Some(report.bytes);
    record.sha256 = Some(report.sha256.clone());
    if let Some(stats) = report.stats {
        record.phash = Some(format!("{:016x}", stats.phash));
        record.brightness = Some(stats.brightness);
        record.contrast = Some(stats.contrast);
        record.sharpness = Some(stats.sharpness);
    }
}
