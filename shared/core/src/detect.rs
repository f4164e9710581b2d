//! A detector's raw output into boxes: the two layouts cvops accepts, and non-maximum
//! suppression.
//!
//! - YOLO (Ultralytics' YOLOv8 and YOLO11 export): one tensor `[1, 4 + classes, N]` (or its
//!   transpose `[1, N, 4 + classes]`), each column a candidate: the box's centre, width and
//!   height in input pixels, then one score per class (already a probability).
//! - boxes/scores/labels: `[N, 4]` corners `x1, y1, x2, y2` in input pixels, `[N]` scores and
//!   `[N]` class indices, as torchvision's detectors and most NMS-exported graphs give them.
//!
//! Boxes stay in input pixels here; `crate::preprocess::Placement::to_original` takes them
//! back to the image's.

use crate::annotation::PixelBox;
use crate::metrics::detection::iou;

/// The most candidates NMS considers, best first (as Ultralytics' `max_nms`): a bound on its
/// quadratic work whatever the score threshold lets through.
pub const MAX_NMS_CANDIDATES: usize = 30_000;

/// One detected box, in the model's input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    pub class: u32,
    pub score: f32,
    pub bbox: PixelBox,
}

/// Decodes the YOLO layout: every candidate whose best class scores at least `score_threshold`.
pub fn decode_yolo(output: &[f32], shape: &[usize], classes: usize, score_threshold: f32) -> Result<Vec<RawDetection>, String> {
    let rows = 4 + classes;
    let (candidates, transposed) = match shape {
        [1, r, n] if *r == rows => (*n, false),
        [1, n, r] if *r == rows => (*n, true),
        _ => return Err(format!("a YOLO output is [1, {rows}, N] for {classes} classes; this one is {shape:?}")),
    };
    if output.len() != rows * candidates {
        return Err(format!("the output holds {} values, not {}", output.len(), rows * candidates));
    }
    let at = |row: usize, i: usize| if transposed { output[i * rows + row] } else { output[row * candidates + i] };
    let mut out = Vec::new();
    for i in 0..candidates {
        let (class, score) =
            (0..classes).map(|c| (c, at(4 + c, i))).fold((0, f32::NEG_INFINITY), |best, c| if c.1 > best.1 { c } else { best });
        if score.is_nan() || score < score_threshold {
            continue;
        }
        let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
        if ![cx, cy, w, h].iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
            continue;
        }
        let bbox = PixelBox { x: f64::from(cx - w / 2.0), y: f64::from(cy - h / 2.0), width: f64::from(w), height: f64::from(h) };
        out.push(RawDetection { class: class as u32, score, bbox });
    }
    Ok(out)
}

/// Decodes the boxes/scores/labels layout.
pub fn decode_boxes_scores_labels(
    boxes: &[f32],
    scores: &[f32],
    labels: &[i64],
    classes: usize,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, String> {
    if boxes.len() != scores.len() * 4 || labels.len() != scores.len() {
        return Err(format!(
            "{} boxes values, {} scores and {} labels do not describe the same boxes",
            boxes.len(),
            scores.len(),
            labels.len()
        ));
    }
    let mut out = Vec::new();
    for (i, (&score, &label)) in scores.iter().zip(labels).enumerate() {
        if score.is_nan() || score < score_threshold || label < 0 || label as usize >= classes {
            continue;
        }
        let [x1, y1, x2, y2] = [boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3]];
        if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) || x2 <= x1 || y2 <= y1 {
            continue;
        }
        let bbox = PixelBox { x: f64::from(x1), y: f64::from(y1), width: f64::from(x2 - x1), height: f64::from(y2 - y1) };
        out.push(RawDetection { class: label as u32, score, bbox });
    }
    Ok(out)
}

/// Non-maximum suppression per class: best score first, a box is kept unless it overlaps a kept
/// box of its class by more than `iou_threshold`; at most `max_detections` are kept.
pub fn nms(mut candidates: Vec<RawDetection>, iou_threshold: f64, max_detections: usize) -> Vec<RawDetection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(MAX_NMS_CANDIDATES);
    let mut kept: Vec<RawDetection> = Vec::new();
    for c in candidates {
        if kept.len() == max_detections {
            break;
        }
        if kept.iter().all(|k| k.class != c.class || iou(&k.bbox, &c.bbox, false) <= iou_threshold) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A [1, 4 + 2, 3] YOLO output: two overlapping boxes of class 0, one of class 1.
    fn yolo_output() -> Vec<f32> {
        let columns =
            [[50.0, 50.0, 20.0, 20.0, 0.9, 0.1], [52.0, 50.0, 20.0, 20.0, 0.8, 0.1], [20.0, 20.0, 10.0, 10.0, 0.05, 0.7]];
        (0..6).flat_map(|row| columns.iter().map(move |c| c[row])).collect()
    }

    #[test]
    fn yolo_columns_become_boxes_and_nms_keeps_the_best_of_each_overlap() {
        let raw = decode_yolo(&yolo_output(), &[1, 6, 3], 2, 0.25).unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!(raw[0].bbox, PixelBox { x: 40.0, y: 40.0, width: 20.0, height: 20.0 });
        let kept = nms(raw, 0.7, 300);
        assert_eq!(kept.iter().map(|d| (d.class, d.score)).collect::<Vec<_>>(), vec![(0, 0.9), (1, 0.7)]);
        assert_eq!(decode_yolo(&yolo_output(), &[1, 6, 3], 2, 0.75).unwrap().len(), 2);
    }

    #[test]
    fn the_transposed_layout_reads_the_same() {
        let columns: Vec<f32> = yolo_output();
        let transposed: Vec<f32> =
            (0..3).flat_map(|i| (0..6).map(move |row| (row, i))).map(|(row, i)| columns[row * 3 + i]).collect();
        assert_eq!(decode_yolo(&transposed, &[1, 3, 6], 2, 0.25).unwrap(), decode_yolo(&columns, &[1, 6, 3], 2, 0.25).unwrap());
        assert!(decode_yolo(&columns, &[1, 7, 3], 2, 0.25).unwrap_err().contains("[1, 6, N]"));
    }

    #[test]
    fn boxes_scores_labels_are_read_and_bad_rows_skipped() {
        let boxes = [10.0, 10.0, 30.0, 40.0, 5.0, 5.0, 4.0, 9.0, 0.0, 0.0, 1.0, 1.0];
        let raw = decode_boxes_scores_labels(&boxes, &[0.9, 0.9, 0.9], &[1, 0, 7], 2, 0.5).unwrap();
        assert_eq!(
            raw,
            vec![RawDetection { class: 1, score: 0.9, bbox: PixelBox { x: 10.0, y: 10.0, width: 20.0, height: 30.0 } }]
        );
    }

    #[test]
    fn nms_keeps_overlapping_boxes_of_other_classes_and_stops_at_the_maximum() {
        let b = PixelBox { x: 0.0, y: 0.0, width: 10.0, height: 10.0 };
        let same_place: Vec<RawDetection> =
            (0..5).map(|c| RawDetection { class: c, score: 0.5 + c as f32 / 10.0, bbox: b }).collect();
        assert_eq!(nms(same_place.clone(), 0.5, 300).len(), 5);
        assert_eq!(nms(same_place, 0.5, 2).iter().map(|d| d.class).collect::<Vec<_>>(), vec![4, 3]);
    }
}
