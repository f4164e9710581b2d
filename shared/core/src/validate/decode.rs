//! Decoding an image for a model: the same guards as validation (byte limit, sniffed format,
//! dimensions before pixels, complete structure, `image::Limits`, panics caught), but keeping the
//! pixels. The trainer, the evaluation and the endpoint all decode through here, so a file that
//! validation accepts decodes the same way everywhere, and a hostile one fails with a reason code.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ImageDecoder, ImageReader};

use super::{classify, sniff, structure, ValidationLimits, ValidationReport};
use crate::reason::{ReasonCode, Rejection};

/// Decodes `data` into pixels, or says why it cannot.
pub fn decode_image(data: &[u8], limits: &ValidationLimits) -> Result<DynamicImage, Rejection> {
    if data.is_empty() {
        return Err(Rejection::new(ReasonCode::Empty, "the image is empty (0 bytes)"));
    }
    if data.len() as u64 > limits.max_bytes {
        return Err(ValidationReport::over_byte_limit(data.len() as u64, limits));
    }
    let format = sniff::sniff(data)?;
    let decoded = catch_unwind(AssertUnwindSafe(|| -> Result<DynamicImage, Rejection> {
        let mut reader = ImageReader::with_format(Cursor::new(data), format.image_format());
        reader.no_limits();
        let mut decoder = reader.into_decoder().map_err(|e| classify(e, format, data))?;
        let (width, height) = decoder.dimensions();
        limits.check_dimensions(width, height)?;
        structure::check_complete(data, format)?;
        decoder.set_limits(limits.image_limits()).map_err(|e| classify(e, format, data))?;
        DynamicImage::from_decoder(decoder).map_err(|e| classify(e, format, data))
    }));
    decoded.unwrap_or_else(|_| {
        Err(Rejection::new(
            ReasonCode::Corrupt,
            format!("the {format} decoder failed on this file (it panicked); the file is damaged"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_decodes_to_its_pixels() {
        let mut png = Vec::new();
        let image = image::GrayImage::from_fn(20, 17, |x, y| image::Luma([(x * 10 + y) as u8]));
        image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let decoded = decode_image(&png, &ValidationLimits::default()).unwrap();
        assert_eq!(decoded.into_luma8(), image);
    }

    #[test]
    fn hostile_bytes_get_a_reason_instead_of_pixels() {
        let limits = ValidationLimits::default();
        assert_eq!(decode_image(b"", &limits).unwrap_err().reason, ReasonCode::Empty);
        assert_eq!(decode_image(b"<html>hello</html>", &limits).unwrap_err().reason, ReasonCode::NotAnImage);
        let mut png = Vec::new();
        image::GrayImage::new(64, 64).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert_eq!(decode_image(&png[..png.len() / 2], &limits).unwrap_err().reason, ReasonCode::Truncated);
    }
}
