//! The validator on damaged versions of every sample image: cut at 64 points, and with bytes
//! flipped at random (a fixed seed, so every run checks the same inputs). It must never panic or
//! accept a file cut short; `cargo fuzz run validate` (fuzz/) explores further.

use std::io::Cursor;
use std::path::Path;

use cvops_core::validate::{validate, ValidationLimits};
use image::{DynamicImage, ImageFormat, RgbImage};

/// xorshift64*: deterministic bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn samples() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets");
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for digit in 0..10 {
        let path = root.join(format!("digits/test/{digit}"));
        let first = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).min().unwrap();
        out.push((first.display().to_string(), std::fs::read(first).unwrap()));
    }
    let photo = DynamicImage::ImageRgb8(RgbImage::from_fn(120, 90, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x * y) % 256) as u8])
    }));
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif, ImageFormat::Bmp, ImageFormat::Tiff]
    {
        let mut buf = Cursor::new(Vec::new());
        photo.write_to(&mut buf, format).unwrap();
        out.push((format!("{format:?}"), buf.into_inner()));
    }
    out
}

#[test]
fn every_sample_cut_at_64_points_is_never_accepted() {
    let limits = ValidationLimits::default();
    for (name, data) in samples() {
        assert!(validate(&data, &limits).is_valid(), "{name} is valid whole");
        for i in 0..64 {
            let cut = data.len() * i / 64;
            let report = validate(&data[..cut], &limits);
            assert!(!report.is_valid(), "{name} cut to {cut} of {} bytes was accepted", data.len());
        }
    }
}

#[test]
fn flipped_bytes_never_panic_and_always_give_a_verdict() {
    let limits = ValidationLimits::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut rejected = 0;
    let mut total = 0;
    for (_, data) in samples() {
        for _ in 0..64 {
            let mut damaged = data.clone();
            let flips = 1 + rng.next() % 8;
            for _ in 0..flips {
                let at = (rng.next() as usize) % damaged.len();
                damaged[at] ^= (rng.next() % 255 + 1) as u8;
            }
            let report = validate(&damaged, &limits);
            assert_eq!(report.bytes, damaged.len() as u64);
            if let Some(rejection) = &report.rejection {
                assert!(!rejection.message.is_empty());
                rejected += 1;
            }
            total += 1;
        }
    }
    // Flips in pixel data can leave a valid image; flips in headers and checksums must not pass.
    assert!(rejected > total / 4, "only {rejected} of {total} damaged files were rejected");
}
