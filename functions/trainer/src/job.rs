//! One training job from start to finish, on the ports: read the snapshot, load its images,
//! train, evaluate on the test split, export `model.onnx`, then write the card last, so that the
//! card's arrival means the model is complete.

use std::time::Instant;

use bytes::Bytes;
use candle_core::Device;
use cvops_core::metrics::{Confusion, Evaluation};
use cvops_core::model_card::{
    artifact_key, run_prefix, Artifact, CardSource, EpochRecord, ModelCard, TrainerInfo, TrainingMetrics, CARD_FILE, CARD_SCHEMA,
};
use cvops_core::ports::{ObjectStore, ObjectStoreError};
use cvops_core::preprocess::InputSpec;
use cvops_core::task::{DetectionSettings, OutputLayout, Task};
use sha2::{Digest, Sha256};

use crate::config::{Hyperparameters, TrainerConfig};
use crate::data::{self, DataError, LoadedData, Samples};
use crate::detector::DetectorShape;
use crate::model::{named_tensors, CnnShape};
use crate::train::{predict, train};
use crate::{detect_train, onnx, TRAINER_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("training failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("writing the model: {0}")]
    Objects(#[from] ObjectStoreError),
}

/// What the job prints as it goes: one line per stage and per epoch.
pub trait Progress: Sync {
    fn line(&self, text: &str);
}

/// Progress on stderr (the job's log: CloudWatch on AWS, a log file locally).
#[derive(Debug, Default)]
pub struct Stderr;

impl Progress for Stderr {
    fn line(&self, text: &str) {
        eprintln!("{text}");
    }
}

/// The device: the first GPU when built with `cuda` and one is present, else the CPU.
pub fn device() -> Device {
    // cudarc loads the driver at run time and panics, rather than erring, where there is none: a
    // `cuda` build on a host without a GPU trains on the CPU instead of failing.
    #[cfg(feature = "cuda")]
    if let Ok(Ok(device)) = std::panic::catch_unwind(|| Device::new_cuda(0)) {
        return device;
    }
    Device::Cpu
}

/// Per-channel mean and standard deviation of the training images, scaled to 0..1.
fn channel_statistics(train: &Samples, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let plane = train.planes.len() / train.len().max(1) / channels;
    let (mut sum, mut squares, mut count) = (vec![0f64; channels], vec![0f64; channels], 0f64);
    for image in train.planes.chunks_exact(plane * channels) {
        for (c, values) in image.chunks_exact(plane).enumerate() {
            for &v in values {
                let x = v as f64 / 255.0;
                sum[c] += x;
                squares[c] += x * x;
            }
        }
        count += plane as f64;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / count.max(1.0)).collect();
    let std = squares.iter().zip(&mean).map(|(q, m)| ((q / count.max(1.0) - m * m).max(0.0).sqrt().max(1e-3)) as f32);
    (mean.iter().map(|&m| m as f32).collect(), std.collect())
}

fn evaluate(predicted: &[u32], samples: &Samples, labels: &[String]) -> Evaluation {
    let mut confusion = Confusion::new(labels.to_vec());
    for (&p, &t) in predicted.iter().zip(&samples.labels) {
        confusion.add(t as usize, p as usize);
    }
    confusion.evaluation()
}

/// Runs the job; returns the card it wrote.
pub async fn run(
    config: &TrainerConfig,
    objects: &dyn ObjectStore,
    device: &Device,
    progress: &dyn Progress,
) -> Result<ModelCard, TrainerError> {
    let started = Instant::now();
    let snapshot = data::read_snapshot(objects, &config.store_bucket, &config.snapshot_descriptor).await?;
    let task = if snapshot.is_detection() { Task::Detection } else { Task::Classification };
    let h = &config.hyperparameters_for(task);
    progress.line(&format!(
        "run {} point {}: snapshot {} of {} ({} images, {} labels) on {}",
        config.run_id,
        config.point,
        snapshot.id,
        snapshot.dataset,
        snapshot.samples,
        snapshot.labels.len(),
        if device.is_cpu() { "cpu" } else { "cuda" }
    ));
    let step = (snapshot.samples as usize / 10).max(1);
    let report = |done: usize, total: usize| {
        if done.is_multiple_of(step) || done == total {
            progress.line(&format!("loading images {done}/{total}"));
        }
    };
    let LoadedData { labels, size, channels, train: train_set, val, test, skipped } =
        data::load(objects, &config.raw_bucket, &config.store_bucket, &snapshot, h.image_size, &report).await?;
    if !skipped.is_empty() {
        progress.line(&format!("skipped manifest entries: {skipped:?}"));
    }
    let (mean, std) = channel_statistics(&train_set, channels as usize);
    let spec = InputSpec { name: onnx::INPUT.into(), width: size, height: size, channels, mean, std, resize: Default::default() };
    let metadata = [
        ("labels", serde_json::to_string(&labels).expect("labels serialise")),
        ("input", serde_json::to_string(&spec).expect("spec serialises")),
    ];
    let splits = Splits { train: &train_set, val: &val, test: &test };
    let trained = if task == Task::Detection {
        train_detector(&splits, &labels, &spec, h, &metadata, device, progress)?
    } else {
        train_classifier(&splits, &labels, &spec, h, &metadata, device, progress)?
    };
    let model = trained.onnx;
    let prefix = run_prefix(&config.model, &config.run_id, config.point);
    let mut artifact = Artifact {
        key: artifact_key(&prefix, &format!("attempt-{}", uuid::Uuid::new_v4())),
        sha256: hex::encode(Sha256::digest(&model)),
        bytes: model.len() as u64,
        version_id: None,
    };
    artifact.version_id = objects.put(&config.models_bucket, &artifact.key, Bytes::from(model)).await?.version_id;

    let card = ModelCard {
        schema: CARD_SCHEMA.into(),
        source: CardSource::Run,
        model: config.model.clone(),
        task: trained.task,
        run_id: config.run_id.clone(),
        point: config.point,
        dataset: config.dataset.clone(),
        snapshot: snapshot.id.clone(),
        labels,
        input: spec,
        output: trained.output.into(),
        output_layout: trained.output_layout,
        detection: trained.detection,
        architecture: trained.architecture,
        artifact,
        hyperparameters: config.hyperparameter_values.clone(),
        metrics: Some(trained.metrics),
        duration_seconds: started.elapsed().as_secs_f64(),
        images_per_second: trained.images_per_second,
        trainer: TrainerInfo { version: TRAINER_VERSION.into(), device: if device.is_cpu() { "cpu" } else { "cuda" }.into() },
        created_at: chrono::Utc::now().to_rfc3339(),
    };
    let json = serde_json::to_vec_pretty(&card).expect("a card serialises");
    objects.put(&config.models_bucket, &format!("{prefix}{CARD_FILE}"), Bytes::from(json)).await?;
    progress.line(&format!("wrote {} and {prefix}{CARD_FILE} in {:.1} s", card.artifact.key, card.duration_seconds));
    Ok(card)
}

/// The three splits' images.
struct Splits<'a> {
    train: &'a Samples,
    val: &'a Samples,
    test: &'a Samples,
}

/// A trained network, exported, with what its card says of it.
struct Trained {
    onnx: Vec<u8>,
    task: Task,
    output: &'static str,
    output_layout: OutputLayout,
    detection: Option<DetectionSettings>,
    architecture: String,
    metrics: TrainingMetrics,
    images_per_second: f64,
}

fn train_classifier(
    splits: &Splits<'_>,
    labels: &[String],
    spec: &InputSpec,
    h: &Hyperparameters,
    metadata: &[(&str, String)],
    device: &Device,
    progress: &dyn Progress,
) -> Result<Trained, TrainerError> {
    let (size, channels) = (spec.width as usize, spec.channels as usize);
    let shape = CnnShape::new(channels, size, size, h.width, labels.len());
    announce(progress, &shape.describe(), spec, splits);
    let epochs = h.epochs;
    let mut on_epoch = |e: &EpochRecord| {
        progress.line(&format!(
            "epoch {:>3}/{epochs}  loss {:.4}  train {:5.1}%  val {:5.1}%  {:.1} s",
            e.epoch,
            e.loss,
            100.0 * e.train_accuracy.unwrap_or(0.0),
            100.0 * e.val_accuracy.unwrap_or(0.0),
            e.seconds
        ));
    };
    let (net, vars, outcome) = train(shape.clone(), splits.train, splits.val, spec, h, device, &mut on_epoch)?;
    let test = evaluate(&predict(&net, splits.test, spec, h, device)?, splits.test, labels);
    progress.line(&format!(
        "best epoch {} (val {:.2}%), test accuracy {:.2}% on {} images, {:.0} images/s",
        outcome.best_epoch,
        100.0 * outcome.val_accuracy,
        100.0 * test.accuracy,
        test.images,
        outcome.images_per_second
    ));
    Ok(Trained {
        onnx: onnx::export(&shape, &named_tensors(&vars)?, metadata),
        task: Task::Classification,
        output: onnx::OUTPUT,
        output_layout: OutputLayout::Logits,
        detection: None,
        architecture: shape.describe(),
        metrics: TrainingMetrics {
            test: Some(test),
            test_detection: None,
            val_accuracy: Some(outcome.val_accuracy),
            val_map50: None,
            best_epoch: outcome.best_epoch,
            epochs_run: outcome.history.len() as u32,
            history: outcome.history,
        },
        images_per_second: outcome.images_per_second,
    })
}

fn train_detector(
    splits: &Splits<'_>,
    labels: &[String],
    spec: &InputSpec,
    h: &Hyperparameters,
    metadata: &[(&str, String)],
    device: &Device,
    progress: &dyn Progress,
) -> Result<Trained, TrainerError> {
    let shape = DetectorShape::new(spec.channels as usize, spec.width as usize, h.width, labels.len());
    announce(progress, &shape.describe(), spec, splits);
    let settings = DetectionSettings::default();
    let epochs = h.epochs;
    let mut on_epoch = |e: &EpochRecord| {
        progress.line(&format!(
            "epoch {:>3}/{epochs}  loss {:.4}  box {:.4}  val mAP@0.5 {:5.1}%  {:.1} s",
            e.epoch,
            e.loss,
            e.box_loss.unwrap_or(0.0),
            100.0 * e.val_map50.unwrap_or(0.0),
            e.seconds
        ));
    };
    let (net, vars, outcome) =
        detect_train::train(shape.clone(), splits.train, splits.val, spec, h, &settings, device, &mut on_epoch)?;
    let test = detect_train::evaluate(&net, splits.test, spec, h, &settings, labels, device)?;
    progress.line(&format!(
        "best epoch {} (val mAP@0.5 {:.2}%), test mAP@0.5 {:.2}% (mAP@0.5:0.95 {:.2}%) on {} images, {:.0} images/s",
        outcome.best_epoch,
        100.0 * outcome.val_map50,
        100.0 * test.map50,
        100.0 * test.map,
        test.images,
        outcome.images_per_second
    ));
    Ok(Trained {
        onnx: onnx::export_detector(&shape, &named_tensors(&vars)?, metadata),
        task: Task::Detection,
        output: onnx::DETECTOR_OUTPUT,
        output_layout: OutputLayout::Yolo,
        detection: Some(settings),
        architecture: shape.describe(),
        metrics: TrainingMetrics {
            test: None,
            test_detection: Some(test),
            val_accuracy: None,
            val_map50: Some(outcome.val_map50),
            best_epoch: outcome.best_epoch,
            epochs_run: outcome.history.len() as u32,
            history: outcome.history,
        },
        images_per_second: outcome.images_per_second,
    })
}

fn announce(progress: &dyn Progress, architecture: &str, spec: &InputSpec, splits: &Splits<'_>) {
    progress.line(&format!(
        "training {architecture} on {}x{}x{} inputs: {} train, {} val, {} test images",
        spec.channels,
        spec.height,
        spec.width,
        splits.train.len(),
        splits.val.len(),
        splits.test.len()
    ));
}
