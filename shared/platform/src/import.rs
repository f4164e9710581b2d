//! `cvops models import`: a classifier or a detector trained elsewhere, exported to ONNX, into the registry.
//!
//! The import snapshots the dataset the model is to be judged on, writes the artifact and then
//! the card (`source: import`) under `models/<model>/imports/<id>/`, and the card's event takes
//! it to register-model, exactly as a trained model's does: verified (checksum, loads in tract
//! with the given input, one output per label, the dataset's classes), evaluated on the
//! snapshot's test split, versioned, gated. The id is a hash of the model's bytes and of what the
//! import says about it, so importing the same thing twice registers it once.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use bytes::Bytes;
use cvops_core::model_card::{
    import_prefix, Artifact, CardSource, ModelCard, TrainerInfo, CARD_FILE, CARD_SCHEMA, IMPORT_ID_PREFIX, MODEL_FILE,
};
use cvops_core::ports::ObjectStore;
use cvops_core::preprocess::InputSpec;
use cvops_core::snapshot;
use cvops_core::task::{DetectionSettings, OutputLayout, Task};
use cvops_register_model::handler::MAX_MODEL_BYTES;
use cvops_register_model::Outcome;
use sha2::{Digest, Sha256};

use crate::platform::{LocalPlatform, MODELS_BUCKET, STORE_BUCKET};
use crate::router::{route_event, Routed};

/// What an import says about a model.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub model: String,
    pub dataset: String,
    /// Class names in the model's output order.
    pub labels: Vec<String>,
    /// Its input and preprocessing; `name` empty: the graph's first input.
    pub input: InputSpec,
    pub task: Task,
    /// How its outputs are read: `None` finds it from the graph (a detector with one output is a
    /// YOLO export, with three boxes/scores/labels).
    pub output_layout: Option<OutputLayout>,
}

/// Imports the ONNX file at `path` and returns register-model's verdict.
pub async fn import_model(platform: &LocalPlatform, request: &ImportRequest, path: &Path) -> anyhow::Result<Outcome> {
    let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if size > MAX_MODEL_BYTES {
        bail!("{} is {size} bytes, over the {MAX_MODEL_BYTES}-byte limit on models", path.display());
    }
    let model_bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    request.input.check().map_err(|e| anyhow::anyhow!("the input: {e}"))?;
    let output_layout = match (request.task, request.output_layout) {
        (_, Some(layout)) => layout,
        (Task::Classification, None) => OutputLayout::Logits,
        (Task::Detection, None) => cvops_inference::detector::layout_of(&model_bytes)
            .map_err(|e| anyhow::anyhow!("{e}; say which with --output-layout yolo|boxes_scores_labels"))?,
    };
    let (table, objects) = (platform.table.as_ref(), platform.objects.as_ref());
    let created_at = platform.clock.now().to_rfc3339();
    let snap = snapshot::create_with(
        table,
        objects,
        STORE_BUCKET,
        &request.dataset,
        created_at.clone(),
        platform.dispatch.snapshot_options(),
    )
    .await
    .with_context(|| format!("cannot snapshot dataset {} to evaluate the model on", request.dataset))?;

    let sha256 = hex::encode(Sha256::digest(&model_bytes));
    let said = serde_json::to_string(&(
        &sha256,
        &request.labels,
        &request.input,
        &request.dataset,
        &snap.id,
        request.task,
        output_layout,
    ))
    .expect("serialises");
    let id = format!("{IMPORT_ID_PREFIX}{}", &hex::encode(Sha256::digest(said.as_bytes()))[..16]);
    let prefix = import_prefix(&request.model, &id);
    let mut artifact =
        Artifact { key: format!("{prefix}{MODEL_FILE}"), sha256, bytes: model_bytes.len() as u64, version_id: None };
    artifact.version_id = objects.put(MODELS_BUCKET, &artifact.key, Bytes::from(model_bytes)).await?.version_id;
    let card = ModelCard {
        schema: CARD_SCHEMA.into(),
        source: CardSource::Import,
        model: request.model.clone(),
        task: request.task,
        run_id: id,
        point: 0,
        dataset: request.dataset.clone(),
        snapshot: snap.id.clone(),
        labels: request.labels.clone(),
        input: request.input.clone(),
        output: String::new(),
        output_layout,
        detection: (request.task == Task::Detection).then(DetectionSettings::default),
        architecture: "imported".into(),
        artifact,
        hyperparameters: BTreeMap::new(),
        metrics: None,
        duration_seconds: 0.0,
        images_per_second: 0.0,
        trainer: TrainerInfo { version: "imported".into(), device: "none".into() },
        created_at,
    };
    let card_key = format!("{prefix}{CARD_FILE}");
    objects.put(MODELS_BUCKET, &card_key, Bytes::from(serde_json::to_vec_pretty(&card)?)).await?;
    let mut verdict = None;
    for event in platform.pending_events() {
        if let Routed::Register(outcomes) = route_event(platform, &event).await? {
            if event.key == card_key {
                verdict = outcomes.into_iter().next();
            }
        }
    }
    verdict.ok_or_else(|| anyhow::anyhow!("register-model did not answer for {card_key}"))
}
