//! COCO's evaluation of detections, as pycocotools' `COCOeval` computes it for boxes: per image and
//! class, detections (best score first, at most 100) are matched greedily to ground-truth boxes
//! at each IoU threshold from 0.50 to 0.95; per class, precision is read at 101 recall points
//! after making it monotone; mAP is the mean over classes with ground truth (and thresholds).
//! Crowd regions (`crowd`) are matched without being used up and count neither way, as in COCO.
//! A test holds the figures to pycocotools' on the same boxes (difference at most 0.001).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::annotation::PixelBox;

/// The detections per image that count, as COCO's `maxDets` 100.
pub const MAX_DETECTIONS: usize = 100;
/// IoU thresholds 0.50, 0.55, ... 0.95.
pub const IOU_THRESHOLDS: usize = 10;
const RECALL_POINTS: usize = 101;

/// A ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub image: u64,
    pub class: u32,
    pub bbox: PixelBox,
    /// A crowd region: a detection on it is neither right nor wrong.
    #[serde(default)]
    pub crowd: bool,
}

/// A predicted box with its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub image: u64,
    pub class: u32,
    pub bbox: PixelBox,
    pub score: f64,
}

/// One class's average precision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassAp {
    /// Averaged over the IoU thresholds 0.50:0.95.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    /// Ground-truth boxes (crowds left out).
    pub support: u64,
}

/// mAP over the classes that have ground truth, and AP per class (by index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionEvaluation {
    pub images: u64,
    /// mAP@0.5:0.95, COCO's headline figure.
    pub map: f64,
    pub map50: f64,
    pub map75: f64,
    pub per_class: BTreeMap<u32, ClassAp>,
    /// The class names, in index order (filled by whoever knows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Precision and recall at IoU 0.5 of the boxes the endpoint would serve: those scoring at
    /// least `score_threshold` (see [`DetectionEvaluation::with_served`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedPrecision>,
}

/// Precision and recall at one score threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServedPrecision {
    pub score_threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

impl DetectionEvaluation {
    /// Evaluates, names the classes, and adds precision and recall at the served threshold.
    pub fn with_served(
        images: &[u64],
        ground_truth: &[GroundTruth],
        detections: &[Detection],
        labels: Vec<String>,
        score_threshold: f64,
    ) -> Self {
        let mut e = evaluate(images, ground_truth, detections);
        let (precision, recall) = precision_recall_at(images, ground_truth, detections, score_threshold);
        e.labels = labels;
        e.served = Some(ServedPrecision { score_threshold, precision, recall });
        e
    }
}

/// The IoU thresholds as numpy's `linspace(.5, .95, 10)` makes them.
fn iou_thresholds() -> [f64; IOU_THRESHOLDS] {
    let step = (0.95 - 0.5) / (IOU_THRESHOLDS - 1) as f64;
    let mut out = [0.0; IOU_THRESHOLDS];
    for (i, t) in out.iter_mut().enumerate() {
        *t = 0.5 + i as f64 * step;
    }
    out[IOU_THRESHOLDS - 1] = 0.95;
    out
}

/// Intersection over union of two boxes; against a crowd region, over the detection's own area.
pub fn iou(d: &PixelBox, g: &PixelBox, crowd: bool) -> f64 {
    let w = (d.x + d.width).min(g.x + g.width) - d.x.max(g.x);
    let h = (d.y + d.height).min(g.y + g.height) - d.y.max(g.y);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let union = if crowd { d.width * d.height } else { d.width * d.height + g.width * g.height - inter };
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// The matches of one image and class: per threshold, whether each detection (best first) is a
/// true positive, and whether it is ignored (matched to a crowd).
struct ImageMatches {
    scores: Vec<f64>,
    matched: Vec<[bool; IOU_THRESHOLDS]>,
    ignored: Vec<[bool; IOU_THRESHOLDS]>,
}

fn match_image(gts: &[&GroundTruth], dts: &mut Vec<&Detection>, thresholds: &[f64; IOU_THRESHOLDS]) -> ImageMatches {
    // Best score first, stable (numpy's mergesort); non-crowd ground truth first, stable.
    dts.sort_by(|a, b| b.score.total_cmp(&a.score));
    dts.truncate(MAX_DETECTIONS);
    let mut gts: Vec<&GroundTruth> = gts.to_vec();
    gts.sort_by_key(|g| g.crowd);
    let ious: Vec<Vec<f64>> = dts.iter().map(|d| gts.iter().map(|g| iou(&d.bbox, &g.bbox, g.crowd)).collect()).collect();
    let mut matched = vec![[false; IOU_THRESHOLDS]; dts.len()];
    let mut ignored = vec![[false; IOU_THRESHOLDS]; dts.len()];
    for (t, &threshold) in thresholds.iter().enumerate() {
        let mut taken = vec![false; gts.len()];
        for (di, row) in ious.iter().enumerate() {
            let mut best = threshold.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for (gi, g) in gts.iter().enumerate() {
                if taken[gi] && !g.crowd {
                    continue;
                }
                // Ground truth is sorted: once a real box matched, crowds cannot do better.
                if m.is_some_and(|m| !gts[m].crowd) && g.crowd {
                    break;
                }
                if row[gi] < best {
                    continue;
                }
                best = row[gi];
                m = Some(gi);
            }
            if let Some(m) = m {
                matched[di][t] = true;
                ignored[di][t] = gts[m].crowd;
                taken[m] = true;
            }
        }
    }
    ImageMatches { scores: dts.iter().map(|d| d.score).collect(), matched, ignored }
}

/// Ground truth and detections on `images`, grouped by (class, image): what COCO matches within.
#[allow(clippy::type_complexity)]
fn by_class_and_image<'a>(
    images: &std::collections::BTreeSet<u64>,
    ground_truth: &'a [GroundTruth],
    detections: impl Iterator<Item = &'a Detection>,
) -> (BTreeMap<(u32, u64), Vec<&'a GroundTruth>>, BTreeMap<(u32, u64), Vec<&'a Detection>>) {
    let mut gt_by: BTreeMap<(u32, u64), Vec<&GroundTruth>> = BTreeMap::new();
    for g in ground_truth.iter().filter(|g| images.contains(&g.image)) {
        gt_by.entry((g.class, g.image)).or_default().push(g);
    }
    let mut dt_by: BTreeMap<(u32, u64), Vec<&Detection>> = BTreeMap::new();
    for d in detections.filter(|d| images.contains(&d.image)) {
        dt_by.entry((d.class, d.image)).or_default().push(d);
    }
    (gt_by, dt_by)
}

/// Evaluates `detections` against `ground_truth` over `images` (detections on other images are
/// left out, as COCO evaluates the ground truth's images only).
pub fn evaluate(images: &[u64], ground_truth: &[GroundTruth], detections: &[Detection]) -> DetectionEvaluation {
    let thresholds = iou_thresholds();
    let image_set: std::collections::BTreeSet<u64> = images.iter().copied().collect();
    let (gt_by, dt_by) = by_class_and_image(&image_set, ground_truth, detections.iter());
    let classes: std::collections::BTreeSet<u32> = gt_by.keys().chain(dt_by.keys()).map(|(c, _)| *c).collect();
    let mut per_class = BTreeMap::new();
    for class in classes {
        let support = gt_by.range((class, 0)..=(class, u64::MAX)).flat_map(|(_, g)| g.iter()).filter(|g| !g.crowd).count();
        if support == 0 {
            continue; // COCO leaves a class without ground truth out of the mean.
        }
        // Every detection of the class, image by image in id order, each image's best first.
        let (mut scores, mut matched, mut ignored) = (Vec::new(), Vec::new(), Vec::new());
        for &image in &image_set {
            let gts = gt_by.get(&(class, image)).map(Vec::as_slice).unwrap_or_default();
            let mut dts = dt_by.get(&(class, image)).cloned().unwrap_or_default();
            let m = match_image(gts, &mut dts, &thresholds);
            scores.extend(m.scores);
            matched.extend(m.matched);
            ignored.extend(m.ignored);
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut aps = [0.0; IOU_THRESHOLDS];
        for (t, ap) in aps.iter_mut().enumerate() {
            *ap = average_precision(&order, &matched, &ignored, t, support);
        }
        per_class.insert(
            class,
            ClassAp { ap: aps.iter().sum::<f64>() / IOU_THRESHOLDS as f64, ap50: aps[0], ap75: aps[5], support: support as u64 },
        );
    }
    let mean = |f: fn(&ClassAp) -> f64| {
        if per_class.is_empty() {
            0.0
        } else {
            per_class.values().map(f).sum::<f64>() / per_class.len() as f64
        }
    };
    DetectionEvaluation {
        images: image_set.len() as u64,
        map: mean(|c| c.ap),
        map50: mean(|c| c.ap50),
        map75: mean(|c| c.ap75),
        per_class,
        labels: Vec::new(),
        served: None,
    }
}

/// COCO's 101-point interpolated average precision at threshold `t`.
fn average_precision(
    order: &[usize],
    matched: &[[bool; IOU_THRESHOLDS]],
    ignored: &[[bool; IOU_THRESHOLDS]],
    t: usize,
    support: usize,
) -> f64 {
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let (mut recall, mut precision) = (Vec::with_capacity(order.len()), Vec::with_capacity(order.len()));
    for &i in order {
        if ignored[i][t] {
            // Neither right nor wrong, but still a point on the curve (numpy's cumsum keeps it).
        } else if matched[i][t] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        recall.push(tp / support as f64);
        precision.push(tp / (tp + fp + f64::EPSILON));
    }
    for i in (1..precision.len()).rev() {
        if precision[i] > precision[i - 1] {
            precision[i - 1] = precision[i];
        }
    }
    let mut sum = 0.0;
    for r in 0..RECALL_POINTS {
        let point = r as f64 * 0.01;
        // The first detection whose recall reaches the point (numpy's searchsorted, side left).
        let index = recall.partition_point(|&value| value < point);
        match precision.get(index) {
            Some(p) => sum += p,
            None => break,
        }
    }
    sum / RECALL_POINTS as f64
}

/// Precision and recall at IoU 0.5 of the detections scoring at least `score_threshold`: what
/// the endpoint serves at that threshold.
pub fn precision_recall_at(
    images: &[u64],
    ground_truth: &[GroundTruth],
    detections: &[Detection],
    score_threshold: f64,
) -> (f64, f64) {
    let thresholds = iou_thresholds();
    let image_set: std::collections::BTreeSet<u64> = images.iter().copied().collect();
    let kept = detections.iter().filter(|d| d.score >= score_threshold);
    let (gt_by, dt_by) = by_class_and_image(&image_set, ground_truth, kept);
    let (mut tp, mut fp) = (0u64, 0u64);
    let support = gt_by.values().flatten().filter(|g| !g.crowd).count() as u64;
    let keys: std::collections::BTreeSet<(u32, u64)> = gt_by.keys().chain(dt_by.keys()).copied().collect();
    for key in keys {
        let gts = gt_by.get(&key).map(Vec::as_slice).unwrap_or_default();
        let mut dts = dt_by.get(&key).cloned().unwrap_or_default();
        let m = match_image(gts, &mut dts, &thresholds);
        for (hit, ignore) in m.matched.iter().zip(&m.ignored) {
            match (hit[0], ignore[0]) {
                (_, true) => {}
                (true, false) => tp += 1,
                (false, false) => fp += 1,
            }
        }
    }
    let precision = if tp + fp == 0 { 0.0 } else { tp as f64 / (tp + fp) as f64 };
    let recall = if support == 0 { 0.0 } else { tp as f64 / support as f64 };
    (precision, recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f64, y: f64, w: f64, h: f64) -> PixelBox {
        PixelBox { x, y, width: w, height: h }
    }

    #[test]
    fn perfect_detections_score_one_and_misses_lower_recall() {
        let gts = [
            GroundTruth { image: 1, class: 0, bbox: b(10.0, 10.0, 20.0, 20.0), crowd: false },
            GroundTruth { image: 2, class: 0, bbox: b(0.0, 0.0, 10.0, 10.0), crowd: false },
        ];
        let perfect: Vec<Detection> =
            gts.iter().map(|g| Detection { image: g.image, class: 0, bbox: g.bbox, score: 0.9 }).collect();
        let e = evaluate(&[1, 2], &gts, &perfect);
        assert!((e.map - 1.0).abs() < 1e-9 && (e.map50 - 1.0).abs() < 1e-9, "{e:?}");
        let half = evaluate(&[1, 2], &gts, &perfect[..1]);
        // Recall reaches 0.5 only: 51 of 101 points at precision 1.
        assert!((half.map50 - 51.0 / 101.0).abs() < 1e-9, "{half:?}");
        assert_eq!(precision_recall_at(&[1, 2], &gts, &perfect[..1], 0.5), (1.0, 0.5));
    }

    #[test]
    fn iou_is_intersection_over_union() {
        assert!((iou(&b(0.0, 0.0, 10.0, 10.0), &b(5.0, 0.0, 10.0, 10.0), false) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(iou(&b(0.0, 0.0, 10.0, 10.0), &b(20.0, 0.0, 10.0, 10.0), false), 0.0);
        assert!((iou(&b(0.0, 0.0, 10.0, 10.0), &b(0.0, 0.0, 100.0, 100.0), true) - 1.0).abs() < 1e-12);
    }
}
