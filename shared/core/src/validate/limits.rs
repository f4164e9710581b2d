use serde::{Deserialize, Serialize};

use crate::reason::{ReasonCode, Rejection};

/// What a valid upload may be. Defaults: 50 MB, 100 megapixels, 30,000 px a side, 16 px minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationLimits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_side: u32,
    pub min_side: u32,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self { max_bytes: 50_000_000, max_pixels: 100_000_000, max_side: 30_000, min_side: 16 }
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

    /// The decoder's own guard: the same side limit, and room for the largest pixel type
    /// (16-bit RGBA, 8 bytes a pixel) of the largest allowed image.
    pub fn image_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8));
        limits
    }
}
