//! cvops-inference: ONNX models on tract, for every crate that serves or evaluates one
//! (register-model, infer, the CLI). Only these crates link tract.
//!
//! A model is loaded once: parsed, its input pinned to the card's concrete shape `[1, C, H, W]`
//! (the graph's batch dimension is symbolic), optimised, and made runnable. Preprocessing is
//! `cvops_core::preprocess`, the trainer's own, so scores here equal the trainer's and
//! register-model's.
//!
//! The trainer's own architecture runs on [`direct::DirectModel`] where the CPU allows it (x86-64
//! with AVX2 and FMA), after its output has been checked against tract's at load; every other
//! model, and every model elsewhere, runs on tract.
//!
//! [`detector::LoadedDetector`] runs a detector: [`detect`] (in cvops-core, which the trainer shares)
//! reads its output (the YOLO export layout, or boxes/scores/labels) into boxes and suppresses the
//! overlaps.

pub use cvops_core::detect;
pub mod detector;
pub mod direct;

use std::io::Cursor;

use cvops_core::preprocess::{preprocess, InputSpec};
use cvops_core::task::{OutputLayout, Task};
use detector::LoadedDetector;
use direct::DirectModel;
use image::DynamicImage;
use tract_onnx::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not a model tract can run with this input (code `unloadable_model`).
    #[error("the model does not load: {0}")]
    Unloadable(String),
    /// It loads, but its output does not have one score per label (code `shape_mismatch`).
    #[error("the model's output has shape {found:?}; the card lists {labels} labels")]
    OutputShape { found: Vec<usize>, labels: usize },
    /// A detector's outputs are not what its layout says (code `shape_mismatch`).
    #[error("the model's outputs do not fit its output layout: {0}")]
    Signature(String),
    #[error("running the model failed: {0}")]
    Run(String),
}

impl ModelError {
    /// The stable code a registry or an HTTP error reports.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Unloadable(_) => "unloadable_model",
            ModelError::OutputShape { .. } | ModelError::Signature(_) => "shape_mismatch",
            ModelError::Run(_) => "inference_failed",
        }
    }
}

pub(crate) type Plan = TypedRunnableModel<TypedModel>;

/// Parses `onnx`, pins its first input to the spec's `[1, C, H, W]` (the graph's batch dimension
/// is symbolic), optimises it and makes it runnable: every model, of either task, loads here. A
/// parser panic on hostile bytes is an `unloadable_model`, not a crash.
pub(crate) fn optimised_plan(onnx: &[u8], spec: &InputSpec) -> Result<Plan, ModelError> {
    spec.check().map_err(ModelError::Unloadable)?;
    let unloadable = |e: TractError| ModelError::Unloadable(format!("{e:#}"));
    std::panic::catch_unwind(|| -> Result<Plan, ModelError> {
        tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(onnx))
            .map_err(unloadable)?
            .with_input_fact(0, f32::fact(spec.shape(1)).into())
            .map_err(unloadable)?
            .into_optimized()
            .map_err(unloadable)?
            .into_runnable()
            .map_err(unloadable)
    })
    .map_err(|_| ModelError::Unloadable("the ONNX parser panicked on these bytes".into()))?
}

/// A loaded model of either task, as its card (or registered version) describes it.
#[derive(Debug, Clone)]
pub enum Runner {
    Classifier(LoadedModel),
    Detector(LoadedDetector),
}

impl Runner {
    /// Loads `onnx` as `task` and `layout` say, for `classes` classes.
    pub fn load(onnx: &[u8], task: Task, input: &InputSpec, classes: usize, layout: OutputLayout) -> Result<Self, ModelError> {
        match task {
            Task::Classification => Ok(Runner::Classifier(LoadedModel::load(onnx, input, classes)?)),
            Task::Detection => Ok(Runner::Detector(LoadedDetector::load(onnx, input, classes, layout)?)),
        }
    }
}

/// A model ready to run one image at a time.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    plan: Plan,
    /// The direct runner, when the model is the trainer's architecture and it agreed with tract.
    direct: Option<DirectModel>,
    spec: InputSpec,
    classes: usize,
}

/// A fixed input for comparing runners at load: values spread over the normalised range.
fn probe_input(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0).collect()
}

impl LoadedModel {
    /// Parses, pins the input shape, optimises, and checks that the output has `classes` values;
    /// takes the direct runner when the model is the trainer's architecture and it agrees with
    /// tract on a probe input.
    pub fn load(onnx: &[u8], spec: &InputSpec, classes: usize) -> Result<Self, ModelError> {
        let mut model = Self::load_tract_only(onnx, spec, classes)?;
        if let Some(direct) = DirectModel::from_onnx(onnx, spec) {
            let probe = probe_input(spec.len());
            let (theirs, ours) = (model.logits(&probe)?, direct.logits(&probe));
            let scale = theirs.iter().fold(1f32, |m, v| m.max(v.abs()));
            let worst = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            if ours.len() == theirs.len() && worst <= 1e-4 * scale {
                model.direct = Some(direct);
            } else {
                tracing::warn!(worst, scale, "the direct runner disagrees with tract on this model; tract runs it");
            }
        }
        Ok(model)
    }

    /// The same, always on tract (the benchmarks compare the two runners in one run).
    pub fn load_tract_only(onnx: &[u8], spec: &InputSpec, classes: usize) -> Result<Self, ModelError> {
        let plan = optimised_plan(onnx, spec)?;
        let model = Self { plan, direct: None, spec: spec.clone(), classes };
        let probe = model.logits(&vec![0.0; spec.len()])?;
        if probe.len() != classes {
            return Err(ModelError::OutputShape { found: vec![1, probe.len()], labels: classes });
        }
        Ok(model)
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Which runner answers: `direct` or `tract`.
    pub fn runner(&self) -> &'static str {
        if self.direct.is_some() {
            "direct"
        } else {
            "tract"
        }
    }

    /// Logits for one preprocessed input (`spec.len()` values, CHW).
    pub fn logits(&self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        if let Some(direct) = self.direct.as_ref().filter(|_| input.len() == self.spec.len()) {
            return Ok(direct.logits(input));
        }
        let shape = self.spec.shape(1);
        let tensor = Tensor::from_shape(&shape, input).map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(|e| ModelError::Run(format!("{e:#}")))?;
        let view = outputs[0].to_array_view::<f32>().map_err(|e| ModelError::Run(format!("{e:#}")))?;
        Ok(view.iter().copied().collect())
    }

    /// Logits for a decoded image, through the card's preprocessing.
    pub fn logits_for_image(&self, image: &DynamicImage) -> Result<Vec<f32>, ModelError> {
        self.logits(&preprocess(image, &self.spec))
    }
}
