//! Ingest of a detection dataset's label files and class names.
//!
//! A label file is judged line by line ([`parse_yolo_labels`]); its good boxes are recorded, its
//! bad lines are quarantined with their codes (a copy of the file and a sidecar listing them),
//! and the file stays in the raw bucket for the boxes it holds. A file refused whole is
//! quarantined and removed, as a bad image is.
//!
//! Class indices need the dataset's `data.yaml`, which may arrive before or after the labels,
//! and may change. Both sides write, then read: a label file checks its classes against the names
//! it finds, and after writing its record looks for them once more; `data.yaml` writes the names,
//! then checks every label file not checked against them. Whatever the interleaving, one of them
//! sees the other. A record keeps the `data.yaml` event it was checked against, and only newer
//! names check it again: a box refused as `unknown_class` comes back when new names reach it.

use cvops_core::annotation::RefusedAnnotation;
use cvops_core::annotation::{
    parse_yolo_labels, AnnotationCode, ClassNamesRecord, LabelQuarantineSidecar, LabelRecord, LabelStatus, ParsedLabels,
    MAX_LABEL_FILE_BYTES,
};
use cvops_core::catalog::{class_names, dataset_pk, label_sk, quarantine_key, CLASS_NAMES_SK, LABEL_SK_PREFIX};
use cvops_core::key::{AnnotatedKey, DatasetName};
use cvops_core::ports::{Item, ObjectStoreError, TableError, TableExt};
use cvops_core::sequencer::Sequencer;
use futures::TryStreamExt;
use tracing::info;

use crate::data_yaml::{parse_data_yaml, MAX_DATA_YAML_BYTES};
use crate::handler::{ignored, Ingest, IngestError, Outcome};
use crate::notice::Notice;

/// A dataset's class names and the `data.yaml` event they came with: their version.
struct Names {
    names: Vec<String>,
    version: Sequencer,
}

/// How often a label record's class check is retried after losing a race for it.
const CHECK_ATTEMPTS: usize = 5;

impl Ingest {
    pub(crate) async fn labels_created(&self, notice: &Notice, key: AnnotatedKey) -> Result<Outcome, IngestError> {
        let dataset = key.dataset.to_string();
        let (pk, sk) = (dataset_pk(&dataset), label_sk(&notice.key));
        let current = self.current::<LabelRecord>(&pk, &sk).await?;
        if let Some((record, _)) = &current {
            if record.sequencer > notice.sequencer {
                return Ok(ignored(notice, "a newer event for this key was already applied"));
            }
            if record.sequencer == notice.sequencer {
                // Applied before: finish what may have failed after the record was written.
                match record.status {
                    LabelStatus::Rejected => self.remove_rejected_original(notice).await?,
                    LabelStatus::Accepted => {
                        if let Some(names) = self.known_names(&dataset).await? {
                            self.check_classes_of(&notice.bucket, &pk, &sk, &names).await?;
                        }
                    }
                    _ => {}
                }
                return Ok(ignored(notice, "this event was already applied"));
            }
        }
        let read_version = current.as_ref().map(|(_, version)| *version);
        if current.is_none() {
            self.register_dataset(&dataset).await?;
        }
        let uploaded_at = notice.event_time.to_rfc3339();
        let mut record = LabelRecord::blank(&key, &notice.key, LabelStatus::Accepted, notice.sequencer.clone(), uploaded_at);
        let data = match self.objects.get(&notice.bucket, &notice.key, MAX_LABEL_FILE_BYTES).await {
            Ok(data) => data,
            Err(ObjectStoreError::NotFound { .. }) => {
                return Ok(ignored(notice, "the object is gone; its removal event records that"));
            }
            Err(ObjectStoreError::TooLarge { size, .. }) => {
                let message = format!("the label file is {size} bytes, over the {MAX_LABEL_FILE_BYTES}-byte limit");
                return self.reject_labels(notice, read_version, record, message).await;
            }
            Err(e) => return Err(e.into()),
        };
        let mut parsed = match parse_yolo_labels(&data) {
            Ok(parsed) => parsed,
            Err(message) => return self.reject_labels(notice, read_version, record, message).await,
        };
        if let Some(names) = self.known_names(&dataset).await? {
            parsed.check_classes(&names.names);
            (record.classes_checked, record.checked_against) = (true, Some(names.version));
        }
        (record.boxes, record.lines, record.refused) = (parsed.boxes, parsed.lines, parsed.refused);
        if !record.refused.is_empty() {
            let sidecar = self.label_sidecar(&notice.bucket, &notice.key, &notice.sequencer, None, None, record.refused.clone());
            record.quarantine_key = self.quarantine(&notice.bucket, &notice.key, &notice.sequencer, None, sidecar).await?;
        }
        let item = Item::from_record(&pk, &sk, &record)?;
        self.table.put_if_unchanged(item, read_version).await?;
        // Names may have come in, or changed, while this ran (see the module's doc).
        if let Some(names) = self.known_names(&dataset).await? {
            if record.checked_against.as_ref() != Some(&names.version) {
                if let Some(checked) = self.check_classes_of(&notice.bucket, &pk, &sk, &names).await? {
                    record = checked;
                }
            }
        }
        info!(
            boxes = record.boxes.len(),
            refused = record.refused.len(),
            classes_checked = record.classes_checked,
            "labels read"
        );
        Ok(labeled(&record))
    }

    pub(crate) async fn labels_removed(&self, notice: &Notice, key: AnnotatedKey) -> Result<Outcome, IngestError> {
        let dataset = key.dataset.to_string();
        let (pk, sk) = (dataset_pk(&dataset), label_sk(&notice.key));
        let (mut record, read_version) = match self.current::<LabelRecord>(&pk, &sk).await? {
            Some((record, _)) if record.sequencer >= notice.sequencer => {
                return Ok(ignored(notice, "a newer event for this key was already applied"));
            }
            Some((record, version)) => (record, Some(version)),
            // A tombstone, so that a late create event cannot bring the file back.
            None => (
                LabelRecord::blank(
                    &key,
                    &notice.key,
                    LabelStatus::Deleted,
                    notice.sequencer.clone(),
                    notice.event_time.to_rfc3339(),
                ),
                None,
            ),
        };
        record.sequencer = notice.sequencer.clone();
        let rejected = record.status == LabelStatus::Rejected;
        if !rejected {
            record.status = LabelStatus::Deleted;
        }
        self.table.put_if_unchanged(Item::from_record(&pk, &sk, &record)?, read_version).await?;
        if rejected {
            return Ok(ignored(notice, "the original of a refused label file was removed; it stays in quarantine"));
        }
        Ok(Outcome::Deleted { key: notice.key.clone() })
    }

    pub(crate) async fn class_names_created(&self, notice: &Notice, dataset: DatasetName) -> Result<Outcome, IngestError> {
        let dataset = dataset.to_string();
        let pk = dataset_pk(&dataset);
        let current = self.current::<ClassNamesRecord>(&pk, CLASS_NAMES_SK).await?;
        if let Some((record, _)) = &current {
            if record.sequencer > notice.sequencer {
                return Ok(ignored(notice, "a newer event for this key was already applied"));
            }
            if record.sequencer == notice.sequencer {
                // Applied before: finish what may have failed after the names were written.
                if record.reason.is_some() {
                    self.remove_rejected_original(notice).await?;
                    return Ok(ignored(notice, "this event was already applied"));
                }
                let names = Names { names: record.names.clone(), version: record.sequencer.clone() };
                let checked = self.check_waiting_labels(&notice.bucket, &pk, &names).await?;
                if checked == 0 {
                    return Ok(ignored(notice, "this event was already applied"));
                }
                let (key, classes) = (notice.key.clone(), record.names.len());
                return Ok(Outcome::ClassNames { key, dataset, classes, checked });
            }
        }
        let read_version = current.as_ref().map(|(_, version)| *version);
        if current.is_none() {
            self.register_dataset(&dataset).await?;
        }
        let parsed = match self.objects.get(&notice.bucket, &notice.key, MAX_DATA_YAML_BYTES).await {
            Ok(data) => parse_data_yaml(&data),
            Err(ObjectStoreError::NotFound { .. }) => {
                return Ok(ignored(notice, "the object is gone; its removal event records that"));
            }
            Err(ObjectStoreError::TooLarge { size, .. }) => {
                Err(format!("data.yaml is {size} bytes, over the {MAX_DATA_YAML_BYTES}-byte limit"))
            }
            Err(e) => return Err(e.into()),
        };
        let (previous_names, previous_from) =
            current.map(|(record, _)| (record.names, record.names_sequencer)).unwrap_or_default();
        let mut record = ClassNamesRecord {
            key: notice.key.clone(),
            dataset: dataset.clone(),
            sequencer: notice.sequencer.clone(),
            names: previous_names,
            names_sequencer: previous_from,
            reason: None,
            message: None,
        };
        let names = match parsed {
            Ok(data_yaml) => data_yaml.names,
            Err(message) => {
                // The names stay what they were; the bad file goes to quarantine.
                let sidecar = self.label_sidecar(
                    &notice.bucket,
                    &notice.key,
                    &notice.sequencer,
                    Some(AnnotationCode::MalformedLabelFile),
                    Some(message.clone()),
                    Vec::new(),
                );
                let Some(quarantined) = self.quarantine(&notice.bucket, &notice.key, &notice.sequencer, None, sidecar).await?
                else {
                    return Ok(ignored(notice, "the object is gone; its removal event records that"));
                };
                (record.reason, record.message) = (Some(AnnotationCode::MalformedLabelFile), Some(message.clone()));
                self.table.put_if_unchanged(Item::from_record(&pk, CLASS_NAMES_SK, &record)?, read_version).await?;
                self.remove_rejected_original(notice).await?;
                return Ok(Outcome::LabelsRejected {
                    key: notice.key.clone(),
                    dataset,
                    reason: AnnotationCode::MalformedLabelFile,
                    message,
                    quarantine_key: quarantined,
                });
            }
        };
        (record.names, record.names_sequencer) = (names, Some(notice.sequencer.clone()));
        self.table.put_if_unchanged(Item::from_record(&pk, CLASS_NAMES_SK, &record)?, read_version).await?;
        let names = Names { names: record.names.clone(), version: record.sequencer.clone() };
        let checked = self.check_waiting_labels(&notice.bucket, &pk, &names).await?;
        info!(classes = record.names.len(), checked, "class names recorded");
        Ok(Outcome::ClassNames { key: notice.key.clone(), dataset, classes: record.names.len(), checked })
    }

    /// Checks the classes of every label file of the dataset (`pk`) not yet checked against
    /// these names; how many were.
    async fn check_waiting_labels(&self, bucket: &str, pk: &str, names: &Names) -> Result<usize, IngestError> {
        let mut checked = 0;
        let mut pages = self.table.query_pages(pk, LABEL_SK_PREFIX);
        while let Some(page) = pages.try_next().await? {
            for item in &page {
                let waiting: LabelRecord = item.to_record()?;
                if waiting.status == LabelStatus::Accepted && waiting.checked_against.as_ref() != Some(&names.version) {
                    checked += usize::from(self.check_classes_of(bucket, pk, &item.sk, names).await?.is_some());
                }
            }
        }
        Ok(checked)
    }

    /// Checks the class indices of a label record that has not been checked yet, quarantining
    /// the unknown ones. `None` when there was nothing to check (already checked, or refused).
    async fn check_classes_of(
        &self,
        bucket: &str,
        pk: &str,
        sk: &str,
        names: &Names,
    ) -> Result<Option<LabelRecord>, IngestError> {
        for _ in 0..CHECK_ATTEMPTS {
            let Some((mut record, version)) = self.current::<LabelRecord>(pk, sk).await? else { return Ok(None) };
            // Only names newer than those it was checked against (or its first) change anything.
            let newer = record.checked_against.as_ref().is_none_or(|checked| *checked < names.version);
            if record.status != LabelStatus::Accepted || !newer {
                return Ok(None);
            }
            let mut parsed = ParsedLabels { boxes: record.boxes, lines: record.lines, refused: record.refused };
            let before: Vec<RefusedAnnotation> = parsed.refused.clone();
            parsed.restore_unknown_classes();
            parsed.check_classes(&names.names);
            let changed = parsed.refused != before;
            (record.boxes, record.lines, record.refused) = (parsed.boxes, parsed.lines, parsed.refused);
            (record.classes_checked, record.checked_against) = (true, Some(names.version.clone()));
            if changed && !record.refused.is_empty() {
                // A copy of its own per names, so no earlier quarantine copy is overwritten.
                let sidecar = self.label_sidecar(bucket, &record.key, &record.sequencer, None, None, record.refused.clone());
                let suffix = format!("classes-{}", names.version.as_str());
                if let Some(quarantined) = self.quarantine(bucket, &record.key, &record.sequencer, Some(&suffix), sidecar).await?
                {
                    record.quarantine_key = Some(quarantined);
                }
            }
            match self.table.put_if_version(Item::from_record(pk, sk, &record)?, version).await {
                Ok(_) => return Ok(Some(record)),
                Err(TableError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IngestError::Contended(sk.to_owned()))
    }

    /// Refuses a label file whole: quarantined with its reason, recorded, then removed from the
    /// raw bucket, in that order, so no failure can lose it.
    async fn reject_labels(
        &self,
        notice: &Notice,
        read_version: Option<u64>,
        mut record: LabelRecord,
        message: String,
    ) -> Result<Outcome, IngestError> {
        let reason = AnnotationCode::MalformedLabelFile;
        let sidecar =
            self.label_sidecar(&notice.bucket, &notice.key, &notice.sequencer, Some(reason), Some(message.clone()), Vec::new());
        let Some(quarantined) = self.quarantine(&notice.bucket, &notice.key, &notice.sequencer, None, sidecar).await? else {
            return Ok(ignored(notice, "the object is gone; its removal event records that"));
        };
        record.status = LabelStatus::Rejected;
        (record.reason, record.message, record.quarantine_key) = (Some(reason), Some(message.clone()), Some(quarantined.clone()));
        let item = Item::from_record(dataset_pk(&record.dataset), label_sk(&record.key), &record)?;
        self.table.put_if_unchanged(item, read_version).await?;
        self.remove_rejected_original(notice).await?;
        info!(%reason, quarantine_key = %quarantined, "label file refused and quarantined");
        Ok(Outcome::LabelsRejected {
            key: notice.key.clone(),
            dataset: record.dataset,
            reason,
            message,
            quarantine_key: quarantined,
        })
    }

    fn label_sidecar(
        &self,
        bucket: &str,
        key: &str,
        sequencer: &Sequencer,
        reason: Option<AnnotationCode>,
        message: Option<String>,
        refused: Vec<RefusedAnnotation>,
    ) -> LabelQuarantineSidecar {
        LabelQuarantineSidecar {
            reason,
            message,
            refused,
            original_bucket: bucket.to_owned(),
            original_key: key.to_owned(),
            sequencer: sequencer.clone(),
            quarantined_at: self.clock.now().to_rfc3339(),
        }
    }

    /// Copies the object to quarantine (a key per event, so nothing earlier is overwritten) and
    /// writes the sidecar beside it. `None` when the object is already gone.
    async fn quarantine(
        &self,
        bucket: &str,
        key: &str,
        sequencer: &Sequencer,
        suffix: Option<&str>,
        sidecar: LabelQuarantineSidecar,
    ) -> Result<Option<String>, IngestError> {
        let quarantined = match suffix {
            // A sibling of the first copy (a key cannot also be a folder in the local store).
            Some(suffix) => format!("{}.{suffix}", quarantine_key(key, sequencer)),
            None => quarantine_key(key, sequencer),
        };
        Ok(self.copy_to_quarantine(bucket, key, &quarantined, &sidecar).await?.then_some(quarantined))
    }

    /// The dataset's class names, once a good `data.yaml` is in, with the sequencer of the
    /// event that brought them.
    async fn known_names(&self, dataset: &str) -> Result<Option<Names>, IngestError> {
        let record = class_names(self.table.as_ref(), dataset).await?;
        Ok(record.filter(|r| !r.names.is_empty()).map(|r| {
            let version = r.names_sequencer.unwrap_or(r.sequencer);
            Names { names: r.names, version }
        }))
    }
}

fn labeled(record: &LabelRecord) -> Outcome {
    let mut refused = std::collections::BTreeMap::new();
    for r in &record.refused {
        *refused.entry(r.reason).or_default() += 1;
    }
    Outcome::Labeled {
        key: record.key.clone(),
        dataset: record.dataset.clone(),
        boxes: record.boxes.len(),
        refused,
        classes_checked: record.classes_checked,
    }
}
