//! What a model does, and how its output is read: the part of a model card (and of a registered
//! version) that evaluation, serving and monitoring dispatch on.

use serde::{Deserialize, Serialize};

/// A model's task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// One label per image (cards written before tasks existed are classifiers).
    #[default]
    Classification,
    /// Boxes with labels and scores.
    Detection,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Detection => "detection",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "classification" => Some(Task::Classification),
            "detection" => Some(Task::Detection),
            _ => None,
        }
    }

    /// The figure the gate judges this task's models by.
    pub fn metric(self) -> Metric {
        match self {
            Task::Classification => Metric::Accuracy,
            Task::Detection => Metric::Map50,
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the graph's output is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLayout {
    /// One output `[1, classes]` of logits (softmax gives the probabilities).
    #[default]
    Logits,
    /// Ultralytics' YOLOv8/YOLO11 export: `[1, 4 + classes, N]` (or its transpose), boxes as
    /// centre, width and height in input pixels, then a probability per class.
    Yolo,
    /// Three outputs: boxes `[N, 4]` as corners in input pixels, scores `[N]`, class indices
    /// `[N]` (a leading batch dimension of 1 allowed), found by their shapes and types.
    BoxesScoresLabels,
}

impl OutputLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputLayout::Logits => "logits",
            OutputLayout::Yolo => "yolo",
            OutputLayout::BoxesScoresLabels => "boxes_scores_labels",
        }
    }

    /// Whether the layout gives boxes (a detector's) or one score per class (a classifier's).
    pub fn task(self) -> Task {
        match self {
            OutputLayout::Logits => Task::Classification,
            OutputLayout::Yolo | OutputLayout::BoxesScoresLabels => Task::Detection,
        }
    }
}

/// What a detector's raw boxes go through before anyone sees them: the endpoint's defaults
/// (each overridable per request), and the threshold register-model reports precision and
/// recall at. The defaults are Ultralytics' `predict`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectionSettings {
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: u32,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        Self { score_threshold: 0.25, iou_threshold: 0.7, max_detections: 300 }
    }
}

/// The most boxes a request may ask for.
pub const MAX_DETECTIONS_LIMIT: u32 = 1000;

impl DetectionSettings {
    /// Checks settings read from a card or a request.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return Err(format!("score_threshold {} is outside 0..=1", self.score_threshold));
        }
        if !(0.0..=1.0).contains(&self.iou_threshold) {
            return Err(format!("iou_threshold {} is outside 0..=1", self.iou_threshold));
        }
        if !(1..=MAX_DETECTIONS_LIMIT).contains(&self.max_detections) {
            return Err(format!("max_detections {} is outside 1..={MAX_DETECTIONS_LIMIT}", self.max_detections));
        }
        Ok(())
    }
}

/// The figure a gate compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Top-1 accuracy on the test split.
    #[default]
    Accuracy,
    /// COCO mAP at IoU 0.5 on the test split.
    Map50,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Map50 => "mAP@0.5",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_name_their_task_and_settings_are_checked() {
        assert_eq!(OutputLayout::Yolo.task(), Task::Detection);
        assert_eq!(OutputLayout::default().task(), Task::Classification);
        assert!(DetectionSettings::default().check().is_ok());
        let bad = DetectionSettings { score_threshold: 1.5, ..Default::default() };
        assert!(bad.check().unwrap_err().contains("score_threshold"));
        let none = DetectionSettings { max_detections: 0, ..Default::default() };
        assert!(none.check().is_err());
        assert_eq!(serde_json::to_string(&OutputLayout::BoxesScoresLabels).unwrap(), "\"boxes_scores_labels\"");
    }
}
