//! The model card: everything needed to use, verify and trace a trained model. The trainer writes
//! it last, after `model.onnx`, so its arrival (an ObjectCreated event on `.../card.json`) means
//! the model is complete. register-model and the endpoint read it; since a card may be hostile,
//! [`ModelCard::parse`] bounds and checks it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::detection::DetectionEvaluation;
use crate::metrics::Evaluation;
use crate::preprocess::InputSpec;
use crate::task::{DetectionSettings, OutputLayout, Task};

pub const CARD_SCHEMA: &str = "cvops.model-card/1";
/// Cards are small; anything bigger is refused unread.
pub const MAX_CARD_BYTES: u64 = 1 << 20;
pub const CARD_FILE: &str = "card.json";
pub const MODEL_FILE: &str = "model.onnx";

/// Where a run's outputs go in the models bucket: `models/<model>/runs/<run>/<point>/`.
pub fn run_prefix(model: &str, run_id: &str, point: u32) -> String {
    format!("models/{model}/runs/{run_id}/{point}/")
}

/// Where one attempt at a run's point writes its model: a key no other attempt uses, so that a
/// second job for the same run (a redelivery, a retry after a timeout) can never change the
/// bytes a registered version names. The card stays at `<prefix>card.json`; a later attempt's
/// card is a redelivery to register-model, which registered the first one already.
pub fn artifact_key(prefix: &str, attempt: &str) -> String {
    format!("{prefix}{attempt}/{MODEL_FILE}")
}

/// Where an imported model goes in the models bucket: `models/<model>/imports/<import id>/`.
pub fn import_prefix(model: &str, import_id: &str) -> String {
    format!("models/{model}/imports/{import_id}/")
}

/// `(model, run, point)` of a card's key, or `None` for any other key. An import's card is
/// `(model, import id, 0)`: the import stands where a run stands.
pub fn parse_card_key(key: &str) -> Option<(String, String, u32)> {
    let rest = key.strip_prefix("models/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [model, "runs", run, point, file] if *file == CARD_FILE && !model.is_empty() && !run.is_empty() => {
            Some(((*model).to_owned(), (*run).to_owned(), point.parse().ok()?))
        }
        [model, "imports", id, file] if *file == CARD_FILE && !model.is_empty() && id.starts_with(IMPORT_ID_PREFIX) => {
            Some(((*model).to_owned(), (*id).to_owned(), 0))
        }
        _ => None,
    }
}

/// What every import id starts with, so it never reads as a run id.
pub const IMPORT_ID_PREFIX: &str = "import-";

/// Where a model came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardSource {
    /// A training run dispatch-training recorded.
    #[default]
    Run,
    /// `cvops models import`: trained elsewhere; `run_id` is the import's id.
    Import,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Key in the models bucket.
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    /// The S3 VersionId the put returned (the models bucket keeps versions): register-model
    /// and the endpoint read exactly that version. `None` locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// One epoch of training. A classifier's epoch has the accuracies, a detector's its box loss and
/// val mAP@0.5; the fields of the other task are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u32,
    /// The mean training loss (a detector's: class plus weighted box loss).
    pub loss: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// A detector's mean GIoU loss (the box part of `loss`, before its weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_map50: Option<f64>,
    pub seconds: f64,
}

/// The trainer's own figures: a classifier's `test` and `val_accuracy`, or a detector's
/// `test_detection` and `val_map50`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    /// The trainer's own evaluation on the snapshot's test split (register-model repeats it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Evaluation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_detection: Option<DetectionEvaluation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_map50: Option<f64>,
    pub best_epoch: u32,
    pub epochs_run: u32,
    pub history: Vec<EpochRecord>,
}

impl TrainingMetrics {
    /// The headline figure on the test split, for logs: `test accuracy 0.9780` or
    /// `test mAP@0.5 0.9012`.
    pub fn summary(&self) -> String {
        match (&self.test, &self.test_detection) {
            (Some(e), _) => format!("test accuracy {:.4}", e.accuracy),
            (None, Some(e)) => format!("test mAP@0.5 {:.4} (mAP@0.5:0.95 {:.4})", e.map50, e.map),
            (None, None) => "no test figures".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainerInfo {
    /// The trainer crate's version, and the commit when the build knew it.
    pub version: String,
    /// `cpu` or `cuda`.
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub schema: String,
    /// A run's card, or an import's (absent in cards written before imports existed: a run's).
    #[serde(default)]
    pub source: CardSource,
    pub model: String,
    /// What the model does (absent in cards written before tasks existed: a classifier).
    #[serde(default)]
    pub task: Task,
    pub run_id: String,
    /// The sweep point (array index); 0 for a single run.
    pub point: u32,
    pub dataset: String,
    pub snapshot: String,
    /// Class names in output order.
    pub labels: Vec<String>,
    pub input: InputSpec,
    /// The ONNX graph's output name (empty for an import: its outputs are read by layout).
    pub output: String,
    /// How the output is read; it must give the card's task.
    #[serde(default)]
    pub output_layout: OutputLayout,
    /// A detector's serving defaults (score and IoU thresholds, most boxes per image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<DetectionSettings>,
    pub architecture: String,
    pub artifact: Artifact,
    pub hyperparameters: BTreeMap<String, f64>,
    /// The trainer's own figures; none for an imported model (register-model evaluates it).
    #[serde(default)]
    pub metrics: Option<TrainingMetrics>,
    pub duration_seconds: f64,
    pub images_per_second: f64,
    pub trainer: TrainerInfo,
    pub created_at: String,
}

impl ModelCard {
    /// Parses and checks a card's bytes; the error says what is wrong.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.len() as u64 > MAX_CARD_BYTES {
            return Err(format!("the card is {} bytes, over the {MAX_CARD_BYTES} byte limit", data.len()));
        }
        let card: ModelCard = serde_json::from_slice(data).map_err(|e| format!("the card is not a valid model card: {e}"))?;
        if card.schema != CARD_SCHEMA {
            return Err(format!("the card's schema is {:?}; this version reads {CARD_SCHEMA:?}", card.schema));
        }
        if card.labels.is_empty() {
            return Err("the card lists no labels".into());
        }
        card.input.check()?;
        if let Some(settings) = &card.detection {
            settings.check().map_err(|e| format!("detection: {e}"))?;
        }
        if card.artifact.sha256.len() != 64 || !card.artifact.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("artifact.sha256 is not 64 hex digits".into());
        }
        Ok(card)
    }

    /// Whether the output signature gives the task: `None` when it does, else why not. A
    /// detector whose card names no box layout (or a classifier's that names one) cannot be
    /// evaluated or served: register-model refuses it as `missing_signature`.
    pub fn signature_mismatch(&self) -> Option<String> {
        (self.output_layout.task() != self.task).then(|| {
            format!(
                "the card's task is {} but its output layout is {}; a detector needs output_layout yolo or boxes_scores_labels, a classifier logits",
                self.task,
                self.output_layout.as_str()
            )
        })
    }

    /// The detector's serving settings (the defaults when the card gives none).
    pub fn detection_settings(&self) -> DetectionSettings {
        self.detection.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_keys_name_model_run_and_point() {
        let key = format!("{}{CARD_FILE}", run_prefix("digits", "r1", 2));
        assert_eq!(parse_card_key(&key), Some(("digits".into(), "r1".into(), 2)));
        assert_eq!(parse_card_key("models/digits/runs/r1/2/model.onnx"), None);
        assert_eq!(parse_card_key("models/digits/runs/r1/x/card.json"), None);
        assert_eq!(parse_card_key("other/card.json"), None);
        let import = format!("{}{CARD_FILE}", import_prefix("pets", "import-0123"));
        assert_eq!(parse_card_key(&import), Some(("pets".into(), "import-0123".into(), 0)));
        assert_eq!(parse_card_key("models/pets/imports/0123/card.json"), None);
    }

    #[test]
    fn hostile_cards_are_refused_with_a_reason() {
        assert!(ModelCard::parse(b"{").unwrap_err().contains("not a valid model card"));
        assert!(ModelCard::parse(&vec![b' '; 2 << 20]).unwrap_err().contains("limit"));
    }
}
