//! One prediction, whichever the task: decode, preprocess, run, and the answer's JSON.
//!
//! - a classifier answers `{"model", "version", "predictions": [{"label", "score"}], "timings_ms"}`,
//!   the top `top_k` of the softmax;
//! - a detector answers `{"model", "version", "detections": [{"label", "score", "box": {"x", "y",
//!   "width", "height"}}], "timings_ms"}`, boxes in the original image's pixels after NMS, best
//!   first, at the version's score and IoU thresholds unless the request sets its own.
//!
//! CPU work: the router runs it off the async threads.

use std::collections::HashMap;
use std::time::Instant;

use cvops_core::monitoring::{InputFeatures, ObservedBox};
use cvops_core::preprocess::{preprocess, softmax};
use cvops_core::stats::ImageStats;
use cvops_core::task::DetectionSettings;
use cvops_core::validate::{decode_image, ValidationLimits};
use cvops_inference::Runner;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::models::Served;

const DEFAULT_TOP_K: usize = 5;

/// What a request asks of the prediction: the version, and how many answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictQuery {
    pub version: Option<u32>,
    /// A classifier's top k.
    pub top_k: Option<usize>,
    /// A detector's thresholds, each `None` for the version's own.
    pub score_threshold: Option<f32>,
    pub iou_threshold: Option<f32>,
    pub max_detections: Option<u32>,
}

impl PredictQuery {
    /// `?version=`, `?top_k=`, `?score_threshold=`, `?iou_threshold=`, `?max_detections=`.
    pub fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let number = |name: &str, what: &str| -> Result<Option<f64>, ApiError> {
            query
                .get(name)
                .map(|text| {
                    text.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| ApiError::malformed(format!("{name} is {text:?}; give {what}")))
                })
                .transpose()
        };
        let top_k = match query.get("top_k") {
            Some(text) => Some(
                text.parse::<usize>()
                    .ok()
                    .filter(|k| *k > 0)
                    .ok_or_else(|| ApiError::malformed(format!("top_k is {text:?}; give a positive whole number")))?,
            ),
            None => None,
        };
        let version = match query.get("version") {
            Some(text) => Some(
                text.trim_start_matches('v')
                    .parse::<u32>()
                    .map_err(|_| ApiError::malformed(format!("version is {text:?}; give a version number such as 3")))?,
            ),
            None => None,
        };
        let unit = "a number between 0 and 1";
        let parsed = Self {
            version,
            top_k,
            score_threshold: number("score_threshold", unit)?.map(|v| v as f32),
            iou_threshold: number("iou_threshold", unit)?.map(|v| v as f32),
            max_detections: match query.get("max_detections") {
                Some(text) => Some(
                    text.parse::<u32>()
                        .map_err(|_| ApiError::malformed(format!("max_detections is {text:?}; give a positive whole number")))?,
                ),
                None => None,
            },
        };
        parsed.settings(DetectionSettings::default()).check().map_err(ApiError::malformed)?;
        Ok(parsed)
    }

    /// A detector's settings: the request's where it gives them, else the version's.
    pub fn settings(&self, version: DetectionSettings) -> DetectionSettings {
        DetectionSettings {
            score_threshold: self.score_threshold.unwrap_or(version.score_threshold),
            iou_threshold: self.iou_threshold.unwrap_or(version.iou_threshold),
            max_detections: self.max_detections.unwrap_or(version.max_detections),
        }
    }
}

/// A prediction with what the monitoring feed keeps of it.
pub struct Predicted {
    pub answer: Value,
    /// (class index, score), best first: a classifier's top `top_k`, a detector's boxes.
    pub ranked: Vec<(usize, f32)>,
    /// A detector's boxes at its version's own settings, as the monitor bins them (`None` for a
    /// classifier, or when nothing is monitored).
    pub boxes: Option<Vec<ObservedBox>>,
    pub features: Option<InputFeatures>,
}

impl Predicted {
    /// A classifier's top class and score, for the monitoring feed.
    pub fn top(&self) -> Option<(usize, f64)> {
        match self.answer.get("predictions") {
            Some(_) => self.ranked.first().map(|&(i, s)| (i, f64::from(s))),
            None => None,
        }
    }
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Decodes `image` and answers as the served version's task says.
pub fn predict(
    served: &Served,
    image: &[u8],
    query: &PredictQuery,
    limits: &ValidationLimits,
    monitored: bool,
) -> Result<Predicted, ApiError> {
    let started = Instant::now();
    let decoded = decode_image(image, limits).map_err(|rejection| ApiError::rejected_image(&rejection))?;
    let decode = millis(started);
    // The same statistics ingest records, so the monitor compares like with like.
    let features = monitored.then(|| {
        let stats = ImageStats::of(&decoded.to_luma8());
        InputFeatures::of(&stats, decoded.width(), decoded.height())
    });
    let labels = &served.record.labels;
    let (model, version) = (&served.record.model, served.record.version);
    match &served.model {
        Runner::Classifier(classifier) => {
            let stage = Instant::now();
            let input = preprocess(&decoded, classifier.spec());
            let preprocess_ms = millis(stage);
            let stage = Instant::now();
            let logits = classifier.logits(&input).map_err(|e| ApiError::internal(e.to_string()))?;
            let infer = millis(stage);
            let scores = softmax(&logits);
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
            let top_k = query.top_k.unwrap_or(DEFAULT_TOP_K);
            let ranked: Vec<(usize, f32)> = order.into_iter().take(top_k).map(|i| (i, scores[i])).collect();
            let predictions: Vec<Value> = ranked.iter().map(|&(i, score)| json!({"label": labels[i], "score": score})).collect();
            let answer = json!({
                "model": model,
                "version": version,
                "predictions": predictions,
                "timings_ms": {"decode": decode, "preprocess": preprocess_ms, "infer": infer, "total": millis(started)},
            });
            Ok(Predicted { answer, ranked, boxes: None, features })
        }
        Runner::Detector(detector) => {
            let stage = Instant::now();
            // One run of the model answers the request at its own settings and feeds the monitor
            // at the version's, so a client's thresholds never move the version's statistics.
            let version_settings = served.record.detection_settings();
            let settings = query.settings(version_settings);
            let lowest = settings.score_threshold.min(version_settings.score_threshold);
            let candidates = detector.candidates(&decoded, lowest).map_err(|e| ApiError::internal(e.to_string()))?;
            let found = candidates.finish(&settings);
            let infer = millis(stage);
            let detections: Vec<Value> = found
                .iter()
                .map(|d| {
                    let b = d.bbox;
                    let label = &labels[d.class as usize];
                    json!({"label": label, "score": d.score, "box": {"x": b.x, "y": b.y, "width": b.width, "height": b.height}})
                })
                .collect();
            let answer = json!({
                "model": model,
                "version": version,
                "detections": detections,
                "timings_ms": {"decode": decode, "infer": infer, "total": millis(started)},
            });
            let ranked = found.iter().map(|d| (d.class as usize, d.score)).collect();
            let boxes = monitored.then(|| {
                let watched = if settings == version_settings { found.clone() } else { candidates.finish(&version_settings) };
                let (w, h) = (decoded.width(), decoded.height());
                watched
                    .iter()
                    .map(|d| ObservedBox::new(d.class as usize, f64::from(d.score), d.bbox.width, d.bbox.height, w, h))
                    .collect()
            });
            Ok(Predicted { answer, ranked, boxes, features })
        }
    }
}
