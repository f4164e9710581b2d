//! Decoding an image for a model: the same guards as validation (byte limit, sniffed format,
//! dimensions and the decode budget before pixels, complete structure, `image::Limits`, panics
//! caught), but keeping the pixels. The trainer, the evaluation and the endpoint all decode
//! through here, so a file that validation accepts decodes the same way everywhere, and a hostile
//! one fails with a reason code.
//!
//! [`decode_image`] keeps every pixel (the endpoint, whose own limits are small).
//! [`decode_image_downscaled`] is for a consumer that only needs a short side of so many pixels
//! (training and evaluation resize to the model's input anyway): a large JPEG is decoded at 1/2,
//! 1/4 or 1/8 scale by the IDCT itself, so its full-size pixels never exist; other formats are
//! decoded within the budget and shrunk at once, so what is kept is small.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::error::{DecodingError, ImageFormatHint};
use image::{DynamicImage, GenericImageView, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::{classify, sniff, structure, Format, PixelLayout, ValidationLimits, ValidationReport};
use crate::reason::{ReasonCode, Rejection};

/// Decodes `data` into pixels, or says why it cannot.
pub fn decode_image(data: &[u8], limits: &ValidationLimits) -> Result<DynamicImage, Rejection> {
    guarded(data, limits, |format| decode_whole(data, format, limits))
}

/// The checks [`decode_image`] makes before it decodes (byte limit, format, dimensions, decode
/// budget), from the header alone: what decoding would write, or why it will not be decoded.
pub fn inspect_header(data: &[u8], limits: &ValidationLimits) -> Result<PixelLayout, Rejection> {
    guarded(data, limits, |format| {
        let mut reader = ImageReader::with_format(Cursor::new(data), format.image_format());
        reader.no_limits();
        let decoder = reader.into_decoder().map_err(|e| classify(e, format, data))?;
        let (width, height) = decoder.dimensions();
        limits.check_dimensions(width, height)?;
        let layout = PixelLayout::of(width, height, decoder.color_type());
        limits.check_decoded_bytes(layout, super::decoder_overhead(data, format))?;
        Ok(layout)
    })
}

/// Decodes `data` to an image whose short side is `short_side` pixels (or the image's own, when
/// that is smaller; nothing is enlarged), keeping the aspect ratio. The decode budget applies to
/// what is decoded: the scaled JPEG, or the whole image of any other format.
pub fn decode_image_downscaled(data: &[u8], limits: &ValidationLimits, short_side: u32) -> Result<DynamicImage, Rejection> {
    let short_side = short_side.max(1);
    let decoded = guarded(data, limits, |format| {
        if format == Format::Jpeg {
            if let Some(image) = jpeg_scaled(data, limits, short_side)? {
                return Ok(image);
            }
        }
        decode_whole(data, format, limits)
    })?;
    Ok(shrink(decoded, short_side))
}

/// The checks before any decoder runs, and the decoder run inside `catch_unwind`.
fn guarded<T>(
    data: &[u8],
    limits: &ValidationLimits,
    decode: impl FnOnce(Format) -> Result<T, Rejection>,
) -> Result<T, Rejection> {
    if data.is_empty() {
        return Err(Rejection::new(ReasonCode::Empty, "the image is empty (0 bytes)"));
    }
    if data.len() as u64 > limits.max_bytes {
        return Err(ValidationReport::over_byte_limit(data.len() as u64, limits));
    }
    let format = sniff::sniff(data)?;
    catch_unwind(AssertUnwindSafe(|| decode(format))).unwrap_or_else(|_| {
        Err(Rejection::new(
            ReasonCode::Corrupt,
            format!("the {format} decoder failed on this file (it panicked); the file is damaged"),
        ))
    })
}

fn decode_whole(data: &[u8], format: Format, limits: &ValidationLimits) -> Result<DynamicImage, Rejection> {
    let mut reader = ImageReader::with_format(Cursor::new(data), format.image_format());
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| classify(e, format, data))?;
    let (width, height) = decoder.dimensions();
    limits.check_dimensions(width, height)?;
    limits.check_decoded_bytes(PixelLayout::of(width, height, decoder.color_type()), super::decoder_overhead(data, format))?;
    structure::check_complete(data, format)?;
    decoder.set_limits(limits.image_limits()).map_err(|e| classify(e, format, data))?;
    DynamicImage::from_decoder(decoder).map_err(|e| classify(e, format, data))
}

/// A JPEG decoded at the smallest IDCT scale (1/8, 1/4, 1/2) that keeps both sides at least
/// `short_side`. `Ok(None)` when no scale would reduce it, or the file is one this path does not
/// take (CMYK, 12-bit, a feature the scaling decoder lacks): the caller decodes it whole.
fn jpeg_scaled(data: &[u8], limits: &ValidationLimits, short_side: u32) -> Result<Option<DynamicImage>, Rejection> {
    let reject = |e: jpeg_decoder::Error| {
        let error = ImageError::Decoding(DecodingError::new(ImageFormatHint::Exact(ImageFormat::Jpeg), e.to_string()));
        classify(error, Format::Jpeg, data)
    };
    let mut decoder = jpeg_decoder::Decoder::new(data);
    match decoder.read_info() {
        Ok(()) => {}
        Err(jpeg_decoder::Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(reject(e)),
    }
    let Some(info) = decoder.info() else { return Ok(None) };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    limits.check_dimensions(width, height)?;
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        _ => return Ok(None),
    };
    let Some(factor) = [8u32, 4, 2].into_iter().find(|k| width.div_ceil(*k) >= short_side && height.div_ceil(*k) >= short_side)
    else {
        return Ok(None);
    };
    let (scaled_width, scaled_height) =
        decoder.scale(width.div_ceil(factor) as u16, height.div_ceil(factor) as u16).map_err(reject)?;
    let (scaled_width, scaled_height) = (u32::from(scaled_width), u32::from(scaled_height));
    let layout = PixelLayout { width: scaled_width, height: scaled_height, channels, bytes_per_sample: 1 };
    limits.check_decoded_bytes(layout, structure::jpeg_coefficient_bytes(data))?;
    structure::check_complete(data, Format::Jpeg)?;
    let pixels = match decoder.decode() {
        Ok(pixels) => pixels,
        Err(jpeg_decoder::Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(reject(e)),
    };
    let image = if channels == 1 {
        image::GrayImage::from_raw(scaled_width, scaled_height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(scaled_width, scaled_height, pixels).map(DynamicImage::ImageRgb8)
    };
    image.map(Some).ok_or_else(|| {
        Rejection::new(ReasonCode::Corrupt, "the JPEG decoder returned fewer pixels than the header says; export it again")
    })
}

/// Shrinks `image` so its short side is `short_side` (area averaging), or returns it as it is.
fn shrink(image: DynamicImage, short_side: u32) -> DynamicImage {
    let (width, height) = image.dimensions();
    let short = width.min(height);
    if short <= short_side {
        return image;
    }
    let scale = f64::from(short_side) / f64::from(short);
    let side = |len: u32| ((f64::from(len) * scale).round() as u32).max(1);
    image.thumbnail_exact(side(width), side(height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn a_png_decodes_to_its_pixels() {
        let mut png = Vec::new();
        let image = image::GrayImage::from_fn(20, 17, |x, y| image::Luma([(x * 10 + y) as u8]));
        image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let decoded = decode_image(&png, &ValidationLimits::default()).unwrap();
        assert_eq!(decoded.into_luma8(), image);
    }

    #[test]
    fn hostile_bytes_get_a_reason_instead_of_pixels() {
        let limits = ValidationLimits::default();
        assert_eq!(decode_image(b"", &limits).unwrap_err().reason, ReasonCode::Empty);
        assert_eq!(decode_image(b"<html>hello</html>", &limits).unwrap_err().reason, ReasonCode::NotAnImage);
        let mut png = Vec::new();
        image::GrayImage::new(64, 64).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        assert_eq!(decode_image(&png[..png.len() / 2], &limits).unwrap_err().reason, ReasonCode::Truncated);
        assert_eq!(decode_image_downscaled(&png[..png.len() / 2], &limits, 16).unwrap_err().reason, ReasonCode::Truncated);
    }

    #[test]
    fn the_decode_budget_is_checked_before_decoding() {
        let png = encode(&DynamicImage::ImageRgba16(image::ImageBuffer::new(200, 100)), ImageFormat::Png);
        let tight = ValidationLimits { max_decoded_bytes: 200 * 100 * 8 - 1, ..ValidationLimits::default() };
        let refused = decode_image(&png, &tight).unwrap_err();
        assert_eq!(refused.reason, ReasonCode::TooLarge, "{}", refused.message);
        assert!(refused.message.contains("decode budget"), "{}", refused.message);
        let roomy = ValidationLimits { max_decoded_bytes: 200 * 100 * 8, ..ValidationLimits::default() };
        assert_eq!(decode_image(&png, &roomy).unwrap().dimensions(), (200, 100));
    }

    #[test]
    fn a_large_jpeg_is_decoded_at_a_fraction_of_its_size_and_keeps_its_short_side() {
        let photo = DynamicImage::ImageRgb8(image::RgbImage::from_fn(1600, 1000, |x, y| {
            image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 11) as u8])
        }));
        let jpeg = encode(&photo, ImageFormat::Jpeg);
        // The whole image would not fit the budget; an eighth of it does.
        let tight = ValidationLimits { max_decoded_bytes: 1_000_000, ..ValidationLimits::default() };
        assert_eq!(decode_image(&jpeg, &tight).unwrap_err().reason, ReasonCode::TooLarge);
        let small = decode_image_downscaled(&jpeg, &tight, 100).unwrap();
        assert_eq!(small.dimensions(), (160, 100));
        let whole = decode_image(&jpeg, &ValidationLimits::default()).unwrap();
        let reference = whole.thumbnail_exact(160, 100).into_rgb8();
        let small = small.into_rgb8();
        let total_error: f64 = small
            .pixels()
            .zip(reference.pixels())
            .map(|(a, b)| a.0.iter().zip(b.0.iter()).map(|(p, q)| (f64::from(*p) - f64::from(*q)).abs()).sum::<f64>())
            .sum();
        let mean_error = total_error / (160.0 * 100.0 * 3.0);
        assert!(mean_error < 4.0, "the scaled decode looks like the whole one shrunk: {mean_error}");
    }

    #[test]
    fn other_formats_are_shrunk_and_small_images_are_kept_as_they_are() {
        let image = DynamicImage::ImageLuma8(image::GrayImage::from_fn(300, 900, |x, y| image::Luma([(x ^ y) as u8])));
        let png = encode(&image, ImageFormat::Png);
        let limits = ValidationLimits::default();
        assert_eq!(decode_image_downscaled(&png, &limits, 100).unwrap().dimensions(), (100, 300));
        assert_eq!(decode_image_downscaled(&png, &limits, 512).unwrap(), image, "nothing is enlarged or resampled");
        let jpeg = encode(&image, ImageFormat::Jpeg);
        assert_eq!(decode_image_downscaled(&jpeg, &limits, 400).unwrap().dimensions(), (300, 900));
        assert_eq!(decode_image_downscaled(&jpeg, &limits, 64).unwrap().dimensions(), (64, 192));
    }
}
