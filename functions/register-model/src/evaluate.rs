//! register-model's own evaluation: the exported model, on tract, on the snapshot's test split,
//! independent of what the trainer reported.

use cvops_core::key::Split;
use cvops_core::metrics::{Confusion, Evaluation};
use cvops_core::ports::{ObjectStore, ObjectStoreError};
use cvops_core::preprocess::argmax;
use cvops_core::snapshot::{self, Sample, Snapshot, SnapshotError};
use cvops_core::validate::ValidationLimits;
use cvops_inference::{LoadedModel, ModelError};
use futures::{stream, StreamExt, TryStreamExt};

const CONCURRENT_FETCHES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Accuracy, per-class metrics and confusion of `model` on the test split of `snapshot`. Every
/// test image counts: one whose label the model does not know is wrong. Test images that are
/// gone or changed since the snapshot are left out (and counted out of `images`).
pub async fn evaluate_on_test_split(
    model: &LoadedModel,
    labels: &[String],
    objects: &dyn ObjectStore,
    raw_bucket: &str,
    store_bucket: &str,
    snapshot: &Snapshot,
) -> Result<Evaluation, EvaluateError> {
    let mut lines = Vec::new();
    snapshot::for_each_line(objects, store_bucket, snapshot, |line| {
        if line.split == Split::Test {
            lines.push(line);
        }
    })
    .await?;
    let limits = ValidationLimits::default();
    let mut confusion = Confusion::new(labels.to_vec());
    let mut fetched =
        stream::iter(lines).map(|line| snapshot::fetch_sample(objects, raw_bucket, line, &limits)).buffered(CONCURRENT_FETCHES);
    while let Some(sample) = fetched.try_next().await? {
        let Sample::Image(line, image) = sample else { continue };
        let logits = model.logits_for_image(&image)?;
        confusion.add_named(&line.label, argmax(&logits));
    }
    Ok(confusion.evaluation())
}
