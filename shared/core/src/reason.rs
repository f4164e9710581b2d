//! The stable reason codes a rejected upload gets. Users script against these strings: never
//! rename one, only add.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Zero bytes.
    Empty,
    /// The bytes are not an image at all (text, HTML, an archive, random data).
    NotAnImage,
    /// An image, but in a format cvops does not accept (HEIC, AVIF, ICO, ...).
    UnsupportedFormat,
    /// The file ends before the image does.
    Truncated,
    /// The image data is damaged (bad headers, bad compressed data, a decoder failure).
    Corrupt,
    /// Smaller than the minimum side.
    TooSmall,
    /// Over the byte limit, the pixel limit or the side limit (decompression bombs land here).
    TooLarge,
    /// The object key is outside `datasets/<dataset>/[<split>/]<label>/<file>`.
    BadKey,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 8] = [
        ReasonCode::Empty,
        ReasonCode::NotAnImage,
        ReasonCode::UnsupportedFormat,
        ReasonCode::Truncated,
        ReasonCode::Corrupt,
        ReasonCode::TooSmall,
        ReasonCode::TooLarge,
        ReasonCode::BadKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Empty => "empty",
            ReasonCode::NotAnImage => "not_an_image",
            ReasonCode::UnsupportedFormat => "unsupported_format",
            ReasonCode::Truncated => "truncated",
            ReasonCode::Corrupt => "corrupt",
            ReasonCode::TooSmall => "too_small",
            ReasonCode::TooLarge => "too_large",
            ReasonCode::BadKey => "bad_key",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upload was rejected: the stable code and a message that says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub reason: ReasonCode,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: ReasonCode, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Rejection {}
