//! YOLO label files: one box per line, `class cx cy w h`, coordinates normalised to 0-1.
//!
//! Each line is judged on its own, so one bad line never costs the image its other boxes: a
//! good line becomes a [`BoundingBox`], a bad one a [`RefusedAnnotation`] with its code. Only a
//! fault of the whole file (not UTF-8 text, over [`MAX_LABEL_FILE_BYTES`] or
//! [`MAX_BOXES_PER_FILE`]) refuses it whole. Blank lines are skipped; an empty file is an image
//! with no objects (a background image), as in Ultralytics.

use super::{AnnotationCode, BoundingBox, RefusedAnnotation, REFUSED_TEXT_CHARS};

/// The largest label file read: a thousand boxes take about 40 KB, so 1 MiB is never a real one.
pub const MAX_LABEL_FILE_BYTES: u64 = 1 << 20;
/// The most boxes one image may have (crowded retail shelves reach several hundred); the bound
/// keeps a label record well under DynamoDB's 400 KB item limit.
pub const MAX_BOXES_PER_FILE: usize = 1_000;
/// How far outside 0-1 a coordinate may stray and be clipped rather than refused: exports round
/// to six decimals, so a box on the edge can end at 1.0000005.
const EDGE_TOLERANCE: f64 = 1e-4;

/// A label file's boxes and refused lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedLabels {
    pub boxes: Vec<BoundingBox>,
    /// The line each box came from, for the refusal of a class found unknown later.
    pub lines: Vec<u32>,
    pub refused: Vec<RefusedAnnotation>,
}

impl ParsedLabels {
    /// Takes back the boxes refused as `unknown_class` (their text is their box), so that they
    /// can be checked against other names.
    pub fn restore_unknown_classes(&mut self) {
        let (unknown, rest): (Vec<RefusedAnnotation>, Vec<RefusedAnnotation>) =
            std::mem::take(&mut self.refused).into_iter().partition(|r| r.reason == AnnotationCode::UnknownClass);
        self.refused = rest;
        for r in unknown {
            match parse_line(&r.text) {
                Ok(b) => {
                    let at = self.lines.partition_point(|&line| line < r.line);
                    self.boxes.insert(at, b);
                    self.lines.insert(at, r.line);
                }
                Err(_) => self.refused.push(r),
            }
        }
        self.refused.sort_by_key(|r| r.line);
    }

    /// Refuses every box whose class index `names` does not reach, as `unknown_class`.
    pub fn check_classes(&mut self, names: &[String]) {
        let mut kept = Vec::with_capacity(self.boxes.len());
        let mut kept_lines = Vec::with_capacity(self.lines.len());
        for (b, line) in self.boxes.iter().zip(&self.lines) {
            if (b.class as usize) < names.len() {
                kept.push(*b);
                kept_lines.push(*line);
            } else {
                self.refused.push(RefusedAnnotation {
                    line: *line,
                    text: b.yolo_line(),
                    reason: AnnotationCode::UnknownClass,
                    message: format!(
                        "class {} is not in data.yaml, which names {} classes (0 to {}); fix the index or add the name",
                        b.class,
                        names.len(),
                        names.len().saturating_sub(1)
                    ),
                });
            }
        }
        self.boxes = kept;
        self.lines = kept_lines;
        self.refused.sort_by_key(|r| r.line);
    }
}

/// Parses a label file. `Err` refuses the whole file, with its message.
pub fn parse_yolo_labels(bytes: &[u8]) -> Result<ParsedLabels, String> {
    if bytes.len() as u64 > MAX_LABEL_FILE_BYTES {
        return Err(format!("the label file is {} bytes, over the {MAX_LABEL_FILE_BYTES}-byte limit", bytes.len()));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the label file is not UTF-8 text ({e}); write one `class cx cy w h` line per box"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = ParsedLabels::default();
    let mut lines = 0usize;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_BOXES_PER_FILE {
            return Err(format!("the label file has over {MAX_BOXES_PER_FILE} boxes, the most one image may have"));
        }
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        match parse_line(line) {
            Ok(b) => {
                parsed.boxes.push(b);
                parsed.lines.push(number);
            }
            Err((reason, message)) => parsed.refused.push(RefusedAnnotation {
                line: number,
                text: line.chars().take(REFUSED_TEXT_CHARS).collect(),
                reason,
                message,
            }),
        }
    }
    Ok(parsed)
}

fn parse_line(line: &str) -> Result<BoundingBox, (AnnotationCode, String)> {
    let malformed = |why: String| (AnnotationCode::MalformedAnnotation, why);
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 {
        let what = if fields.len() > 5 && fields.len() % 2 == 1 { " (a segmentation polygon?)" } else { "" };
        return Err(malformed(format!("{} fields{what}; a box line is `class cx cy w h`, five fields", fields.len())));
    }
    let class = parse_class(fields[0])
        .ok_or_else(|| malformed(format!("class {:?} is not a whole number from 0", truncate(fields[0]))))?;
    let mut numbers = [0f64; 4];
    for (slot, (field, name)) in numbers.iter_mut().zip(fields[1..].iter().zip(["cx", "cy", "w", "h"])) {
        *slot = field
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| malformed(format!("{name} {:?} is not a number", truncate(field))))?;
    }
    let [cx, cy, w, h] = numbers;
    if w <= 0.0 || h <= 0.0 {
        return Err((
            AnnotationCode::EmptyBox,
            format!("the box is {} wide and {} high; a box needs a positive size", short(w), short(h)),
        ));
    }
    let (left, right, top, bottom) = (cx - w / 2.0, cx + w / 2.0, cy - h / 2.0, cy + h / 2.0);
    let outside = |lo: f64, hi: f64| lo < -EDGE_TOLERANCE || hi > 1.0 + EDGE_TOLERANCE;
    // Clip what strays within the tolerance; what is left must still be a box inside the image.
    let clipped = (left.max(0.0), right.min(1.0), top.max(0.0), bottom.min(1.0));
    let empty_after_clipping = quantise(clipped.1 - clipped.0) <= 0.0 || quantise(clipped.3 - clipped.2) <= 0.0;
    if outside(left, right) || outside(top, bottom) || empty_after_clipping {
        return Err((
            AnnotationCode::BoxOutsideImage,
            format!(
                "the box spans x {} to {} and y {} to {}; YOLO coordinates are fractions of the image, 0 to 1 (pixels? divide by the image's width and height)",
                short(left),
                short(right),
                short(top),
                short(bottom)
            ),
        ));
    }
    let (left, right, top, bottom) = clipped;
    Ok(BoundingBox {
        class,
        cx: quantise((left + right) / 2.0),
        cy: quantise((top + bottom) / 2.0),
        w: quantise(right - left),
        h: quantise(bottom - top),
    })
}

/// Coordinates to a millionth of the image's side (what exports write): the same box gives the
/// same numbers whichever tool wrote it and with however many digits, so uploads of one dataset
/// in different formats give one snapshot.
pub fn quantise(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// A number for a message: never hundreds of digits, whatever the file held.
fn short(v: f64) -> String {
    if v.abs() < 1e6 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// A class index: a whole number; `3.0` is taken as 3, as Ultralytics reads it.
fn parse_class(field: &str) -> Option<u32> {
    field.parse::<u32>().ok().or_else(|| {
        let v = field.parse::<f64>().ok()?;
        (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX)).then_some(v as u32)
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(parsed: &ParsedLabels) -> Vec<(u32, AnnotationCode)> {
        parsed.refused.iter().map(|r| (r.line, r.reason)).collect()
    }

    #[test]
    fn good_lines_become_boxes_and_blank_lines_are_skipped() {
        let parsed = parse_yolo_labels(b"0 0.5 0.5 0.2 0.4\n\n3.0 0.1 0.1 0.2 0.2\r\n").unwrap();
        assert_eq!(parsed.boxes.len(), 2);
        assert_eq!(parsed.boxes[1].class, 3);
        assert_eq!(parsed.lines, vec![1, 3]);
        assert!(parsed.refused.is_empty());
        assert_eq!(parse_yolo_labels(b"").unwrap(), ParsedLabels::default());
    }

    #[test]
    fn each_bad_line_gets_its_code_and_the_good_ones_stay() {
        let text = "0 0.5 0.5 0.2 0.2\n\
                    1 0.5 0.5 0.2\n\
                    x 0.5 0.5 0.2 0.2\n\
                    -1 0.5 0.5 0.2 0.2\n\
                    1.5 0.5 0.5 0.2 0.2\n\
                    0 0.5 NaN 0.2 0.2\n\
                    0 0.5 0.5 0 0.2\n\
                    0 0.5 0.5 0.2 -0.1\n\
                    0 0.95 0.5 0.2 0.2\n\
                    0 0.5 0.5 1.2 0.2\n\
                    2 0.1 0.1 0.2 0.2 0.3 0.3\n\
                    0 0.9 0.9 0.2000004 0.2\n";
        let parsed = parse_yolo_labels(text.as_bytes()).unwrap();
        use AnnotationCode::*;
        assert_eq!(
            codes(&parsed),
            vec![
                (2, MalformedAnnotation),
                (3, MalformedAnnotation),
                (4, MalformedAnnotation),
                (5, MalformedAnnotation),
                (6, MalformedAnnotation),
                (7, EmptyBox),
                (8, EmptyBox),
                (9, BoxOutsideImage),
                (10, BoxOutsideImage),
                (11, MalformedAnnotation),
            ]
        );
        assert_eq!(parsed.lines, vec![1, 12]);
        let clipped = parsed.boxes[1];
        assert!(clipped.cx + clipped.w / 2.0 <= 1.0 + 1e-9, "{clipped:?}");
        assert!(parsed.refused[9].message.contains("polygon"), "{:?}", parsed.refused[9]);
    }

    #[test]
    fn boxes_are_quantised_and_nothing_empty_survives_clipping() {
        let parsed =
            parse_yolo_labels(b"0 0.4765625 0.5 0.25000001 0.1\n0 -0.00005 0.5 0.00001 0.1\n0 1.00005 0.5 0.0001 0.1\n").unwrap();
        assert_eq!((parsed.boxes[0].cx, parsed.boxes[0].w), (quantise(0.4765625), 0.25));
        assert_eq!(parsed.boxes.len(), 1, "{parsed:?}");
        assert!(parsed.refused.iter().all(|r| r.reason == AnnotationCode::BoxOutsideImage));
        let huge = parse_yolo_labels(b"0 1e300 0.5 1e300 0.1\n").unwrap();
        assert!(huge.refused[0].message.len() < 200, "{}", huge.refused[0].message);
    }

    #[test]
    fn unknown_classes_are_refused_once_the_names_are_known() {
        let mut parsed = parse_yolo_labels(b"0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\nbad\n").unwrap();
        parsed.check_classes(&["cat".into(), "dog".into()]);
        assert_eq!(parsed.boxes.len(), 1);
        assert_eq!(codes(&parsed), vec![(2, AnnotationCode::UnknownClass), (3, AnnotationCode::MalformedAnnotation)]);
        assert!(parsed.refused[0].message.contains("names 2 classes"), "{}", parsed.refused[0].message);
        // Names that reach further take the box back, in its place.
        parsed.restore_unknown_classes();
        parsed.check_classes(&(0..8).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!((parsed.boxes.len(), parsed.lines.clone()), (2, vec![1, 2]));
        assert_eq!(codes(&parsed), vec![(3, AnnotationCode::MalformedAnnotation)]);
    }

    #[test]
    fn whole_file_faults_refuse_the_file() {
        assert!(parse_yolo_labels(&[0xff, 0xfe, 0x00]).unwrap_err().contains("UTF-8"));
        let many = "0 0.5 0.5 0.1 0.1\n".repeat(MAX_BOXES_PER_FILE + 1);
        assert!(parse_yolo_labels(many.as_bytes()).unwrap_err().contains("boxes"));
        let huge = vec![b' '; MAX_LABEL_FILE_BYTES as usize + 1];
        assert!(parse_yolo_labels(&huge).unwrap_err().contains("limit"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"0123456789. -e\nx\x00\xff"[(state % 18) as usize]
                })
                .collect();
            let _ = parse_yolo_labels(&bytes);
        }
    }
}
