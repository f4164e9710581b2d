//! The one preprocessing every model input goes through: in the trainer, in register-model's
//! evaluation and in the endpoint. The model card carries the [`InputSpec`]; this module turns a
//! decoded image into the tensor data the spec describes. Being one pure function is what makes
//! the endpoint's scores equal the registered evaluation.

use image::imageops::FilterType;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

/// What a model expects: NCHW float32, resized with a triangle (bilinear) filter, channel planes
/// scaled to 0..1, then `(x - mean[c]) / std[c]`.
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
}

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

/// Resizes and converts an image to `channels` planes of `width` x `height` bytes (CHW order).
/// The trainer keeps these bytes (4x smaller than floats) and normalises per batch.
pub fn planes(image: &DynamicImage, width: u32, height: u32, channels: u8) -> Vec<u8> {
    let resized;
    let image = if image.width() == width && image.height() == height {
        image
    } else {
        resized = image.resize_exact(width, height, FilterType::Triangle);
        &resized
    };
    let pixels = (width * height) as usize;
    if channels == 1 {
        return image.to_luma8().into_raw();
    }
    let rgb = image.to_rgb8();
    let mut out = vec![0u8; 3 * pixels];
    for (i, px) in rgb.pixels().enumerate() {
        out[i] = px[0];
        out[pixels + i] = px[1];
        out[2 * pixels + i] = px[2];
    }
    out
}

/// Scales CHW bytes to the model's float input, appending to `out`.
pub fn normalise_into(planes: &[u8], spec: &InputSpec, out: &mut Vec<f32>) {
    let plane = (spec.width * spec.height) as usize;
    for (c, channel) in planes.chunks_exact(plane).enumerate() {
        let (mean, std) = (spec.mean[c], spec.std[c]);
        out.extend(channel.iter().map(|&p| (p as f32 / 255.0 - mean) / std));
    }
}

/// One image into the model's input: [`planes`] then [`normalise_into`].
pub fn preprocess(image: &DynamicImage, spec: &InputSpec) -> Vec<f32> {
    let mut out = Vec::with_capacity(spec.len());
    normalise_into(&planes(image, spec.width, spec.height, spec.channels), spec, &mut out);
    out
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
        }
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
