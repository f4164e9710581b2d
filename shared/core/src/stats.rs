//! Image statistics on the 8-bit grey plane: what the catalog records, the monitor compares, and
//! the near-duplicate index is keyed by.
//!
//! Integer accumulators keep the sums exact and the pass over a 12-megapixel photo cheap.

use image::GrayImage;
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
        Self::of_luma(grey.as_raw(), grey.width() as usize, grey.height() as usize)
    }

    /// From a row-major 8-bit grey plane of `width` x `height`.
    pub fn of_luma(pixels: &[u8], width: usize, height: usize) -> Self {
        assert_eq!(pixels.len(), width * height, "the plane is width x height");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { Self::of_luma_avx2(pixels, width, height) };
        }
        Self::of_luma_portable(pixels, width, height)
    }

    /// The same loops compiled for AVX2: twice the SIMD width of the x86-64 baseline, which the
    /// grey-plane passes over a 12-megapixel photo are bound by. (aarch64's baseline NEON needs
    /// no such twin.)
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn of_luma_avx2(pixels: &[u8], width: usize, height: usize) -> Self {
        Self::of_luma_portable(pixels, width, height)
    }

    #[inline(always)]
    fn of_luma_portable(pixels: &[u8], width: usize, height: usize) -> Self {
        let (brightness, contrast) = mean_and_std(pixels);
        Self {
            brightness,
            contrast,
            sharpness: laplacian_variance(pixels, width, height),
            phash: phash_luma(pixels, width, height),
        }
    }
}

#[inline(always)]
fn mean_and_std(pixels: &[u8]) -> (f64, f64) {
    if pixels.is_empty() {
        return (0.0, 0.0);
    }
    // u32 partial sums over chunks small enough not to overflow (255^2 * 16384 < 2^32), which the
    // compiler turns into wide SIMD adds; the totals are exact.
    let (mut sum, mut sum_sq) = (0u64, 0u64);
    for chunk in pixels.chunks(16_384) {
        let (mut s, mut sq) = (0u32, 0u32);
        for &p in chunk {
            s += u32::from(p);
            sq += u32::from(p) * u32::from(p);
        }
        sum += u64::from(s);
        sum_sq += u64::from(sq);
    }
    let n = pixels.len() as f64;
    let mean = sum as f64 / n;
    let var = (sum_sq as f64 / n - mean * mean).max(0.0);
    (mean, var.sqrt())
}

#[inline(always)]
fn laplacian_variance(px: &[u8], w: usize, h: usize) -> f64 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    for y in 1..h - 1 {
        let (up, row, down) = (&px[(y - 1) * w..y * w], &px[y * w..(y + 1) * w], &px[(y + 1) * w..(y + 2) * w]);
        // Zipped slices instead of indexing: no bounds checks, so the row vectorises. A row's
        // sums fit i32/u32 for rows up to 4,000 px wide; longer rows are split.
        for start in (1..w - 1).step_by(4_000) {
            let end = (start + 4_000).min(w - 1);
            let (mut row_sum, mut row_sq) = (0i32, 0u32);
            let centre = &row[start..end];
            let (left, right) = (&row[start - 1..end - 1], &row[start + 1..end + 1]);
            for ((((&c, &l), &r), &u), &d) in centre.iter().zip(left).zip(right).zip(&up[start..end]).zip(&down[start..end]) {
                // i16 lanes (|lap| <= 1020) square and add pairwise into i32 in one instruction.
                let lap = 4 * i16::from(c) - i16::from(l) - i16::from(r) - i16::from(u) - i16::from(d);
                row_sum += i32::from(lap);
                row_sq += (i32::from(lap) * i32::from(lap)) as u32;
            }
            sum += i64::from(row_sum);
            sum_sq += u64::from(row_sq);
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum as f64 / n;
    (sum_sq as f64 / n - mean * mean).max(0.0)
}

/// pHash. Chosen over the cheaper difference hash because its bits are balanced by
/// construction (half lie above the median): on images with flat backgrounds, such as scanned
/// digits or product shots, a difference hash is mostly zeros, so unrelated images look alike and
/// crowd the same near-duplicate bands.
pub fn phash(grey: &GrayImage) -> u64 {
    phash_luma(grey.as_raw(), grey.width() as usize, grey.height() as usize)
}

#[inline(always)]
fn phash_luma(pixels: &[u8], width: usize, height: usize) -> u64 {
    const N: usize = 32;
    const K: usize = 8;
    if width == 0 || height == 0 {
        return 0;
    }
    let small = if width >= N && height >= N {
        box_average(pixels, width, height, N)
    } else {
        // Smaller than the thumbnail: interpolate up rather than repeat pixels, which gives
        // tiny images blocky low frequencies that look alike (on MNIST, 40% more flags).
        let grey = GrayImage::from_raw(width as u32, height as u32, pixels.to_vec()).expect("the plane is width x height");
        image::imageops::thumbnail(&grey, N as u32, N as u32).pixels().map(|p| f64::from(p[0])).collect()
    };
    let px = |x: usize, y: usize| small[y * N + x];
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

/// Shrinks to `n` x `n` by averaging blocks: each row is summed in `n` contiguous segments (which
/// vectorises), so a 12-megapixel photo costs one fast pass.
#[inline(always)]
fn box_average(px: &[u8], w: usize, h: usize, n: usize) -> Vec<f64> {
    let bounds = |len: usize, i: usize| -> (usize, usize) {
        let start = i * len / n;
        (start.min(len - 1), ((i + 1) * len / n).max(start + 1).min(len))
    };
    let columns: Vec<(usize, usize)> = (0..n).map(|i| bounds(w, i)).collect();
    let mut out = vec![0f64; n * n];
    for oy in 0..n {
        let (y0, y1) = bounds(h, oy);
        let mut sums = vec![0u64; n];
        for row in px[y0 * w..y1 * w].chunks_exact(w) {
            for (sum, &(x0, x1)) in sums.iter_mut().zip(&columns) {
                *sum += row[x0..x1].iter().map(|&p| u64::from(p)).sum::<u64>();
            }
        }
        for (ox, sum) in sums.iter().enumerate() {
            let (x0, x1) = columns[ox];
            out[oy * n + ox] = *sum as f64 / ((x1 - x0) * (y1 - y0)) as f64;
        }
    }
    out
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
