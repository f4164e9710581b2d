//! Training the reference detector: which cells answer for which box, the loss, augmentation
//! that moves the boxes with the pixels, and validation by COCO mAP@0.5.
//!
//! - Assignment (FCOS's centre sampling): a cell is positive for a box when the cell's centre lies
//!   inside the box and within 1.5 strides of the box's centre, and the cell holding the box's
//!   centre always is; a cell claimed by two boxes answers for the smaller.
//! - Loss: quality focal loss (GFL) on every cell's class scores, whose target at a positive cell
//!   is the IoU of its box with the true one (so a score ranks boxes by fit, as mAP does), plus
//!   GIoU loss on the positive cells' boxes, both divided by the number of positive cells.
//! - The best epoch is the one with the best mAP@0.5 on the val split, as the gate judges.

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use cvops_core::annotation::{BoundingBox, PixelBox};
use cvops_core::detect::{decode_yolo, nms};
use cvops_core::metrics::detection::{Detection, DetectionEvaluation, GroundTruth};
use cvops_core::model_card::EpochRecord;
use cvops_core::preprocess::{normalise_into, InputSpec};
use cvops_core::task::DetectionSettings;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::config::Hyperparameters;
use crate::data::Samples;
use crate::detector::{distances_in_pixels, Detector, DetectorShape, STRIDE};
use crate::model::trainable;
use crate::train::{augment, cosine_rate, BestEpoch};

const PREDICT_BATCH: usize = 64;
/// How far from a box's centre (in strides) a cell may be and still answer for it.
const CENTRE_RADIUS: f32 = 1.5;
/// The GIoU loss's weight against the class loss.
const BOX_WEIGHT: f64 = 2.0;
/// A box shifted partly out of the picture is kept when this share of it is still inside.
const MIN_VISIBLE: f32 = 0.4;
/// The score a box must reach to be evaluated (as register-model evaluates).
const EVALUATION_SCORE_THRESHOLD: f32 = 0.001;

#[derive(Debug, Clone)]
pub struct DetectOutcome {
    pub history: Vec<EpochRecord>,
    pub best_epoch: u32,
    pub val_map50: f64,
    pub images_per_second: f64,
}

/// A box in input pixels, corners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Corners {
    pub class: u32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Corners {
    /// A normalised box on a `side` x `side` input (the trainer squashes images, so each axis
    /// scales on its own).
    pub fn of(b: &BoundingBox, side: usize) -> Self {
        let s = side as f64;
        Self {
            class: b.class,
            x1: ((b.cx - b.w / 2.0) * s) as f32,
            y1: ((b.cy - b.h / 2.0) * s) as f32,
            x2: ((b.cx + b.w / 2.0) * s) as f32,
            y2: ((b.cy + b.h / 2.0) * s) as f32,
        }
    }

    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// Moved by (dx, dy) and cut to the picture; `None` when too little of it is left.
    fn shifted(&self, dx: f32, dy: f32, flip: bool, side: f32) -> Option<Self> {
        let (x1, x2) = if flip { (side - self.x2, side - self.x1) } else { (self.x1, self.x2) };
        let moved = Self { class: self.class, x1: x1 + dx, y1: self.y1 + dy, x2: x2 + dx, y2: self.y2 + dy };
        let cut = Self {
            class: self.class,
            x1: moved.x1.clamp(0.0, side),
            y1: moved.y1.clamp(0.0, side),
            x2: moved.x2.clamp(0.0, side),
            y2: moved.y2.clamp(0.0, side),
        };
        (cut.x2 - cut.x1 >= 2.0 && cut.y2 - cut.y1 >= 2.0 && cut.area() >= MIN_VISIBLE * moved.area()).then_some(cut)
    }
}

/// A batch's targets: class targets laid out as the class head's output `[n, classes, g, g]`,
/// and the positive cells (index into `n * g * g`, row-major per image) with their distances
/// (left, top, right, bottom) in input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub classes: Vec<f32>,
    pub positives: Vec<u32>,
    /// Per positive cell, where its class target is in `classes`.
    pub class_slots: Vec<Option<usize>>,
    pub distances: Vec<f32>,
}

/// Assigns the boxes of each image (in input pixels) to the cells of a `g` x `g` grid.
pub fn assign(images: &[Vec<Corners>], classes: usize, g: usize) -> Targets {
    let cells = g * g;
    let mut targets = Targets {
        classes: vec![0.0; images.len() * classes * cells],
        positives: Vec::new(),
        class_slots: Vec::new(),
        distances: Vec::new(),
    };
    let s = STRIDE as f32;
    for (i, boxes) in images.iter().enumerate() {
        for cell in 0..cells {
            let (gx, gy) = (cell % g, cell / g);
            let (ax, ay) = ((gx as f32 + 0.5) * s, (gy as f32 + 0.5) * s);
            let owner = boxes
                .iter()
                .filter(|b| {
                    let (cx, cy) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
                    let holds_centre = (cx / s).floor() as usize == gx && (cy / s).floor() as usize == gy;
                    let near = (ax - cx).abs() <= CENTRE_RADIUS * s && (ay - cy).abs() <= CENTRE_RADIUS * s;
                    let inside = ax > b.x1 && ax < b.x2 && ay > b.y1 && ay < b.y2;
                    holds_centre || (near && inside)
                })
                .min_by(|a, b| a.area().total_cmp(&b.area()));
            let Some(b) = owner else { continue };
            let slot = ((b.class as usize) < classes).then_some((i * classes + b.class as usize) * cells + cell);
            if let Some(slot) = slot {
                targets.classes[slot] = 1.0;
            }
            targets.class_slots.push(slot);
            targets.positives.push((i * cells + cell) as u32);
            // The centre cell of a box narrower than a cell may lie outside it: a small positive
            // distance keeps the logarithm the head predicts defined.
            for d in [ax - b.x1, ay - b.y1, b.x2 - ax, b.y2 - ay] {
                targets.distances.push(d.max(0.5));
            }
        }
    }
    targets
}

/// Quality focal loss (GFL), summed: binary cross-entropy against a soft target `y` (the IoU of
/// the cell's box for its class, 0 elsewhere) weighted by `|y - p|^2`, so a score learns how
/// well its box fits and ranks boxes as mAP does.
fn quality_focal_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::sigmoid(logits)?;
    let ce = ((logits.relu()? - (logits * targets)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    ((&p - targets)?.sqr()? * ce)?.sum_all()
}

/// IoU and GIoU `[p, 1]` between predicted and target distances `[p, 4]` from the same cell centres.
fn ious(predicted: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor)> {
    let side = |t: &Tensor, i: usize| t.narrow(1, i, 1);
    let (pl, pt, pr, pb) = (side(predicted, 0)?, side(predicted, 1)?, side(predicted, 2)?, side(predicted, 3)?);
    let (tl, tt, tr, tb) = (side(target, 0)?, side(target, 1)?, side(target, 2)?, side(target, 3)?);
    let area_p = ((&pl + &pr)? * (&pt + &pb)?)?;
    let area_t = ((&tl + &tr)? * (&tt + &tb)?)?;
    let inter = ((pl.minimum(&tl)? + pr.minimum(&tr)?)? * (pt.minimum(&tt)? + pb.minimum(&tb)?)?)?;
    let union = ((area_p + area_t)? - &inter)?;
    let enclosing = ((pl.maximum(&tl)? + pr.maximum(&tr)?)? * (pt.maximum(&tt)? + pb.maximum(&tb)?)?)?;
    let iou = (&inter / (&union + 1e-6)?)?;
    let giou = (&iou - ((&enclosing - &union)? / (&enclosing + 1e-6)?)?)?;
    Ok((iou, giou))
}

/// GIoU loss, summed.
#[cfg(test)]
fn giou_loss(predicted: &Tensor, target: &Tensor) -> Result<Tensor> {
    ious(predicted, target)?.1.affine(-1.0, 1.0)?.sum_all()
}

/// The batch's loss: `(total, class part, mean GIoU loss before its weight)`.
fn loss(net: &Detector, x: &Tensor, targets: &Targets) -> Result<(Tensor, f32, f32)> {
    let raw = net.forward_t(x, true)?;
    let device = x.device();
    let positives = targets.positives.len().max(1) as f64;
    let mut class_values = targets.classes.clone();
    let box_loss = if targets.positives.is_empty() {
        None
    } else {
        let (n, _, g, _) = raw.distances.dims4()?;
        let all = distances_in_pixels(&raw.distances)?.permute((0, 2, 3, 1))?.reshape((n * g * g, 4))?;
        let index = Tensor::from_slice(&targets.positives, targets.positives.len(), device)?;
        let predicted = all.index_select(&index, 0)?;
        let target = Tensor::from_slice(&targets.distances, (targets.positives.len(), 4), device)?;
        let (iou, giou) = ious(&predicted, &target)?;
        // A positive cell's class target is how well its box fits now (detached).
        let fit = iou.detach().flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        for (slot, fit) in targets.class_slots.iter().zip(fit) {
            if let Some(slot) = slot {
                class_values[*slot] = fit.clamp(0.0, 1.0);
            }
        }
        Some((giou.affine(-1.0, 1.0)?.sum_all()? / positives)?)
    };
    let class_targets = Tensor::from_vec(class_values, raw.class_logits.shape(), device)?;
    let class_loss = quality_focal_loss(&raw.class_logits, &class_targets)?;
    let class_loss = (class_loss / positives)?;
    let total = match box_loss {
        Some(box_loss) => (&class_loss + (box_loss * BOX_WEIGHT)?)?,
        None => class_loss.clone(),
    };
    let (class_part, all) = (class_loss.to_scalar::<f32>()?, total.to_scalar::<f32>()?);
    Ok((total, class_part, (all - class_part) / BOX_WEIGHT as f32))
}

/// The images at `indices` as a batch, with their boxes; shifted (and flipped) when `rng` is given.
fn batch(
    samples: &Samples,
    indices: &[usize],
    spec: &InputSpec,
    h: &Hyperparameters,
    rng: Option<&mut StdRng>,
    device: &Device,
) -> Result<(Tensor, Vec<Vec<Corners>>)> {
    let per = spec.len();
    let side = spec.width as usize;
    let mut values = Vec::with_capacity(indices.len() * per);
    let mut boxes = Vec::with_capacity(indices.len());
    let mut moved = Vec::with_capacity(per);
    let original = |i: usize| samples.boxes[i].iter().map(|b| Corners::of(b, side)).collect::<Vec<_>>();
    match rng {
        Some(rng) => {
            // Up to an eighth of the side: digits move to every part of the grid.
            let s = (side / 8).max(h.shift as usize) as i32;
            for &i in indices {
                let (dx, dy) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
                let flip = h.flip && rng.random_bool(0.5);
                augment(&samples.planes[i * per..(i + 1) * per], side, dx, dy, flip, &mut moved);
                normalise_into(&moved, spec, &mut values);
                // `augment` reads the source at (x + dx, y + dy), or (side - 1 - x + dx, y + dy)
                // flipped: the picture moves by (-dx, -dy), or by (+dx, -dy) after the mirror.
                let moved_x = if flip { dx } else { -dx } as f32;
                boxes.push(original(i).iter().filter_map(|b| b.shifted(moved_x, -dy as f32, flip, side as f32)).collect());
            }
        }
        None => {
            for &i in indices {
                normalise_into(&samples.planes[i * per..(i + 1) * per], spec, &mut values);
                boxes.push(original(i));
            }
        }
    }
    Ok((Tensor::from_vec(values, spec.shape(indices.len()).as_slice(), device)?, boxes))
}

/// Every sample's boxes after NMS at `settings` (scores down to the evaluation threshold), in
/// input pixels: `(image index, class, score, box)`.
pub fn detect_all(
    net: &Detector,
    samples: &Samples,
    spec: &InputSpec,
    h: &Hyperparameters,
    settings: &DetectionSettings,
    device: &Device,
) -> Result<Vec<Vec<(u32, f32, PixelBox)>>> {
    let all: Vec<usize> = (0..samples.len()).collect();
    let classes = net.shape.classes;
    let (rows, candidates) = (4 + classes, net.shape.candidates());
    let mut out = Vec::with_capacity(samples.len());
    for chunk in all.chunks(PREDICT_BATCH) {
        let (x, _) = batch(samples, chunk, spec, h, None, device)?;
        let decoded = net.decode(&net.forward_t(&x, false)?)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        for image in decoded.chunks_exact(rows * candidates) {
            let raw = decode_yolo(image, &[1, rows, candidates], classes, EVALUATION_SCORE_THRESHOLD)
                .map_err(candle_core::Error::Msg)?;
            let kept = nms(raw, f64::from(settings.iou_threshold), settings.max_detections as usize);
            out.push(kept.into_iter().map(|d| (d.class, d.score, d.bbox)).collect());
        }
    }
    Ok(out)
}

/// The samples' boxes in the pixels of a `side` x `side` input, image ids counted from 1.
pub fn ground_truth(samples: &Samples, side: usize) -> Vec<GroundTruth> {
    let side = side as f64;
    let mut out = Vec::new();
    for (i, boxes) in samples.boxes.iter().enumerate() {
        for b in boxes {
            let bbox =
                PixelBox { x: (b.cx - b.w / 2.0) * side, y: (b.cy - b.h / 2.0) * side, width: b.w * side, height: b.h * side };
            out.push(GroundTruth { image: i as u64 + 1, class: b.class, bbox, crowd: false });
        }
    }
    out
}

/// COCO evaluation of the network on `samples`, in input pixels (a squashed image's boxes scale
/// per axis, which leaves every IoU as it is in the original's pixels).
pub fn evaluate(
    net: &Detector,
    samples: &Samples,
    spec: &InputSpec,
    h: &Hyperparameters,
    settings: &DetectionSettings,
    labels: &[String],
    device: &Device,
) -> Result<DetectionEvaluation> {
    let found = detect_all(net, samples, spec, h, settings, device)?;
    let images: Vec<u64> = (1..=samples.len() as u64).collect();
    let truth = ground_truth(samples, spec.width as usize);
    let detections: Vec<Detection> = found
        .iter()
        .enumerate()
        .flat_map(|(i, boxes)| {
            boxes.iter().map(move |&(class, score, bbox)| Detection { image: i as u64 + 1, class, bbox, score: f64::from(score) })
        })
        .collect();
    Ok(DetectionEvaluation::with_served(&images, &truth, &detections, labels.to_vec(), f64::from(settings.score_threshold)))
}

/// Trains a fresh detector on `train`, keeping the epoch with the best val mAP@0.5.
#[allow(clippy::too_many_arguments)]
pub fn train(
    shape: DetectorShape,
    train: &Samples,
    val: &Samples,
    spec: &InputSpec,
    h: &Hyperparameters,
    settings: &DetectionSettings,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(Detector, VarMap, DetectOutcome)> {
    let vars = VarMap::new();
    let net = Detector::new(shape, &vars, device)?;
    let params = ParamsAdamW { lr: h.learning_rate, weight_decay: h.weight_decay, ..Default::default() };
    let mut optimiser = AdamW::new(trainable(&vars), params)?;
    let mut rng = StdRng::seed_from_u64(h.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (g, classes) = (net.shape.grid(), net.shape.classes);
    let (mut history, mut best) = (Vec::new(), BestEpoch::new());
    let (mut trained_images, mut training_seconds) = (0usize, 0.0f64);
    let labels: Vec<String> = (0..classes).map(|c| c.to_string()).collect();

    for epoch in 1..=h.epochs {
        let started = Instant::now();
        optimiser.set_learning_rate(cosine_rate(h, epoch));
        order.shuffle(&mut rng);
        let (mut loss_sum, mut box_sum, mut seen) = (0.0f64, 0.0f64, 0usize);
        for indices in order.chunks(h.batch_size) {
            if indices.len() < 2 {
                continue;
            }
            let (x, boxes) = batch(train, indices, spec, h, Some(&mut rng), device)?;
            let targets = assign(&boxes, classes, g);
            let (total, _, box_part) = loss(&net, &x, &targets)?;
            optimiser.backward_step(&total)?;
            loss_sum += total.to_scalar::<f32>()? as f64 * indices.len() as f64;
            box_sum += box_part as f64 * indices.len() as f64;
            seen += indices.len();
        }
        let train_seconds = started.elapsed().as_secs_f64();
        trained_images += seen;
        training_seconds += train_seconds;
        let val_map50 = evaluate(&net, val, spec, h, settings, &labels, device)?.map50;
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: None,
            val_accuracy: None,
            box_loss: Some(box_sum / seen.max(1) as f64),
            val_map50: Some(val_map50),
            seconds: started.elapsed().as_secs_f64(),
        };
        on_epoch(&record);
        history.push(record);
        if best.offer(epoch, val_map50, &vars, h.patience)? {
            break;
        }
    }
    best.restore(&vars, device)?;
    let outcome = DetectOutcome {
        history,
        best_epoch: best.epoch,
        val_map50: best.score.max(0.0),
        images_per_second: trained_images as f64 / training_seconds.max(1e-9),
    };
    Ok((net, vars, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corners(class: u32, x1: f32, y1: f32, x2: f32, y2: f32) -> Corners {
        Corners { class, x1, y1, x2, y2 }
    }

    #[test]
    fn a_box_is_answered_for_by_the_cells_near_its_centre_and_the_smaller_box_wins_a_shared_cell() {
        // A 24x24 grid of 8-pixel cells is 3x3; one box covers the whole picture, a small one
        // sits in the middle cell.
        let images = vec![vec![corners(0, 0.0, 0.0, 24.0, 24.0), corners(1, 9.0, 9.0, 15.0, 15.0)]];
        let t = assign(&images, 2, 3);
        // Every cell's centre is inside the big box and within 1.5 strides of its centre.
        assert_eq!(t.positives, (0..9).collect::<Vec<u32>>());
        let class_of = |cell: usize| (0..2).find(|&c| t.classes[c * 9 + cell] == 1.0);
        assert_eq!(class_of(4), Some(1), "the middle cell answers for the small box");
        assert_eq!(class_of(0), Some(0));
        // The middle cell's distances are to the small box: centre (12, 12).
        assert_eq!(&t.distances[4 * 4..4 * 4 + 4], &[3.0, 3.0, 3.0, 3.0]);
        // A cell far from a box's centre is not positive even inside it.
        let far = assign(&[vec![corners(0, 0.0, 0.0, 80.0, 8.0)]], 1, 10);
        assert!(far.positives.iter().all(|&cell| (3..=6).contains(&cell)), "{:?}", far.positives);
    }

    #[test]
    fn a_shift_moves_boxes_with_the_pixels_and_drops_what_leaves_the_picture() {
        let b = corners(0, 10.0, 10.0, 20.0, 20.0);
        assert_eq!(b.shifted(5.0, -2.0, false, 32.0), Some(corners(0, 15.0, 8.0, 25.0, 18.0)));
        assert_eq!(b.shifted(0.0, 0.0, true, 32.0), Some(corners(0, 12.0, 10.0, 22.0, 20.0)));
        assert_eq!(b.shifted(-17.0, 0.0, false, 32.0), None, "only 3 of its 10 columns are left");
    }

    #[test]
    fn giou_is_zero_for_the_same_box_and_grows_as_boxes_part() {
        let device = Device::Cpu;
        let t = Tensor::new(&[[4f32, 4.0, 4.0, 4.0]], &device).unwrap();
        let same = giou_loss(&t, &t).unwrap().to_scalar::<f32>().unwrap();
        let smaller =
            giou_loss(&Tensor::new(&[[2f32, 2.0, 2.0, 2.0]], &device).unwrap(), &t).unwrap().to_scalar::<f32>().unwrap();
        assert!(same.abs() < 1e-5, "{same}");
        assert!((smaller - 0.75).abs() < 1e-4, "a quarter of the area inside: 1 - 0.25, got {smaller}");
    }
}
