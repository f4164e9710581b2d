//! JPEG straight to grey: the validator's fast path for camera photos.
//!
//! Every statistic cvops records is computed on the grey plane, and for a YCbCr JPEG the grey
//! plane is the Y component. Asking zune-jpeg (the decoder `image` itself uses) for luma output
//! still entropy-decodes every block of every component, so damaged or missing data is found as
//! on the general path, but it skips chroma upsampling and colour conversion and writes a third of
//! the bytes. The plane goes into a buffer reused across calls on the thread, so validating a
//! stream of 12-megapixel photos does not fault in 12 fresh megabytes each time.

use std::cell::RefCell;

use image::error::{DecodingError, ImageFormatHint};
use image::{ImageError, ImageFormat};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::JpegDecoder;

use super::{classify, structure, Format, PixelLayout, ValidationLimits, ValidationReport};
use crate::reason::Rejection;
use crate::stats::ImageStats;

/// A reused buffer larger than this is given back after use.
const KEEP_BUFFER_BYTES: usize = 64 << 20;

thread_local! {
    static PLANE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Validates a JPEG on the luma path and returns its statistics, filling the report's facts.
/// `Ok(None)` when the colour space has no direct luma path (CMYK, YCCK): the caller then takes
/// the general path.
pub(super) fn validate(
    data: &[u8],
    limits: &ValidationLimits,
    report: &mut ValidationReport,
) -> Result<Option<ImageStats>, Rejection> {
    let reject = |e: DecodeErrors| classify(decoding_error(e), Format::Jpeg, data);
    // The format allows 65,535 px a side; our own limits are checked below, with our own message.
    let options =
        DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::Luma).set_max_width(65_535).set_max_height(65_535);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    decoder.decode_headers().map_err(reject)?;
    let colour = match decoder.input_colorspace() {
        Some(ColorSpace::YCbCr) => "rgb8",
        Some(ColorSpace::Luma) => "l8",
        _ => return Ok(None),
    };
    let (width, height) = decoder.dimensions().map(|(w, h)| (w as u32, h as u32)).unwrap_or_default();
    report.width = Some(width);
    report.height = Some(height);
    report.color_type = Some(colour.to_owned());
    report.bit_depth = Some(8);
    limits.check_dimensions(width, height)?;
    // The grey plane, and for a progressive file every coefficient of every component.
    let layout = PixelLayout { width, height, channels: 1, bytes_per_sample: 1 };
    limits.check_decoded_bytes(layout, structure::jpeg_coefficient_bytes(data))?;
    structure::check_complete(data, Format::Jpeg)?;

    let size = width as usize * height as usize;
    PLANE.with(|plane| {
        let mut plane = plane.borrow_mut();
        plane.resize(size, 0);
        let result = decoder.decode_into(&mut plane[..size]).map_err(reject);
        let stats = result.map(|()| ImageStats::of_luma(&plane[..size], width as usize, height as usize));
        if plane.capacity() > KEEP_BUFFER_BYTES {
            *plane = Vec::new();
        }
        stats.map(Some)
    })
}

fn decoding_error(e: DecodeErrors) -> ImageError {
    ImageError::Decoding(DecodingError::new(ImageFormatHint::Exact(ImageFormat::Jpeg), format!("{e:?}")))
}
