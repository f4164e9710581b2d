//! A detector on tract: an image in, boxes in the image's own pixels out.
//!
//! The image goes through the card's preprocessing (letterboxed, as Ultralytics feeds YOLO, when
//! the card says so), the raw output is decoded in the card's layout ([`crate::detect`]), the
//! overlaps are suppressed per class, and the boxes are taken back to the original image and
//! clipped to it, as Ultralytics' `scale_boxes` does.

use std::io::Cursor;

use cvops_core::annotation::PixelBox;
use cvops_core::preprocess::{preprocess_placed, InputSpec, Placement};
use cvops_core::task::{DetectionSettings, OutputLayout};
use image::DynamicImage;
use tract_onnx::prelude::*;

use crate::detect::{decode_boxes_scores_labels, decode_yolo, nms, RawDetection};
use crate::{optimised_plan, ModelError, Plan};

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
        if layout == OutputLayout::Logits {
            return Err(ModelError::Unloadable("a detector's output layout is yolo or boxes_scores_labels, not logits".into()));
        }
        let plan = optimised_plan(onnx, spec)?;
        let detector = Self { plan, spec: spec.clone(), classes, layout };
        // Nothing passes a threshold above 1; the decode still checks every shape.
        detector.raw(&vec![0.0; spec.len()], 2.0)?;
        Ok(detector)
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
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
        Ok(self.candidates(image, settings.score_threshold)?.finish(settings))
    }

    /// One run of the model on `image`: the candidates scoring at least `score_threshold`, to be
    /// finished at that threshold or any higher one (the endpoint answers a request at its own
    /// and monitors at the version's, from one run).
    pub fn candidates(&self, image: &DynamicImage, score_threshold: f32) -> Result<Candidates, ModelError> {
        let (input, placement) = preprocess_placed(image, &self.spec);
        let raw = self.raw(&input, score_threshold)?;
        Ok(Candidates::new(raw, placement, image.width(), image.height()))
    }
}

/// A detector's candidates for one image, before NMS.
#[derive(Debug, Clone)]
pub struct Candidates {
    raw: Vec<RawDetection>,
    placement: Placement,
    width: f64,
    height: f64,
}

impl Candidates {
    /// Candidates decoded elsewhere (`crate::detect`) for an image of `width` x `height` pixels
    /// that landed in the input at `placement`.
    pub fn new(raw: Vec<RawDetection>, placement: Placement, width: u32, height: u32) -> Self {
        Self { raw, placement, width: f64::from(width), height: f64::from(height) }
    }

    /// Those at or over the settings' score threshold, suppressed, mapped back to the image and
    /// clipped to it; a box that clipping leaves empty (it lay in the letterbox's padding) is
    /// dropped.
    pub fn finish(&self, settings: &DetectionSettings) -> Vec<Detected> {
        let kept: Vec<RawDetection> = self.raw.iter().filter(|d| d.score >= settings.score_threshold).copied().collect();
        let kept = nms(kept, f64::from(settings.iou_threshold), settings.max_detections as usize);
        let (w, h) = (self.width, self.height);
        kept.into_iter()
            .filter_map(|d| {
                let b = self.placement.to_original(d.bbox);
                let (x1, y1) = (b.x.clamp(0.0, w), b.y.clamp(0.0, h));
                let (x2, y2) = ((b.x + b.width).clamp(0.0, w), (b.y + b.height).clamp(0.0, h));
                let bbox = PixelBox { x: x1, y: y1, width: x2 - x1, height: y2 - y1 };
                (bbox.width > 0.0 && bbox.height > 0.0).then_some(Detected { class: d.class, score: d.score, bbox })
            })
            .collect()
    }
}

/// The three outputs of the boxes/scores/labels layout, flattened.
struct BoxesScoresLabels {
    boxes: Vec<f32>,
    scores: Vec<f32>,
    labels: Vec<i64>,
}

/// The three outputs of the boxes/scores/labels layout, found by shape and type: the boxes are
/// four values per box (a shape ending in 4), the scores and the labels one value per box, and
/// the labels are the integer one (or, when all three are floats, the one holding only whole
/// numbers). Every assignment of the three is tried, so the graph's output order does not
/// matter, and a shape that fits two ways (4 boxes: scores of `[1, 4]`) is told apart by the
/// boxes' count.
fn boxes_scores_labels(outputs: &[TValue]) -> Result<BoxesScoresLabels, String> {
    let [a, b, c] = outputs else {
        return Err(format!("the boxes/scores/labels layout has three outputs; this model has {}", outputs.len()));
    };
    let shapes = || outputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>();
    let is_int = |t: &TValue| t.datum_type().is_integer();
    let whole = |t: &TValue| {
        t.cast_to::<f32>().map(|v| v.as_slice::<f32>().is_ok_and(|v| v.iter().all(|x| x.fract() == 0.0))).unwrap_or(false)
    };
    let fits = |boxes: &TValue, scores: &TValue, labels: &TValue| {
        let n = scores.len();
        boxes.shape().last() == Some(&4)
            && boxes.len() == 4 * n
            && labels.len() == n
            && !is_int(boxes)
            && !is_int(scores)
            && (is_int(labels) || whole(labels))
    };
    let orders = [(a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)];
    let mut fitting = orders.iter().filter(|(boxes, scores, labels)| fits(boxes, scores, labels));
    // An integer labels output settles it; between floats, prefer the assignment whose labels
    // are integers by type, then the first.
    let (boxes, scores, labels) = match fitting.clone().find(|(_, _, labels)| is_int(labels)).or_else(|| fitting.next()) {
        Some(order) => *order,
        None => return Err(format!("no output is [N, 4] boxes beside [N] scores and [N] labels; the shapes are {:?}", shapes())),
    };
    let floats = |t: &TValue| -> Result<Vec<f32>, String> {
        let cast = t.cast_to::<f32>().map_err(|e| format!("{e:#}"))?;
        Ok(cast.as_slice::<f32>().map_err(|e| format!("{e:#}"))?.to_vec())
    };
    let labels: Vec<i64> = {
        let cast = labels.cast_to::<i64>().map_err(|e| format!("{e:#}"))?;
        cast.as_slice::<i64>().map_err(|e| format!("{e:#}"))?.to_vec()
    };
    Ok(BoxesScoresLabels { boxes: floats(boxes)?, scores: floats(scores)?, labels })
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
