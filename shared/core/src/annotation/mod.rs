//! Object-detection annotations: boxes, the stable codes an annotation is refused with, and the
//! catalog records of label files and class names.
//!
//! In the raw bucket a detection dataset is laid out as Ultralytics trains from it (see
//! [`crate::key::RawKey`]): images under `images/<split>/`, one YOLO label file per image under
//! `labels/<split>/<stem>.txt`, and the class names in `data.yaml`. Every other format (COCO,
//! Pascal VOC) is converted into it on the way in, so ingest, snapshots and health read one form.
//!
//! - [`yolo`]: a label file's lines into boxes, each fault refused with its code, never dropped.
//! - [`record`]: what ingest records of a label file ([`LabelRecord`]) and of the class names.

use serde::{Deserialize, Serialize};

mod record;
mod yolo;

pub use record::{ClassNamesRecord, LabelQuarantineSidecar, LabelRecord, LabelStatus};
pub use yolo::{parse_yolo_labels, quantise, ParsedLabels, MAX_BOXES_PER_FILE, MAX_LABEL_FILE_BYTES};

/// Why an annotation (or a whole label file) was refused. Users script against these strings:
/// never rename one, only add. They never collide with the image codes of [`crate::ReasonCode`],
/// so one `rejected` map of a detection dataset's health can hold both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationCode {
    /// A line that is not `class cx cy w h` (missing or extra fields, not numbers, a negative or
    /// fractional class, a polygon).
    MalformedAnnotation,
    /// A label file that is not text, is over the size or box limit, or a `data.yaml` without
    /// usable `names`.
    MalformedLabelFile,
    /// A box with zero or negative width or height.
    EmptyBox,
    /// A box that reaches outside the image (normalised coordinates outside 0 to 1).
    BoxOutsideImage,
    /// A class index the dataset's `data.yaml` does not name.
    UnknownClass,
    /// A label file with no image beside it (`images/<split>/<stem>.*`): kept, and joined when
    /// the image arrives; until then its boxes are in no snapshot.
    LabelWithoutImage,
}

impl AnnotationCode {
    pub const ALL: [AnnotationCode; 6] = [
        AnnotationCode::MalformedAnnotation,
        AnnotationCode::MalformedLabelFile,
        AnnotationCode::EmptyBox,
        AnnotationCode::BoxOutsideImage,
        AnnotationCode::UnknownClass,
        AnnotationCode::LabelWithoutImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationCode::MalformedAnnotation => "malformed_annotation",
            AnnotationCode::MalformedLabelFile => "malformed_label_file",
            AnnotationCode::EmptyBox => "empty_box",
            AnnotationCode::BoxOutsideImage => "box_outside_image",
            AnnotationCode::UnknownClass => "unknown_class",
            AnnotationCode::LabelWithoutImage => "label_without_image",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for AnnotationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One box, as YOLO writes it: a class index and the centre, width and height as fractions of
/// the image's width and height (0 to 1), so it holds whatever size the image is stored at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub class: u32,
    pub cx: f64,
    pub cy: f64,
    pub w: f64,
    pub h: f64,
}

/// A box in an image's pixels: the top-left corner, width and height, as COCO and the endpoint
/// write them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl BoundingBox {
    pub fn in_pixels(&self, image_width: u32, image_height: u32) -> PixelBox {
        let (iw, ih) = (f64::from(image_width), f64::from(image_height));
        PixelBox { x: (self.cx - self.w / 2.0) * iw, y: (self.cy - self.h / 2.0) * ih, width: self.w * iw, height: self.h * ih }
    }

    /// The box from pixels (top-left corner, width, height) in an image of the given size.
    pub fn from_pixels(class: u32, b: PixelBox, image_width: u32, image_height: u32) -> Self {
        let (iw, ih) = (f64::from(image_width.max(1)), f64::from(image_height.max(1)));
        Self { class, cx: (b.x + b.width / 2.0) / iw, cy: (b.y + b.height / 2.0) / ih, w: b.width / iw, h: b.height / ih }
    }

    /// The YOLO label line of the box, with six decimals (a millionth of the side, as
    /// Roboflow's exports write them).
    pub fn yolo_line(&self) -> String {
        format!("{} {:.6} {:.6} {:.6} {:.6}", self.class, self.cx, self.cy, self.w, self.h)
    }

    /// The YOLO label line with every digit the numbers need to read back as themselves: what
    /// an export writes, so that importing it gives the same boxes.
    pub fn yolo_line_exact(&self) -> String {
        format!("{} {} {} {} {}", self.class, self.cx, self.cy, self.w, self.h)
    }
}

/// A box as a person reads it: its class name and its place in the image's pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabeledBox {
    pub label: String,
    pub class: u32,
    #[serde(rename = "box")]
    pub bbox: PixelBox,
}

impl LabeledBox {
    /// `names[class]`, or `class <i>` while the names are not in.
    pub fn new(b: &BoundingBox, names: &[String], image_width: u32, image_height: u32) -> Self {
        let label = names.get(b.class as usize).cloned().unwrap_or_else(|| format!("class {}", b.class));
        Self { label, class: b.class, bbox: b.in_pixels(image_width, image_height) }
    }
}

/// An annotation refused, with where it was and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedAnnotation {
    /// 1-based line of the label file.
    pub line: u32,
    /// The line as it was (cut to [`REFUSED_TEXT_CHARS`] characters).
    pub text: String,
    pub reason: AnnotationCode,
    pub message: String,
}

/// How much of a refused line its record keeps: enough to find it, never a whole bad file.
pub const REFUSED_TEXT_CHARS: usize = 80;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_never_collide_with_image_codes() {
        for code in AnnotationCode::ALL {
            assert_eq!(AnnotationCode::parse(code.as_str()), Some(code));
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!(crate::ReasonCode::parse(code.as_str()).is_none(), "{code}");
        }
    }

    #[test]
    fn a_box_goes_to_pixels_and_back() {
        let b = BoundingBox { class: 2, cx: 0.5, cy: 0.25, w: 0.2, h: 0.1 };
        let px = b.in_pixels(200, 100);
        assert_eq!(px, PixelBox { x: 80.0, y: 20.0, width: 40.0, height: 10.0 });
        let back = BoundingBox::from_pixels(2, px, 200, 100);
        assert!((back.cx - b.cx).abs() < 1e-12 && (back.h - b.h).abs() < 1e-12, "{back:?}");
        assert_eq!(b.yolo_line(), "2 0.500000 0.250000 0.200000 0.100000");
    }
}
