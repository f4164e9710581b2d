//! What ingest records of a label file and of a dataset's class names.

use serde::{Deserialize, Serialize};

use super::{AnnotationCode, BoundingBox, RefusedAnnotation};
use crate::key::{AnnotatedKey, Split};
use crate::sequencer::Sequencer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelStatus {
    /// Read: its good boxes count (refused lines, if any, are in quarantine).
    Accepted,
    /// Refused whole (`reason`); the file is in quarantine.
    Rejected,
    /// Removed from the raw bucket.
    Deleted,
}

/// The catalog's view of one label file (`datasets/<d>/labels/<split>/<stem>.txt`).
///
/// Joined with the images of the same split folder and stem when read: the file and its image
/// may arrive in either order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    pub key: String,
    pub dataset: String,
    pub status: LabelStatus,
    pub sequencer: Sequencer,
    /// RFC 3339, from the event.
    pub uploaded_at: String,
    pub split: Split,
    /// The split folder as uploaded (`valid` stays `valid`): images join on it and the stem.
    pub folder: String,
    pub stem: String,
    pub boxes: Vec<BoundingBox>,
    /// The line of each box, for a refusal found later (an unknown class once names arrive).
    #[serde(default)]
    pub lines: Vec<u32>,
    /// The lines refused, each with its code; their file is in quarantine (`quarantine_key`).
    #[serde(default)]
    pub refused: Vec<RefusedAnnotation>,
    /// Whether the class indices were checked against the dataset's names: false while the
    /// dataset has no `data.yaml`; ingest checks them when it arrives.
    pub classes_checked: bool,
    /// The sequencer of the `data.yaml` event whose names the classes were checked against: a
    /// new `data.yaml` checks every file again (an index it does not reach is refused, one it
    /// now reaches is taken back).
    #[serde(default)]
    pub checked_against: Option<Sequencer>,
    /// For a file refused whole.
    pub reason: Option<AnnotationCode>,
    pub message: Option<String>,
    /// Where the file and its `.reason.json` sidecar are in the store bucket, when any of it
    /// was refused.
    pub quarantine_key: Option<String>,
}

impl LabelRecord {
    /// A record of `status` with no boxes, for the label file at `key`; the caller fills it.
    pub fn blank(key: &AnnotatedKey, raw_key: &str, status: LabelStatus, sequencer: Sequencer, uploaded_at: String) -> Self {
        Self {
            key: raw_key.to_owned(),
            dataset: key.dataset.to_string(),
            status,
            sequencer,
            uploaded_at,
            split: key.split,
            folder: key.folder.clone(),
            stem: key.stem().to_owned(),
            boxes: Vec::new(),
            lines: Vec::new(),
            refused: Vec::new(),
            classes_checked: false,
            checked_against: None,
            reason: None,
            message: None,
            quarantine_key: None,
        }
    }
}

/// The dataset's class names, from its `data.yaml`: index `i` of a label line names `names[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassNamesRecord {
    pub key: String,
    pub dataset: String,
    pub sequencer: Sequencer,
    pub names: Vec<String>,
    /// The event that brought `names` (a `data.yaml` refused later keeps them and this): the
    /// version label files are checked against.
    #[serde(default)]
    pub names_sequencer: Option<Sequencer>,
    /// For a `data.yaml` refused whole: the names stay what they were.
    pub reason: Option<AnnotationCode>,
    pub message: Option<String>,
}

/// The sidecar written next to a quarantined label file: every refused line with its code, or
/// the reason the whole file was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelQuarantineSidecar {
    /// For a file refused whole.
    pub reason: Option<AnnotationCode>,
    pub message: Option<String>,
    pub refused: Vec<RefusedAnnotation>,
    pub original_bucket: String,
    pub original_key: String,
    pub sequencer: Sequencer,
    /// RFC 3339.
    pub quarantined_at: String,
}
