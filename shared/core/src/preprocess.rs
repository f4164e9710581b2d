//! The one preprocessing every model input goes through: in the trainer, in register-model's
//! evaluation and in the endpoint. The model card carries the [`InputSpec`]; this module turns a
//! decoded image into the tensor data the spec describes. Being one pure function is what makes
//! the endpoint's scores equal the registered evaluation.

use image::imageops::FilterType;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

/// What a model expects: NCHW float32, resized with a triangle (bilinear) filter as `resize`
/// says, channel planes scaled to 0..1, then `(x - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The ONNX graph's input name.
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u8,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// How an image is fitted to `width` x `height` (squashed when a card does not say).
    #[serde(default)]
    pub resize: ResizeMode,
}

/// How an image of any shape is fitted to the model's input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Stretched to the input's size, whatever its aspect (the trainer's classifiers).
    #[default]
    Squash,
    /// Scaled to fit inside, centred, the rest padded grey (114), as Ultralytics feeds YOLO
    /// (resized with a triangle filter where Ultralytics uses OpenCV's bilinear one).
    Letterbox,
    /// Scaled so its shorter side fills the input, then cropped at the centre, as torchvision's
    /// `Resize` + `CenterCrop` feed ImageNet classifiers.
    ShorterSideCrop,
}

/// Where an image landed in the input: an input pixel is `original * scale + offset`. What maps
/// a detector's boxes back to the original image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub scale_x: f64,
    pub scale_y: f64,
    pub offset_x: f64,
    pub offset_y: f64,
}

impl Placement {
    /// A box in input pixels as a box in the original image's pixels.
    pub fn to_original(&self, b: crate::annotation::PixelBox) -> crate::annotation::PixelBox {
        crate::annotation::PixelBox {
            x: (b.x - self.offset_x) / self.scale_x,
            y: (b.y - self.offset_y) / self.scale_y,
            width: b.width / self.scale_x,
            height: b.height / self.scale_y,
        }
    }
}

/// The grey Ultralytics pads a letterboxed image with.
pub const LETTERBOX_PAD: u8 = 114;

impl InputSpec {
    /// Checks a spec read from a card, which may be hostile.
    pub fn check(&self) -> Result<(), String> {
        if !(self.channels == 1 || self.channels == 3) {
            return Err(format!("input.channels is {}; it must be 1 or 3", self.channels));
        }
        if !(1..=1024).contains(&self.width) || !(1..=1024).contains(&self.height) {
            return Err(format!("input size {}x{} is outside 1..=1024", self.width, self.height));
        }
        if self.mean.len() != self.channels as usize || self.std.len() != self.channels as usize {
            return Err(format!("input.mean and input.std need {} values each", self.channels));
        }
        if self.mean.iter().any(|m| !m.is_finite()) || self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err("input.mean must be finite and input.std finite and positive".into());
        }
        Ok(())
    }

    /// Values in one image's tensor data.
    pub fn len(&self) -> usize {
        self.channels as usize * self.width as usize * self.height as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NCHW shape for a batch of `n`.
    pub fn shape(&self, n: usize) -> [usize; 4] {
        [n, self.channels as usize, self.height as usize, self.width as usize]
    }
}

/// Resizes and converts an image to `channels` planes of `width` x `height` bytes (CHW order),
/// squashed. The trainer keeps these bytes (4x smaller than floats) and normalises per batch.
pub fn planes(image: &DynamicImage, width: u32, height: u32, channels: u8) -> Vec<u8> {
    placed_planes(image, width, height, channels, ResizeMode::Squash).0
}

/// [`planes`] fitted as `mode` says, with where the image landed.
pub fn placed_planes(image: &DynamicImage, width: u32, height: u32, channels: u8, mode: ResizeMode) -> (Vec<u8>, Placement) {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let (fitted, placement) = match mode {
        ResizeMode::Squash => {
            let placement = Placement {
                scale_x: f64::from(width) / f64::from(w),
                scale_y: f64::from(height) / f64::from(h),
                offset_x: 0.0,
                offset_y: 0.0,
            };
            if w == width && h == height {
                (std::borrow::Cow::Borrowed(image), placement)
            } else {
                (std::borrow::Cow::Owned(image.resize_exact(width, height, FilterType::Triangle)), placement)
            }
        }
        ResizeMode::Letterbox => {
            let r = (f64::from(width) / f64::from(w)).min(f64::from(height) / f64::from(h));
            // As Ultralytics' LetterBox computes it, with Python's rounding (half to even); the
            // padding before is round(d - 0.1), the rest goes after.
            let (nw, nh) = (
                ((f64::from(w) * r).round_ties_even() as u32).clamp(1, width),
                ((f64::from(h) * r).round_ties_even() as u32).clamp(1, height),
            );
            let left = ((f64::from(width - nw) / 2.0) - 0.1).round_ties_even().max(0.0) as u32;
            let top = ((f64::from(height - nh) / 2.0) - 0.1).round_ties_even().max(0.0) as u32;
            let resized = image.resize_exact(nw, nh, FilterType::Triangle).to_rgb8();
            let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([LETTERBOX_PAD; 3]));
            image::imageops::overlay(&mut canvas, &resized, i64::from(left), i64::from(top));
            // Each side's own scale, from the rounded size it was resized to (as Ultralytics'
            // `scale_boxes` maps boxes back).
            let placement = Placement {
                scale_x: f64::from(nw) / f64::from(w),
                scale_y: f64::from(nh) / f64::from(h),
                offset_x: f64::from(left),
                offset_y: f64::from(top),
            };
            (std::borrow::Cow::Owned(DynamicImage::ImageRgb8(canvas)), placement)
        }
        ResizeMode::ShorterSideCrop => {
            let r = (f64::from(width) / f64::from(w)).max(f64::from(height) / f64::from(h));
            let (nw, nh) = (((f64::from(w) * r).round() as u32).max(width), ((f64::from(h) * r).round() as u32).max(height));
            // torchvision's CenterCrop: round((side - crop) / 2), half to even.
            let left = (f64::from(nw - width) / 2.0).round_ties_even() as u32;
            let top = (f64::from(nh - height) / 2.0).round_ties_even() as u32;
            let cropped = image.resize_exact(nw, nh, FilterType::Triangle).crop_imm(left, top, width, height);
            let placement = Placement {
                scale_x: f64::from(nw) / f64::from(w),
                scale_y: f64::from(nh) / f64::from(h),
                offset_x: -f64::from(left),
                offset_y: -f64::from(top),
            };
            (std::borrow::Cow::Owned(cropped), placement)
        }
    };
    let pixels = (width * height) as usize;
    if channels == 1 {
        return (fitted.to_luma8().into_raw(), placement);
    }
    let rgb = fitted.to_rgb8();
    let mut out = vec![0u8; 3 * pixels];
    for (i, px) in rgb.pixels().enumerate() {
        out[i] = px[0];
        out[pixels + i] = px[1];
        out[2 * pixels + i] = px[2];
    }
    (out, placement)
}

/// Scales CHW bytes to the model's float input, appending to `out`.
pub fn normalise_into(planes: &[u8], spec: &InputSpec, out: &mut Vec<f32>) {
    let plane = (spec.width * spec.height) as usize;
    for (c, channel) in planes.chunks_exact(plane).enumerate() {
        let (mean, std) = (spec.mean[c], spec.std[c]);
        out.extend(channel.iter().map(|&p| (p as f32 / 255.0 - mean) / std));
    }
}

/// One image into the model's input: [`placed_planes`] then [`normalise_into`].
pub fn preprocess(image: &DynamicImage, spec: &InputSpec) -> Vec<f32> {
    preprocess_placed(image, spec).0
}

/// [`preprocess`], with where the image landed in the input (for a detector's boxes).
pub fn preprocess_placed(image: &DynamicImage, spec: &InputSpec) -> (Vec<f32>, Placement) {
    let mut out = Vec::with_capacity(spec.len());
    let (planes, placement) = placed_planes(image, spec.width, spec.height, spec.channels, spec.resize);
    normalise_into(&planes, spec, &mut out);
    (out, placement)
}

/// Probabilities from logits, computed stably.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The index of the largest value (the first, on ties).
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(channels: u8) -> InputSpec {
        InputSpec {
            name: "input".into(),
            width: 2,
            height: 2,
            channels,
            mean: vec![0.5; channels as usize],
            std: vec![0.25; channels as usize],
            resize: ResizeMode::Squash,
        }
    }

    #[test]
    fn letterbox_fits_inside_pads_grey_and_maps_boxes_back() {
        // A 200x100 white image into 64x64: scaled by 0.32 to 64x32, 16 rows of grey above and below.
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(200, 100, image::Rgb([255, 255, 255])));
        let (planes, placement) = placed_planes(&image, 64, 64, 3, ResizeMode::Letterbox);
        assert_eq!((placement.scale_x, placement.offset_x, placement.offset_y), (0.32, 0.0, 16.0));
        assert_eq!(
            (planes[0], planes[15 * 64], planes[16 * 64], planes[48 * 64]),
            (LETTERBOX_PAD, LETTERBOX_PAD, 255, LETTERBOX_PAD)
        );
        let back = placement.to_original(crate::annotation::PixelBox { x: 32.0, y: 16.0, width: 32.0, height: 32.0 });
        assert_eq!((back.x, back.y, back.width, back.height), (100.0, 0.0, 100.0, 100.0));
    }

    #[test]
    fn shorter_side_crop_fills_the_input_and_cuts_the_long_side() {
        let image =
            DynamicImage::ImageLuma8(image::GrayImage::from_fn(200, 100, |x, _| image::Luma([if x < 100 { 0 } else { 255 }])));
        let (planes, placement) = placed_planes(&image, 50, 50, 1, ResizeMode::ShorterSideCrop);
        assert_eq!((placement.scale_x, placement.offset_x), (0.5, -25.0));
        assert_eq!((planes[0], planes[49]), (0, 255), "the centre of the image, half dark, half light");
        let back = placement.to_original(crate::annotation::PixelBox { x: 0.0, y: 0.0, width: 50.0, height: 50.0 });
        assert_eq!((back.x, back.width), (50.0, 100.0));
    }

    #[test]
    fn rgb_becomes_normalised_channel_planes() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(2, 2, |x, _| image::Rgb([255 * x as u8, 0, 255])));
        let data = preprocess(&image, &spec(3));
        assert_eq!(data.len(), 12);
        assert_eq!(&data[0..4], &[-2.0, 2.0, -2.0, 2.0]);
        assert_eq!(&data[4..8], &[-2.0; 4]);
        assert_eq!(&data[8..12], &[2.0; 4]);
    }

    #[test]
    fn images_are_resized_to_the_spec() {
        let image = DynamicImage::ImageLuma8(image::GrayImage::new(28, 28));
        assert_eq!(preprocess(&image, &spec(1)).len(), 4);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let p = softmax(&[1000.0, 1001.0, -5.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&p), 1);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(spec(2).check().is_err());
        let mut zero_std = spec(1);
        zero_std.std = vec![0.0];
        assert!(zero_std.check().is_err());
        assert!(spec(3).check().is_ok());
    }
}
