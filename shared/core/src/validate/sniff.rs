//! The format from the bytes, never from the extension.

use image::ImageFormat;
use serde::{Deserialize, Serialize};

use crate::reason::{ReasonCode, Rejection};

/// The formats cvops accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    Bmp,
    Tiff,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tiff",
        }
    }

    /// The format the leading bytes announce, if any.
    pub fn detect(data: &[u8]) -> Option<Self> {
        sniff(data).ok()
    }

    pub(super) fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::WebP,
            Format::Gif => ImageFormat::Gif,
            Format::Bmp => ImageFormat::Bmp,
            Format::Tiff => ImageFormat::Tiff,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Signatures of the accepted formats, to tell a file cut inside its first bytes (`truncated`)
/// from one that never was an image.
const ACCEPTED_MAGIC: [&[u8]; 8] =
    [b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"RIFF", b"BM", b"II*\0", b"MM\0*"];

pub(super) fn sniff(data: &[u8]) -> Result<Format, Rejection> {
    if let Ok(format) = image::guess_format(data) {
        let accepted = match format {
            ImageFormat::Jpeg => Some(Format::Jpeg),
            ImageFormat::Png => Some(Format::Png),
            ImageFormat::WebP => Some(Format::Webp),
            ImageFormat::Gif => Some(Format::Gif),
            ImageFormat::Bmp => Some(Format::Bmp),
            ImageFormat::Tiff => Some(Format::Tiff),
            _ => None,
        };
        return accepted.ok_or_else(|| unsupported(&format!("{format:?}").to_ascii_uppercase()));
    }
    if let Some(name) = other_image_format(data) {
        return Err(unsupported(name));
    }
    if data.len() < 12 && ACCEPTED_MAGIC.iter().any(|magic| magic.starts_with(data) || data.starts_with(magic)) {
        return Err(Rejection::new(
            ReasonCode::Truncated,
            format!("only the first {} bytes of an image arrived; upload it again", data.len()),
        ));
    }
    Err(Rejection::new(
        ReasonCode::NotAnImage,
        format!("the bytes are {}, not an image; upload JPEG, PNG, WebP, GIF, BMP or TIFF files", describe(data)),
    ))
}

fn unsupported(name: &str) -> Rejection {
    Rejection::new(
        ReasonCode::UnsupportedFormat,
        format!("{name} images are not accepted; convert to JPEG, PNG, WebP, GIF, BMP or TIFF"),
    )
}

/// Image formats `image::guess_format` does not know but phones and design tools produce.
fn other_image_format(data: &[u8]) -> Option<&'static str> {
    if data.len() >= 12 && &data[4..8] == b"ftyp" {
        return match &data[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" => Some("HEIC"),
            b"mif1" | b"msf1" => Some("HEIF"),
            b"avif" | b"avis" => Some("AVIF"),
            _ => None,
        };
    }
    if data.starts_with(b"\xFF\x0A") || data.starts_with(b"\0\0\0\x0CJXL \r\n\x87\n") {
        return Some("JPEG XL");
    }
    if data.starts_with(b"8BPS") {
        return Some("PSD");
    }
    let head = String::from_utf8_lossy(&data[..data.len().min(1024)]).to_ascii_lowercase();
    if head.contains("<svg") {
        return Some("SVG");
    }
    None
}

/// A few words on what the bytes are, for the message.
fn describe(data: &[u8]) -> &'static str {
    let head = String::from_utf8_lossy(&data[..data.len().min(512)]).to_ascii_lowercase();
    if data.starts_with(b"PK\x03\x04") {
        "a zip archive"
    } else if data.starts_with(b"%PDF") {
        "a PDF document"
    } else if data.starts_with(b"\x1f\x8b") {
        "gzip data"
    } else if head.contains("<html") || head.contains("<!doctype html") {
        "an HTML page"
    } else if std::str::from_utf8(&data[..data.len().min(512)]).is_ok() {
        "text"
    } else {
        "unrecognised binary data"
    }
}
