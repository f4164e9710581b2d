//! The feature baseline of a snapshot: fixed-scale histograms of the image statistics ingest
//! records, which monitoring compares live traffic with bin by bin.

use serde::{Deserialize, Serialize};

use crate::catalog::ImageRecord;

/// How a feature's values map to bins: fixed for every snapshot and every monitoring window, so
/// their histograms can be compared bin by bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Linear,
    /// log2(x)
    Log2,
    /// log10(1 + x)
    Log10OnePlus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub scale: Scale,
    /// The range of the scaled value the bins cover; values outside land in the end bins.
    pub low: f64,
    pub high: f64,
    pub counts: Vec<u64>,
}

impl Histogram {
    pub fn new(scale: Scale, low: f64, high: f64, bins: usize) -> Self {
        Self { scale, low, high, counts: vec![0; bins] }
    }

    /// The value on the histogram's scale.
    pub fn scaled(&self, value: f64) -> f64 {
        match self.scale {
            Scale::Linear => value,
            Scale::Log2 => value.max(1.0).log2(),
            Scale::Log10OnePlus => value.max(0.0).ln_1p() / std::f64::consts::LN_10,
        }
    }

    /// The inverse of [`Histogram::scaled`].
    pub fn unscaled(&self, scaled: f64) -> f64 {
        match self.scale {
            Scale::Linear => scaled,
            Scale::Log2 => scaled.exp2(),
            Scale::Log10OnePlus => 10f64.powf(scaled) - 1.0,
        }
    }

    /// The centre of each bin, on the histogram's scale.
    pub fn centres(&self) -> Vec<f64> {
        let width = (self.high - self.low) / self.counts.len() as f64;
        (0..self.counts.len()).map(|i| self.low + (i as f64 + 0.5) * width).collect()
    }

    /// The `q`-quantile (0 to 1), interpolated inside its bin and mapped back to the value's
    /// units; `None` when empty. Exact to a bin's width.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let width = (self.high - self.low) / self.counts.len() as f64;
        let target = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= target {
                let inside = ((target - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some(self.unscaled(self.low + (i as f64 + inside) * width));
            }
            below += count;
        }
        Some(self.unscaled(self.high))
    }

    pub fn bin(&self, value: f64) -> usize {
        let scaled = self.scaled(value);
        let position = (scaled - self.low) / (self.high - self.low) * self.counts.len() as f64;
        (position.max(0.0) as usize).min(self.counts.len() - 1)
    }

    pub fn add(&mut self, value: f64) {
        if value.is_finite() {
            let bin = self.bin(value);
            self.counts[bin] += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The training distribution of the input features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub brightness: Histogram,
    pub contrast: Histogram,
    pub sharpness: Histogram,
    pub width: Histogram,
    pub height: Histogram,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            brightness: Histogram::new(Scale::Linear, 0.0, 256.0, 32),
            contrast: Histogram::new(Scale::Linear, 0.0, 128.0, 32),
            sharpness: Histogram::new(Scale::Log10OnePlus, 0.0, 7.0, 28),
            width: Histogram::new(Scale::Log2, 4.0, 16.0, 24),
            height: Histogram::new(Scale::Log2, 4.0, 16.0, 24),
        }
    }
}

impl Baseline {
    pub fn add(&mut self, record: &ImageRecord) {
        let features = [
            (&mut self.brightness, record.brightness),
            (&mut self.contrast, record.contrast),
            (&mut self.sharpness, record.sharpness),
            (&mut self.width, record.width.map(f64::from)),
            (&mut self.height, record.height.map(f64::from)),
        ];
        for (histogram, value) in features {
            if let Some(value) = value {
                histogram.add(value);
            }
        }
    }
}

/// The training distribution of the boxes of a detection snapshot, for monitoring to compare the
/// served detections with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxBaseline {
    pub boxes_per_image: Histogram,
    /// The square root of the box's share of the image's area: its relative side, 0 to 1.
    pub relative_size: Histogram,
    /// log2 of width over height in pixels: 0 is square, 1 twice as wide as high.
    pub log2_aspect: Histogram,
    /// Boxes per class index.
    pub classes: Vec<u64>,
}

impl BoxBaseline {
    pub fn new(classes: usize) -> Self {
        Self {
            boxes_per_image: Histogram::new(Scale::Linear, 0.0, 32.0, 32),
            relative_size: Histogram::new(Scale::Linear, 0.0, 1.0, 20),
            log2_aspect: Histogram::new(Scale::Linear, -4.0, 4.0, 16),
            classes: vec![0; classes],
        }
    }

    /// Adds one image's boxes; `width` and `height` are the image's, in pixels.
    pub fn add(&mut self, boxes: &[crate::annotation::BoundingBox], width: u32, height: u32) {
        self.boxes_per_image.add(boxes.len() as f64);
        for b in boxes {
            self.relative_size.add((b.w * b.h).sqrt());
            let px = b.in_pixels(width.max(1), height.max(1));
            self.log2_aspect.add((px.width / px.height).log2());
            if let Some(count) = self.classes.get_mut(b.class as usize) {
                *count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_range_land_in_the_end_bins() {
        let mut h = Histogram::new(Scale::Linear, 0.0, 256.0, 32);
        for v in [-5.0, 0.0, 7.9, 8.0, 255.9, 300.0, f64::NAN] {
            h.add(v);
        }
        assert_eq!((h.counts[0], h.counts[1], h.counts[31], h.total()), (3, 1, 2, 6));
    }

    #[test]
    fn log_scales_spread_sizes_and_sharpness() {
        let w = Histogram::new(Scale::Log2, 4.0, 16.0, 24);
        assert!(w.bin(28.0) < w.bin(224.0) && w.bin(224.0) < w.bin(4032.0));
        let s = Histogram::new(Scale::Log10OnePlus, 0.0, 7.0, 28);
        assert_eq!(s.bin(0.0), 0);
        assert!(s.bin(100.0) < s.bin(12_000.0));
    }
}
