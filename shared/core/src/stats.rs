//! Image statistics on the 8-bit grey plane: what the catalog records, the monitor compares, and
//! the near-duplicate index is keyed by.
//!
//! Integer accumulators keep the sums exact and the pass over a 12-megapixel photo cheap.

use image::{imageops, GrayImage};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    /// Mean grey level, 0 to 255.
    pub brightness: f64,
    /// Standard deviation of the grey levels.
    pub contrast: f64,
    /// Variance of the 4-neighbour Laplacian over the interior pixels: low means blurry.
    pub sharpness: f64,
    /// 64-bit perceptual hash (pHash): the signs of the lowest 8x8 DCT frequencies of a 32x32
    /// grey thumbnail against their median.
    pub phash: u64,
}

impl ImageStats {
    pub fn of(grey: &GrayImage) -> Self {
        let (brightness, contrast) = mean_and_std(grey.as_raw());
        Self { brightness, contrast, sharpness: laplacian_variance(grey), phash: phash(grey) }
    }
}

fn mean_and_std(pixels: &[u8]) -> (f64, f64) {
    if pixels.is_empty() {
        return (0.0, 0.0);
    }
    let (mut sum, mut sum_sq) = (0u64, 0u64);
    for &p in pixels {
        sum += u64::from(p);
        sum_sq += u64::from(p) * u64::from(p);
    }
    let n = pixels.len() as f64;
    let mean = sum as f64 / n;
    let var = (sum_sq as f64 / n - mean * mean).max(0.0);
    (mean, var.sqrt())
}

fn laplacian_variance(grey: &GrayImage) -> f64 {
    let (w, h) = (grey.width() as usize, grey.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let px = grey.as_raw();
    let (mut sum, mut sum_sq, mut n) = (0i64, 0i64, 0i64);
    for y in 1..h - 1 {
        let (up, row, down) = (&px[(y - 1) * w..y * w], &px[y * w..(y + 1) * w], &px[(y + 1) * w..(y + 2) * w]);
        for x in 1..w - 1 {
            let lap = 4 * i64::from(row[x])
                - i64::from(up[x])
                - i64::from(down[x])
                - i64::from(row[x - 1])
                - i64::from(row[x + 1]);
            sum += lap;
            sum_sq += lap * lap;
        }
        n += (w - 2) as i64;
    }
    let mean = sum as f64 / n as f64;
    (sum_sq as f64 / n as f64 - mean * mean).max(0.0)
}

/// pHash. Chosen over the cheaper difference hash because its bits are balanced by
/// construction (half lie above the median): on images with flat backgrounds, such as scanned
/// digits or product shots, a difference hash is mostly zeros, so unrelated images look alike and
/// crowd the same near-duplicate bands.
pub fn phash(grey: &GrayImage) -> u64 {
    const N: usize = 32;
    const K: usize = 8;
    let small = imageops::thumbnail(grey, N as u32, N as u32);
    let px = |x: usize, y: usize| f64::from(small.get_pixel(x as u32, y as u32)[0]);
    let basis: Vec<f64> = (0..K * N)
        .map(|i| {
            let (k, n) = (i / N, i % N);
            (std::f64::consts::PI * (2 * n + 1) as f64 * k as f64 / (2 * N) as f64).cos()
        })
        .collect();
    // The separable DCT-II, keeping only the K lowest frequencies in each direction.
    let mut rows = [[0f64; K]; N];
    for (y, row) in rows.iter_mut().enumerate() {
        for (k, out) in row.iter_mut().enumerate() {
            *out = (0..N).map(|x| px(x, y) * basis[k * N + x]).sum();
        }
    }
    let mut coefficients = [0f64; K * K];
    for v in 0..K {
        for u in 0..K {
            coefficients[v * K + u] = (0..N).map(|y| rows[y][u] * basis[v * N + y]).sum();
        }
    }
    let mut sorted = coefficients;
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[K * K / 2 - 1] + sorted[K * K / 2]) / 2.0;
    coefficients.iter().fold(0u64, |hash, &c| (hash << 1) | u64::from(c > median))
}

pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_has_no_contrast_and_no_sharpness() {
        let s = ImageStats::of(&GrayImage::from_pixel(32, 32, image::Luma([100])));
        assert_eq!((s.brightness, s.contrast, s.sharpness), (100.0, 0.0, 0.0));
    }

    #[test]
    fn a_checkerboard_is_sharper_than_a_gradient() {
        let checker = GrayImage::from_fn(64, 64, |x, y| image::Luma([if (x + y) % 2 == 0 { 0 } else { 255 }]));
        let gradient = GrayImage::from_fn(64, 64, |x, _| image::Luma([(x * 4) as u8]));
        let (c, g) = (ImageStats::of(&checker), ImageStats::of(&gradient));
        assert!(c.sharpness > 1000.0 * (g.sharpness + 1.0), "{c:?} {g:?}");
        assert!((c.brightness - 127.5).abs() < 0.01 && (c.contrast - 127.5).abs() < 0.01);
    }

    #[test]
    fn small_edits_move_the_phash_a_little_and_other_images_a_lot() {
        let base = GrayImage::from_fn(90, 80, |x, y| image::Luma([((x * 7 + y * 3) % 200) as u8]));
        let mut edited = base.clone();
        edited.put_pixel(5, 5, image::Luma([255]));
        let other = GrayImage::from_fn(90, 80, |x, y| image::Luma([((x * 13) ^ (y * 29)) as u8]));
        assert!(hamming(phash(&base), phash(&edited)) <= 2);
        assert!(hamming(phash(&base), phash(&other)) > 10);
        // Balanced: about half the bits are set.
        assert!((24..=40).contains(&phash(&base).count_ones()), "{:064b}", phash(&base));
    }
}
