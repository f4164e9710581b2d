//! The validator on images made here, in every accepted format, whole and damaged.

use std::io::Cursor;

use cvops_core::validate::{validate, Format, ValidationLimits};
use cvops_core::ReasonCode;
use image::{DynamicImage, ImageFormat, RgbImage};

fn photo(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, ((x ^ y) & 0xFF) as u8])
    }))
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

const FORMATS: [(ImageFormat, Format); 6] = [
    (ImageFormat::Jpeg, Format::Jpeg),
    (ImageFormat::Png, Format::Png),
    (ImageFormat::WebP, Format::Webp),
    (ImageFormat::Gif, Format::Gif),
    (ImageFormat::Bmp, Format::Bmp),
    (ImageFormat::Tiff, Format::Tiff),
];

fn reason(data: &[u8]) -> Option<ReasonCode> {
    validate(data, &ValidationLimits::default()).rejection.map(|r| r.reason)
}

#[test]
fn every_accepted_format_validates_with_its_facts() {
    for (image_format, format) in FORMATS {
        let data = encode(&photo(64, 48), image_format);
        let report = validate(&data, &ValidationLimits::default());
        assert!(report.is_valid(), "{format}: {:?}", report.rejection);
        assert_eq!(report.format, Some(format));
        assert_eq!((report.width, report.height), (Some(64), Some(48)));
        let stats = report.stats.unwrap();
        assert!(stats.brightness > 50.0 && stats.contrast > 10.0, "{format}: {stats:?}");
        assert_eq!(report.sha256.len(), 64);
        assert_eq!(report.bytes, data.len() as u64);
    }
}

#[test]
fn empty_bytes_are_empty() {
    assert_eq!(reason(b""), Some(ReasonCode::Empty));
}

#[test]
fn text_html_and_archives_are_not_images() {
    for data in [
        &b"hello, world\n"[..],
        b"<!DOCTYPE html><html><body>404</body></html>",
        b"PK\x03\x04\x14\x00\x00\x00zipzip",
        b"%PDF-1.7\n",
    ] {
        let report = validate(data, &ValidationLimits::default());
        let rejection = report.rejection.unwrap();
        assert_eq!(rejection.reason, ReasonCode::NotAnImage, "{:?}", String::from_utf8_lossy(data));
        assert!(rejection.message.contains("upload JPEG, PNG"), "{}", rejection.message);
    }
}

#[test]
fn other_image_formats_are_unsupported() {
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    let ico = b"\0\0\x01\0\x01\0\x20\x20\0\0\x01\0\x20\0";
    for data in [&heic[..], b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"qoif\0\0\0\x10\0\0\0\x10\x03\0", ico] {
        assert_eq!(reason(data), Some(ReasonCode::UnsupportedFormat), "{:?}", &data[..8]);
    }
}

#[test]
fn images_under_the_minimum_side_are_too_small() {
    assert_eq!(reason(&encode(&photo(15, 100), ImageFormat::Png)), Some(ReasonCode::TooSmall));
    assert_eq!(reason(&encode(&photo(1, 1), ImageFormat::Png)), Some(ReasonCode::TooSmall));
    assert_eq!(reason(&encode(&photo(16, 16), ImageFormat::Png)), None);
}

#[test]
fn limits_are_configurable_and_checked_before_decoding() {
    let data = encode(&photo(200, 100), ImageFormat::Png);
    let tight = ValidationLimits { max_pixels: 10_000, ..ValidationLimits::default() };
    assert_eq!(validate(&data, &tight).rejection.unwrap().reason, ReasonCode::TooLarge);
    let narrow = ValidationLimits { max_side: 150, ..ValidationLimits::default() };
    assert_eq!(validate(&data, &narrow).rejection.unwrap().reason, ReasonCode::TooLarge);
    let small_files = ValidationLimits { max_bytes: 100, ..ValidationLimits::default() };
    assert_eq!(validate(&data, &small_files).rejection.unwrap().reason, ReasonCode::TooLarge);
    let picky = ValidationLimits { min_side: 101, ..ValidationLimits::default() };
    assert_eq!(validate(&data, &picky).rejection.unwrap().reason, ReasonCode::TooSmall);
}

#[test]
fn images_cut_short_are_never_accepted() {
    for (image_format, format) in FORMATS {
        let data = encode(&photo(96, 64), image_format);
        for cut in [data.len() - 1, data.len() - 2, data.len() * 3 / 4, data.len() / 2, 40, 13, 5] {
            let report = validate(&data[..cut], &ValidationLimits::default());
            let code = report.rejection.as_ref().map(|r| r.reason);
            assert!(
                matches!(code, Some(ReasonCode::Truncated | ReasonCode::Corrupt)),
                "{format} cut to {cut} of {}: {:?}",
                data.len(),
                report.rejection
            );
        }
    }
}

#[test]
fn the_four_common_formats_cut_in_half_say_truncated() {
    for image_format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif] {
        let data = encode(&photo(96, 64), image_format);
        assert_eq!(reason(&data[..data.len() / 2]), Some(ReasonCode::Truncated), "{image_format:?}");
    }
}

#[test]
fn damaged_compressed_data_is_corrupt_or_truncated_and_never_panics() {
    for (image_format, format) in FORMATS {
        let mut data = encode(&photo(96, 64), image_format);
        let len = data.len();
        // Overwrite the middle third with a pattern.
        for (i, byte) in data[len / 3..2 * len / 3].iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(151) ^ 0x5A;
        }
        let report = validate(&data, &ValidationLimits::default());
        // BMP and TIFF store raw pixels, so garbage pixels still make a valid image.
        if !matches!(format, Format::Bmp | Format::Tiff) {
            assert!(!report.is_valid(), "{format} with garbage in the middle was accepted");
        }
    }
}

#[test]
fn a_header_claiming_a_huge_image_is_too_large_without_decoding() {
    // A PNG header for 30000 x 30000 with no pixel data at all: rejected on the dimensions.
    let mut png = encode(&photo(16, 16), ImageFormat::Png);
    png[16..20].copy_from_slice(&30_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&30_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let report = validate(&png, &ValidationLimits::default());
    assert_eq!(report.rejection.unwrap().reason, ReasonCode::TooLarge);
    assert_eq!((report.width, report.height), (Some(30_000), Some(30_000)));
}

/// CRC-32 (IEEE), for rewriting a PNG chunk by hand.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
