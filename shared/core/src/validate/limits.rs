use serde::{Deserialize, Serialize};

use crate::reason::{ReasonCode, Rejection};

/// The default decode budget: 256 MiB of decoded pixels. `cvops validate` of any file within it
/// peaks under 300 MB resident.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 256 << 20;

/// What a valid upload may be. Defaults: 50 MB, 100 megapixels, 30,000 px a side, 16 px minimum,
/// and a decode budget of 256 MiB.
///
/// The pixel and side limits say what an image may be; the decode budget says what decoding it
/// may cost: width x height x channels x bytes per sample of the pixels the decoder writes,
/// checked from the header before a single pixel is allocated. A 9,999 x 9,999 16-bit RGBA PNG
/// of zeros is under 1 MB on disk and under the pixel limit, but 800 MB decoded: the budget is
/// what stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationLimits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
    pub min_side: u32,
    /// The decode budget in bytes (`CVOPS_MAX_DECODED_BYTES`).
    #[serde(default = "default_max_decoded_bytes")]
    pub max_decoded_bytes: u64,
}

fn default_max_decoded_bytes() -> u64 {
    DEFAULT_MAX_DECODED_BYTES
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            max_bytes: 50_000_000,
            max_pixels: 100_000_000,
            max_side: 30_000,
            min_side: 16,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
        }
    }
}

/// What a decoder is about to write, from the header: for the decode budget and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub bytes_per_sample: u8,
}

impl PixelLayout {
    /// The layout of `image`'s colour type.
    pub fn of(width: u32, height: u32, colour: image::ColorType) -> Self {
        let channels = colour.channel_count().max(1);
        let bytes_per_sample = (colour.bytes_per_pixel() / channels).max(1);
        Self { width, height, channels, bytes_per_sample }
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * u64::from(self.channels) * u64::from(self.bytes_per_sample)
    }
}

impl ValidationLimits {
    /// Checked on the header's dimensions, before any pixel is allocated.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), Rejection> {
        if width == 0 || height == 0 {
            return Err(Rejection::new(
                ReasonCode::Corrupt,
                format!("the header says {width}x{height} pixels; the file is damaged, export it again"),
            ));
        }
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_side || height > self.max_side || pixels > self.max_pixels {
            return Err(Rejection::new(
                ReasonCode::TooLarge,
                format!(
                    "{width}x{height} is {:.1} megapixels, over the limit of {:.1} megapixels and {} px a side; downscale it or raise the limit",
                    pixels as f64 / 1e6,
                    self.max_pixels as f64 / 1e6,
                    self.max_side
                ),
            ));
        }
        if width < self.min_side || height < self.min_side {
            return Err(Rejection::new(
                ReasonCode::TooSmall,
                format!("{width}x{height} is under the minimum of {0}x{0} pixels; upload the full-size image", self.min_side),
            ));
        }
        Ok(())
    }

    /// The decode budget, checked on the header before decoding: `layout` is what the decoder
    /// would write, `extra` any further bytes the caller allocates with it (the grey plane
    /// validation computes its statistics on).
    pub fn check_decoded_bytes(&self, layout: PixelLayout, extra: u64) -> Result<(), Rejection> {
        let needed = layout.bytes().saturating_add(extra);
        if needed <= self.max_decoded_bytes {
            return Ok(());
        }
        let PixelLayout { width, height, channels, bytes_per_sample } = layout;
        let shrink = if bytes_per_sample > 1 { "save it with 8 bits per channel or downscale it" } else { "downscale it" };
        let more = if extra > 0 { format!(", and {:.1} MB more for decoding it", extra as f64 / 1e6) } else { String::new() };
        Err(Rejection::new(
            ReasonCode::TooLarge,
            format!(
                "decoding this {width}x{height} image takes {:.1} MB ({width} x {height} pixels x {channels} channels x {bytes_per_sample} bytes a sample{more}), over the decode budget of {:.1} MB; {shrink}, or raise the budget (CVOPS_MAX_DECODED_BYTES)",
                needed as f64 / 1e6,
                self.max_decoded_bytes as f64 / 1e6,
            ),
        ))
    }

    /// The decoder's own guard, behind [`Self::check_decoded_bytes`]: the same side limit, and
    /// allocations up to the decode budget.
    pub fn image_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_decoded_bytes);
        limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_channels_and_bytes_per_sample_not_only_pixels() {
        let limits = ValidationLimits::default();
        let rgba16 = PixelLayout::of(9_999, 9_999, image::ColorType::Rgba16);
        assert_eq!(rgba16.bytes(), 9_999 * 9_999 * 8);
        assert!(limits.check_dimensions(9_999, 9_999).is_ok(), "under the pixel limit");
        let refused = limits.check_decoded_bytes(rgba16, 0).unwrap_err();
        assert_eq!(refused.reason, ReasonCode::TooLarge);
        assert!(refused.message.contains("799.8 MB") && refused.message.contains("8 bits per channel"), "{}", refused.message);
        let grey = PixelLayout::of(9_999, 9_999, image::ColorType::L8);
        assert!(limits.check_decoded_bytes(grey, 0).is_ok());
        assert!(limits.check_decoded_bytes(grey, 200_000_000).is_err(), "the extra bytes count");
    }
}
