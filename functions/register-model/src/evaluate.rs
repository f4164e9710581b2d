//! register-model's own evaluation: the exported model, on tract, on the snapshot's test split,
//! independent of what the trainer reported. A classifier is scored by accuracy (with per-class
//! metrics and the confusion matrix), a detector by COCO mAP (with AP per class, and precision
//! and recall at the score threshold it is served at).

use cvops_core::key::Split;
use cvops_core::metrics::detection::{DetectionEvaluation, GroundTruth};
use cvops_core::metrics::{detection, Confusion, Evaluation};
use cvops_core::ports::{ObjectStore, ObjectStoreError};
use cvops_core::preprocess::argmax;
use cvops_core::registry::Score;
use cvops_core::snapshot::{self, Sample, Snapshot, SnapshotError};
use cvops_core::task::DetectionSettings;
use cvops_core::validate::ValidationLimits;
use cvops_inference::ModelError;
pub use cvops_inference::Runner;
use futures::{stream, StreamExt, TryStreamExt};

const CONCURRENT_FETCHES: usize = 16;
/// The score a detector's boxes must reach to be evaluated at all: low, as COCO evaluation and
/// Ultralytics' `val` take nearly every box, so the precision-recall curve is whole.
pub const EVALUATION_SCORE_THRESHOLD: f32 = 0.001;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// An evaluation of either task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvaluation {
    Classification(Evaluation),
    Detection(DetectionEvaluation),
}

impl TaskEvaluation {
    /// What the gate judges.
    pub fn score(&self) -> Score {
        match self {
            TaskEvaluation::Classification(e) => Score::of_classification(e),
            TaskEvaluation::Detection(e) => Score::of_detection(e),
        }
    }
}

/// `model` (whose outputs are `labels`, in order) on the test split of `snapshot`.
pub async fn evaluate_on_test_split(
    model: &Runner,
    labels: &[String],
    settings: &DetectionSettings,
    objects: &dyn ObjectStore,
    raw_bucket: &str,
    store_bucket: &str,
    snapshot: &Snapshot,
) -> Result<TaskEvaluation, EvaluateError> {
    let mut lines = Vec::new();
    snapshot::for_each_line(objects, store_bucket, snapshot, |line| {
        if line.split == Split::Test {
            lines.push(line);
        }
    })
    .await?;
    let limits = ValidationLimits::default();
    let mut fetched =
        stream::iter(lines).map(|line| snapshot::fetch_sample(objects, raw_bucket, line, &limits)).buffered(CONCURRENT_FETCHES);
    match model {
        // Every test image counts: one whose label the model does not know is wrong. Test images
        // that are gone or changed since the snapshot are left out (and counted out of `images`).
        Runner::Classifier(model) => {
            let mut confusion = Confusion::new(labels.to_vec());
            while let Some(sample) = fetched.try_next().await? {
                let Sample::Image(line, image) = sample else { continue };
                let logits = model.logits_for_image(&image)?;
                confusion.add_named(&line.label, argmax(&logits));
            }
            Ok(TaskEvaluation::Classification(confusion.evaluation()))
        }
        // A box's class is the model's output index; it is matched to the snapshot's class of the
        // same name, so an imported model may list the classes in its own order.
        Runner::Detector(model) => {
            let class_map: Vec<Option<u32>> =
                labels.iter().map(|name| snapshot.labels.iter().position(|l| l == name).map(|i| i as u32)).collect();
            let raw_settings = DetectionSettings { score_threshold: EVALUATION_SCORE_THRESHOLD, ..*settings };
            let (mut images, mut truth, mut found) = (Vec::new(), Vec::new(), Vec::new());
            let mut image_id = 0u64;
            while let Some(sample) = fetched.try_next().await? {
                let Sample::Image(line, image) = sample else { continue };
                image_id += 1;
                images.push(image_id);
                let (w, h) = (image.width(), image.height());
                for b in line.boxes.iter().flatten() {
                    truth.push(GroundTruth { image: image_id, class: b.class, bbox: b.in_pixels(w, h), crowd: false });
                }
                for d in model.detect(&image, &raw_settings)? {
                    if let Some(Some(class)) = class_map.get(d.class as usize) {
                        let score = f64::from(d.score);
                        found.push(detection::Detection { image: image_id, class: *class, bbox: d.bbox, score });
                    }
                }
            }
            let served = f64::from(settings.score_threshold);
            Ok(TaskEvaluation::Detection(DetectionEvaluation::with_served(
                &images,
                &truth,
                &found,
                snapshot.labels.clone(),
                served,
            )))
        }
    }
}
