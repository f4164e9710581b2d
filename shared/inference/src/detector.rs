//! A detector on tract: an image in, boxes in the image's own pixels out.
//!
//! The image goes through the card's preprocessing (letterboxed, as Ultralytics feeds YOLO, when
//! the card says so), the raw output is decoded in the card's layout ([`crate::detect`]), the
//! overlaps are suppressed per class, and the boxes are taken back to the original image and
//! clipped to it, as Ultralytics' `scale_boxes` does.

use std::io::Cursor;

use cvops_core::annotation::PixelBox;
use cvops_core::preprocess::{preprocess_placed, InputSpec};
use cvops_core::task::{DetectionSettings, OutputLayout};
use image::DynamicImage;
use tract_onnx::prelude::*;

use crate::detect::{decode_boxes_scores_labels, decode_yolo, nms, RawDetection};
use crate::ModelError;

type Plan = TypedRunnableModel<TypedModel>;

/// A detected box in the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    pub class: u32,
    pub score: f32,
    pub bbox: PixelBox,
}

/// A detector ready to run one image at a time.
#[derive(Debug, Clone)]
pub struct LoadedDetector {
    plan: Plan,
    spec: InputSpec,
    classes: usize,
    layout: OutputLayout,
}

impl LoadedDetector {
    /// Parses, pins the input to `[1, C, H, W]`, optimises, and checks on a probe input that the
    /// outputs are what `layout` says for `classes` classes (`shape_mismatch` if not).
    pub fn load(onnx: &[u8], spec: &InputSpec, classes: usize, layout: OutputLayout) -> Result<Self, ModelError> {
        spec.check().map_err(ModelError::Unloadable)?;
        if layout == OutputLayout::Logits {
            return Err(ModelError::Unloadable("a detector's output layout is yolo or boxes_scores_labels, not logits".into()));
        }
        let unloadable = |e: TractError| ModelError::Unloadable(format!("{e:#}"));
        let plan = std::panic::catch_unwind(|| -> Result<Plan, ModelError> {
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
        .map_err(|_| ModelError::Unloadable("the ONNX parser panicked on these bytes".into()))??;
        let detector = Self { plan, spec: spec.clone(), classes, layout };
        // Nothing passes a threshold above 1; the decode still checks every shape.
        detector.raw(&vec![0.0; spec.len()], 2.0)?;
        Ok(detector)
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn layout(&self) -> OutputLayout {
        self.layout
    }

    /// The candidates scoring at least `score_threshold`, in input pixels, before NMS.
    pub fn raw(&self, input: &[f32], score_threshold: f32) -> Result<Vec<RawDetection>, ModelError> {
        let run = |e: TractError| ModelError::Run(format!("{e:#}"));
        let tensor = Tensor::from_shape(&self.spec.shape(1), input).map_err(run)?;
        let outputs = self.plan.run(tvec!(tensor.into())).map_err(run)?;
        let shape_error = |why: String| ModelError::Signature(why);
        match self.layout {
            OutputLayout::Yolo => {
                let [output] = outputs.as_slice() else {
                    return Err(shape_error(format!("a YOLO export has one output; this model has {}", outputs.len())));
                };
                let view = output.to_array_view::<f32>().map_err(|e| shape_error(format!("{e:#}")))?;
                let values: Vec<f32> = view.iter().copied().collect();
                decode_yolo(&values, output.shape(), self.classes, score_threshold).map_err(shape_error)
            }
            OutputLayout::BoxesScoresLabels => {
                let o = boxes_scores_labels(&outputs).map_err(shape_error)?;
                decode_boxes_scores_labels(&o.boxes, &o.scores, &o.labels, self.classes, score_threshold).map_err(shape_error)
            }
            OutputLayout::Logits => unreachable!("refused at load"),
        }
    }

    /// The boxes in `image`'s pixels, best first: decoded, suppressed, mapped back, clipped.
    pub fn detect(&self, image: &DynamicImage, settings: &DetectionSettings) -> Result<Vec<Detected>, ModelError> {
        let (input, placement) = preprocess_placed(image, &self.spec);
        let raw = self.raw(&input, settings.score_threshold)?;
        let kept = nms(raw, f64::from(settings.iou_threshold), settings.max_detections as usize);
        let (w, h) = (f64::from(image.width()), f64::from(image.height()));
        Ok(kept
            .into_iter()
            .map(|d| {
                let b = placement.to_original(d.bbox);
                let (x1, y1) = (b.x.clamp(0.0, w), b.y.clamp(0.0, h));
                let (x2, y2) = ((b.x + b.width).clamp(0.0, w), (b.y + b.height).clamp(0.0, h));
                Detected { class: d.class, score: d.score, bbox: PixelBox { x: x1, y: y1, width: x2 - x1, height: y2 - y1 } }
            })
            .collect())
    }
}

/// The three outputs of the boxes/scores/labels layout, flattened.
struct BoxesScoresLabels {
    boxes: Vec<f32>,
    scores: Vec<f32>,
    labels: Vec<i64>,
}

/// The three outputs of the boxes/scores/labels layout, found by shape and type: boxes end in 4,
/// labels are integers (or whole floats), scores are the other one.
fn boxes_scores_labels(outputs: &[TValue]) -> Result<BoxesScoresLabels, String> {
    if outputs.len() != 3 {
        return Err(format!("the boxes/scores/labels layout has three outputs; this model has {}", outputs.len()));
    }
    let squeeze = |shape: &[usize]| shape.iter().copied().skip_while(|d| *d == 1).collect::<Vec<_>>();
    let is_boxes = |t: &TValue| {
        let s = t.shape();
        s.last() == Some(&4) && s.len() >= 2 && s[..s.len() - 2].iter().all(|d| *d == 1)
    };
    let Some(b) = outputs.iter().position(is_boxes) else {
        return Err(format!(
            "no output is [N, 4] boxes; the shapes are {:?}",
            outputs.iter().map(|t| t.shape()).collect::<Vec<_>>()
        ));
    };
    let others: Vec<usize> = (0..3).filter(|i| *i != b).collect();
    let is_int = |t: &TValue| t.datum_type().is_integer();
    let (s, l) = match (is_int(&outputs[others[0]]), is_int(&outputs[others[1]])) {
        (false, true) => (others[0], others[1]),
        (true, false) => (others[1], others[0]),
        // Both float (labels exported as floats): the one holding only whole numbers is labels.
        _ => {
            let whole = |t: &TValue| t.to_array_view::<f32>().map(|v| v.iter().all(|x| x.fract() == 0.0)).unwrap_or(false);
            if whole(&outputs[others[1]]) {
                (others[0], others[1])
            } else {
                (others[1], others[0])
            }
        }
    };
    let n = outputs[b].shape()[outputs[b].shape().len() - 2];
    for i in [s, l] {
        let shape = squeeze(outputs[i].shape());
        if !(shape == [n] || (n == 1 && shape.is_empty()) || (n == 0 && shape == [0])) {
            return Err(format!("{} boxes but an output of shape {:?} beside them", n, outputs[i].shape()));
        }
    }
    let floats = |t: &TValue| -> Result<Vec<f32>, String> {
        let cast = t.cast_to::<f32>().map_err(|e| format!("{e:#}"))?;
        Ok(cast.as_slice::<f32>().map_err(|e| format!("{e:#}"))?.to_vec())
    };
    let labels: Vec<i64> = {
        let cast = outputs[l].cast_to::<i64>().map_err(|e| format!("{e:#}"))?;
        cast.as_slice::<i64>().map_err(|e| format!("{e:#}"))?.to_vec()
    };
    Ok(BoxesScoresLabels { boxes: floats(&outputs[b])?, scores: floats(&outputs[s])?, labels })
}

/// A detector's layout, read off its graph's outputs: one is a YOLO export, three are
/// boxes/scores/labels.
pub fn layout_of(onnx: &[u8]) -> Result<OutputLayout, String> {
    let proto = std::panic::catch_unwind(|| tract_onnx::onnx().proto_model_for_read(&mut Cursor::new(onnx)))
        .map_err(|_| "the ONNX parser panicked on these bytes".to_string())?
        .map_err(|e| format!("the model does not load: {e:#}"))?;
    let outputs = proto.graph.as_ref().map(|g| g.output.len()).unwrap_or(0);
    match outputs {
        1 => Ok(OutputLayout::Yolo),
        3 => Ok(OutputLayout::BoxesScoresLabels),
        n => Err(format!("the model has {n} outputs; a YOLO export has one, a boxes/scores/labels graph three")),
    }
}
