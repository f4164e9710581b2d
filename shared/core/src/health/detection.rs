//! The health of a detection dataset: its images joined with their label files, the boxes
//! counted by class, size and shape, and every refusal by its code.
//!
//! The join happens here, when read: an image names the label file that holds its boxes
//! (`labels_key`), and the two may have arrived in either order. An accepted image with no
//! label file, or an empty one, is a background image. A label file no image names is counted
//! as `label_without_image` (and joins as soon as its image arrives).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Spread;
use crate::annotation::{AnnotationCode, BoundingBox, ClassNamesRecord, LabelRecord, LabelStatus};
use crate::catalog::{ImageRecord, ImageStatus};
use crate::key::Split;

/// A box with a side under this many pixels: below the finest stride (8) of YOLO-style heads,
/// such a box is hard to learn.
pub const TINY_BOX_SIDE: f64 = 8.0;
/// COCO's size classes: small under 32x32 pixels of area, large over 96x96.
const COCO_SMALL_AREA: f64 = 32.0 * 32.0;
const COCO_LARGE_AREA: f64 = 96.0 * 96.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassCount {
    pub boxes: usize,
    /// Images with at least one box of the class.
    pub images: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SplitCount {
    pub images: usize,
    pub boxes: usize,
}

/// Boxes per COCO size class (by area in pixels).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BoxSizes {
    pub small: usize,
    pub medium: usize,
    pub large: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionHealth {
    pub dataset: String,
    pub task: &'static str,
    /// Accepted images (background images included).
    pub images: usize,
    /// Boxes on accepted images.
    pub boxes: usize,
    /// Accepted images without a box.
    pub background_images: usize,
    /// Per class, by name (`class <i>` for an index `data.yaml` does not name yet).
    pub classes: BTreeMap<String, ClassCount>,
    /// The class names in index order, empty until `data.yaml` is in.
    pub class_names: Vec<String>,
    pub per_split: BTreeMap<Split, SplitCount>,
    pub boxes_per_image: Option<Spread>,
    /// Box area as a fraction of the image's.
    pub box_area: Option<Spread>,
    /// Boxes per tenth of relative size (the square root of the area fraction: 0-0.1, ... 0.9-1).
    pub box_size_histogram: [usize; 10],
    pub box_sizes: BoxSizes,
    /// Width over height, in pixels.
    pub box_aspect: Option<Spread>,
    /// Boxes per half-octave of aspect, from 1:8 (and below) to 8:1 (and above).
    pub box_aspect_histogram: [usize; 12],
    /// Boxes with a side under [`TINY_BOX_SIDE`] pixels.
    pub tiny_boxes: usize,
    pub duplicates: usize,
    pub near_duplicates: usize,
    pub deleted: usize,
    /// Refused images (their [`crate::ReasonCode`]) and annotations (their [`AnnotationCode`]),
    /// by code: the two sets of codes never collide.
    pub rejected: BTreeMap<String, usize>,
    /// Label files read before the dataset's `data.yaml`: their classes are not checked yet.
    pub awaiting_class_names: usize,
}

impl DetectionHealth {
    pub fn of(dataset: &str, images: &[ImageRecord], labels: &[LabelRecord], names: Option<&ClassNamesRecord>) -> Self {
        let class_names: Vec<String> = names.map(|n| n.names.clone()).unwrap_or_default();
        let live_labels: BTreeMap<&str, &LabelRecord> =
            labels.iter().filter(|l| l.status == LabelStatus::Accepted).map(|l| (l.key.as_str(), l)).collect();
        let mut rejected: BTreeMap<String, usize> = BTreeMap::new();
        for image in images.iter().filter(|r| r.status == ImageStatus::Rejected) {
            *rejected.entry(image.reason.map_or("corrupt", |r| r.as_str()).to_owned()).or_default() += 1;
        }
        for label in labels {
            if label.status == LabelStatus::Rejected {
                *rejected.entry(label.reason.unwrap_or(AnnotationCode::MalformedLabelFile).as_str().to_owned()).or_default() += 1;
            }
            if label.status == LabelStatus::Accepted {
                for refused in &label.refused {
                    *rejected.entry(refused.reason.as_str().to_owned()).or_default() += 1;
                }
            }
        }
        let named: BTreeSet<&str> = images
            .iter()
            .filter(|r| matches!(r.status, ImageStatus::Accepted | ImageStatus::Duplicate))
            .filter_map(|r| r.labels_key.as_deref())
            .collect();
        let orphans = live_labels.keys().filter(|key| !named.contains(*key)).count();
        if orphans > 0 {
            rejected.insert(AnnotationCode::LabelWithoutImage.as_str().to_owned(), orphans);
        }

        let class_name =
            |class: u32| -> String { class_names.get(class as usize).cloned().unwrap_or_else(|| format!("class {class}")) };
        let mut classes: BTreeMap<String, ClassCount> =
            class_names.iter().map(|name| (name.clone(), ClassCount::default())).collect();
        let mut health = Self {
            dataset: dataset.to_owned(),
            task: "detection",
            images: 0,
            boxes: 0,
            background_images: 0,
            classes: BTreeMap::new(),
            class_names: class_names.clone(),
            per_split: BTreeMap::new(),
            boxes_per_image: None,
            box_area: None,
            box_size_histogram: [0; 10],
            box_sizes: BoxSizes::default(),
            box_aspect: None,
            box_aspect_histogram: [0; 12],
            tiny_boxes: 0,
            duplicates: images.iter().filter(|r| r.status == ImageStatus::Duplicate).count(),
            near_duplicates: 0,
            deleted: images.iter().filter(|r| r.status == ImageStatus::Deleted).count(),
            rejected,
            awaiting_class_names: live_labels.values().filter(|l| !l.classes_checked).count(),
        };
        let (mut per_image, mut areas, mut aspects) = (Vec::new(), Vec::new(), Vec::new());
        for image in images.iter().filter(|r| r.status == ImageStatus::Accepted) {
            health.images += 1;
            health.near_duplicates += usize::from(image.near_duplicate_of.is_some());
            let boxes = image_boxes(image, &live_labels, &class_names, &mut health.rejected);
            let split = health.per_split.entry(image.split.unwrap_or(Split::Train)).or_default();
            split.images += 1;
            split.boxes += boxes.len();
            health.boxes += boxes.len();
            health.background_images += usize::from(boxes.is_empty());
            per_image.push(boxes.len() as f64);
            let mut seen = BTreeSet::new();
            let (width, height) = (image.width.unwrap_or(1), image.height.unwrap_or(1));
            for b in &boxes {
                let count = classes.entry(class_name(b.class)).or_default();
                count.boxes += 1;
                if seen.insert(b.class) {
                    count.images += 1;
                }
                let px = b.in_pixels(width, height);
                let area = b.w * b.h;
                areas.push(area);
                health.box_size_histogram[((area.sqrt() * 10.0) as usize).min(9)] += 1;
                let pixel_area = px.width * px.height;
                match pixel_area {
                    a if a < COCO_SMALL_AREA => health.box_sizes.small += 1,
                    a if a < COCO_LARGE_AREA => health.box_sizes.medium += 1,
                    _ => health.box_sizes.large += 1,
                }
                let aspect = px.width / px.height;
                aspects.push(aspect);
                let bin = ((aspect.log2() + 3.0) * 2.0).floor().clamp(0.0, 11.0) as usize;
                health.box_aspect_histogram[bin] += 1;
                health.tiny_boxes += usize::from(px.width < TINY_BOX_SIDE || px.height < TINY_BOX_SIDE);
            }
        }
        health.classes = classes;
        health.boxes_per_image = Spread::of(per_image);
        health.box_area = Spread::of(areas);
        health.box_aspect = Spread::of(aspects);
        health
    }
}

/// The boxes of an accepted image: its label file's, less any whose class the names (read now,
/// possibly newer than the file's check) do not reach, which are counted as `unknown_class`.
pub fn image_boxes(
    image: &ImageRecord,
    labels: &BTreeMap<&str, &LabelRecord>,
    class_names: &[String],
    rejected: &mut BTreeMap<String, usize>,
) -> Vec<BoundingBox> {
    let Some(label) = image.labels_key.as_deref().and_then(|key| labels.get(key)) else { return Vec::new() };
    let (known, unknown): (Vec<BoundingBox>, Vec<BoundingBox>) =
        label.boxes.iter().partition(|b| class_names.is_empty() || (b.class as usize) < class_names.len());
    if !unknown.is_empty() && label.classes_checked {
        *rejected.entry(AnnotationCode::UnknownClass.as_str().to_owned()).or_default() += unknown.len();
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotation::RefusedAnnotation;
    use crate::sequencer::Sequencer;

    fn image(key: &str, labels_key: Option<&str>, status: ImageStatus) -> ImageRecord {
        let mut r = ImageRecord::blank(key, "d", status, Sequencer::new("0A"), "2026-01-01T00:00:00Z".into());
        (r.split, r.width, r.height, r.labels_key) = (Some(Split::Train), Some(100), Some(50), labels_key.map(str::to_owned));
        r
    }

    fn labels(key: &str, boxes: Vec<BoundingBox>, refused: Vec<AnnotationCode>) -> LabelRecord {
        LabelRecord {
            key: key.into(),
            dataset: "d".into(),
            status: LabelStatus::Accepted,
            sequencer: Sequencer::new("0A"),
            uploaded_at: String::new(),
            split: Split::Train,
            folder: "train".into(),
            stem: key.into(),
            lines: (1..=boxes.len() as u32).collect(),
            boxes,
            refused: refused
                .into_iter()
                .map(|reason| RefusedAnnotation { line: 9, text: String::new(), reason, message: String::new() })
                .collect(),
            classes_checked: true,
            checked_against: None,
            reason: None,
            message: None,
            quarantine_key: None,
        }
    }

    fn bbox(class: u32, w: f64, h: f64) -> BoundingBox {
        BoundingBox { class, cx: 0.5, cy: 0.5, w, h }
    }

    #[test]
    fn images_join_their_label_files_and_every_fault_is_counted_by_code() {
        let names = ClassNamesRecord {
            key: "datasets/d/data.yaml".into(),
            dataset: "d".into(),
            sequencer: Sequencer::new("0A"),
            names: vec!["cat".into(), "dog".into()],
            names_sequencer: None,
            reason: None,
            message: None,
        };
        let mut rejected_image = image("bad", None, ImageStatus::Rejected);
        rejected_image.reason = Some(crate::ReasonCode::Truncated);
        let images = [
            image("a", Some("la"), ImageStatus::Accepted),
            image("b", Some("lb"), ImageStatus::Accepted),
            image("c", Some("missing"), ImageStatus::Accepted),
            rejected_image,
        ];
        let label_files = [
            // 50x25 px, 5x2.5 px (tiny), and an index past the names.
            labels("la", vec![bbox(0, 0.5, 0.5), bbox(1, 0.05, 0.05), bbox(5, 0.1, 0.1)], vec![AnnotationCode::EmptyBox]),
            labels("lb", vec![], vec![]),
            labels("orphan", vec![bbox(0, 0.1, 0.1)], vec![AnnotationCode::BoxOutsideImage]),
        ];
        let health = DetectionHealth::of("d", &images, &label_files, Some(&names));
        assert_eq!((health.images, health.boxes, health.background_images), (3, 2, 2));
        assert_eq!(health.classes["cat"], ClassCount { boxes: 1, images: 1 });
        assert_eq!(health.classes["dog"], ClassCount { boxes: 1, images: 1 });
        assert_eq!(health.tiny_boxes, 1);
        assert_eq!((health.box_sizes.small, health.box_sizes.medium), (1, 1));
        let rejected: Vec<(&str, usize)> = health.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            rejected,
            vec![("box_outside_image", 1), ("empty_box", 1), ("label_without_image", 1), ("truncated", 1), ("unknown_class", 1)]
        );
        assert_eq!(health.box_aspect.as_ref().unwrap().median, 2.0);
        let json = serde_json::to_value(&health).unwrap();
        for field in ["images", "boxes", "classes", "rejected"] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }
}
