//! The image validator: bytes in, a [`ValidationReport`] out, never a panic.
//!
//! Order matters for hostile input: the byte limit before reading, the format sniffed from the
//! bytes, the header's dimensions checked against the pixel and side limits before a single pixel
//! is allocated (decompression bombs stop here), the decode budget checked on the same header
//! (width x height x channels x bytes per sample of what the decoder will write, so a small,
//! 16-bit, four-channel bomb under the pixel limit stops here too), the container's structure
//! walked to the end (some decoders pad a cut-off file silently), and only then a full decode
//! under `image::Limits`, inside `catch_unwind` so a decoder bug becomes `corrupt` instead of a
//! crash.

mod decode;
mod jpeg_luma;
mod limits;
mod sniff;
mod structure;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use decode::{decode_image, decode_image_downscaled, inspect_header};
pub use limits::{PixelLayout, ValidationLimits, DEFAULT_MAX_DECODED_BYTES};
pub use sniff::Format;

use crate::reason::{ReasonCode, Rejection};
use crate::stats::ImageStats;

/// Everything the validator learned about one file. `rejection` is `None` when it is valid; the
/// other fields are filled as far as validation got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub format: Option<Format>,
    /// As stored in the file (no EXIF rotation applied).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The colour type as stored, such as `l8`, `rgb8`, `rgba16`, `l1`.
    pub color_type: Option<String>,
    pub bit_depth: Option<u8>,
    pub stats: Option<ImageStats>,
    pub rejection: Option<Rejection>,
}

impl ValidationReport {
    /// A report with only the size and hash known yet.
    pub fn facts_unknown(bytes: u64, sha256: String) -> Self {
        Self {
            bytes,
            sha256,
            format: None,
            width: None,
            height: None,
            color_type: None,
            bit_depth: None,
            stats: None,
            rejection: None,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.rejection.is_none()
    }

    pub fn sha256_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut out).expect("sha256 is 64 hex digits by construction");
        out
    }

    /// A report for bytes that were never read because the object is over the byte limit.
    pub fn over_byte_limit(size: u64, limits: &ValidationLimits) -> Rejection {
        Rejection::new(
            ReasonCode::TooLarge,
            format!(
                "the file is {size} bytes, over the {} byte limit; resize or recompress it, or raise the limit",
                limits.max_bytes
            ),
        )
    }
}

/// Validates one file's bytes.
pub fn validate(data: &[u8], limits: &ValidationLimits) -> ValidationReport {
    let mut report = ValidationReport::facts_unknown(data.len() as u64, hex::encode(Sha256::digest(data)));
    if let Err(rejection) = inspect(data, limits, &mut report) {
        report.rejection = Some(rejection);
    }
    report
}

fn inspect(data: &[u8], limits: &ValidationLimits, report: &mut ValidationReport) -> Result<(), Rejection> {
    if data.is_empty() {
        return Err(Rejection::new(ReasonCode::Empty, "the file is empty (0 bytes); upload it again"));
    }
    if data.len() as u64 > limits.max_bytes {
        return Err(ValidationReport::over_byte_limit(data.len() as u64, limits));
    }
    let format = sniff::sniff(data)?;
    report.format = Some(format);
    match catch_unwind(AssertUnwindSafe(|| decode(data, format, limits, report))) {
        Ok(result) => result,
        Err(_) => Err(Rejection::new(
            ReasonCode::Corrupt,
            format!("the {format} decoder failed on this file (it panicked); the file is damaged, export it again"),
        )),
    }
}

fn decode(data: &[u8], format: Format, limits: &ValidationLimits, report: &mut ValidationReport) -> Result<(), Rejection> {
    if format == Format::Jpeg {
        if let Some(stats) = jpeg_luma::validate(data, limits, report)? {
            report.stats = Some(stats);
            return Ok(());
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format.image_format());
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(|e| classify(e, format, data))?;
    let (width, height) = decoder.dimensions();
    report.width = Some(width);
    report.height = Some(height);
    limits.check_dimensions(width, height)?;

    let colour = decoder.original_color_type();
    report.color_type = Some(format!("{colour:?}").to_ascii_lowercase());
    report.bit_depth = (colour.channel_count() > 0).then(|| (colour.bits_per_pixel() / u16::from(colour.channel_count())) as u8);

    // The pixels as decoded, and the grey plane the statistics are computed on (none extra when
    // the image is grey already).
    let layout = PixelLayout::of(width, height, decoder.color_type());
    let grey_plane = if decoder.color_type() == image::ColorType::L8 { 0 } else { u64::from(width) * u64::from(height) };
    limits.check_decoded_bytes(layout, grey_plane + decoder_overhead(data, format))?;

    structure::check_complete(data, format)?;

    decoder.set_limits(limits.image_limits()).map_err(|e| classify(e, format, data))?;
    let grey = DynamicImage::from_decoder(decoder).map_err(|e| classify(e, format, data))?.into_luma8();
    report.stats = Some(ImageStats::of(&grey));
    Ok(())
}

/// What a decoder holds besides its output, known from the header: a progressive JPEG's
/// coefficients.
pub(super) fn decoder_overhead(data: &[u8], format: Format) -> u64 {
    match format {
        Format::Jpeg => structure::jpeg_coefficient_bytes(data),
        _ => 0,
    }
}

/// Maps a decoder error onto a reason code. The `image` crate folds many decoder errors into
/// strings, so an early end of data is recognised by its io kind or, failing that, its wording.
pub(super) fn classify(error: ImageError, format: Format, data: &[u8]) -> Rejection {
    let detail = error.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
    match &error {
        ImageError::Limits(_) => Rejection::new(
            ReasonCode::TooLarge,
            format!("decoding needs more memory than the limits allow ({detail}); resize the image or raise the limits"),
        ),
        ImageError::Unsupported(_) => Rejection::new(
            ReasonCode::UnsupportedFormat,
            format!("this {format} file uses a feature cvops cannot decode ({detail}); re-save it as a baseline JPEG or PNG"),
        ),
        _ if looks_truncated(&error) => Rejection::new(
            ReasonCode::Truncated,
            format!(
                "the {format} data ends early after {} bytes ({detail}); the upload was cut short, upload it again",
                data.len()
            ),
        ),
        _ => Rejection::new(
            ReasonCode::Corrupt,
            format!("the {format} data is damaged ({detail}); export the image again from its source"),
        ),
    }
}

fn looks_truncated(error: &ImageError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        let text = e.to_string().to_ascii_lowercase();
        if ["eof", "end of file", "unexpected end", "truncated", "no more data", "not enough data", "ran out"]
            .iter()
            .any(|needle| text.contains(needle))
        {
            return true;
        }
        source = e.source();
    }
    false
}
