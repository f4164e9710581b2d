//! From S3 event JSON to validated notices.

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use chrono::{DateTime, Utc};
use cvops_core::key::decode_event_key;
use cvops_core::sequencer::Sequencer;
use serde::{Deserialize, Serialize};

/// What S3 may send the function: event records, or the test event it sends once when a
/// notification configuration is saved.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IngestEvent {
    Records(S3Event),
    Test(S3TestEvent),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3TestEvent {
    pub service: String,
    pub event: String,
    pub bucket: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Created,
    Removed,
}

/// One S3 event record, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub bucket: String,
    /// Decoded: `+` is a space and `%xx` are UTF-8 bytes in the event.
    pub key: String,
    pub size: Option<u64>,
    /// Without quotes.
    pub etag: Option<String>,
    pub sequencer: Sequencer,
    pub event_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("event record has no {0}")]
    Missing(&'static str),
    #[error("event {0:?} is neither ObjectCreated nor ObjectRemoved: ignored")]
    OtherEvent(String),
    #[error("object key {0:?} does not decode to UTF-8")]
    BadKeyEncoding(String),
}

/// Decodes a key as S3 writes it into event notifications (form encoding).
pub fn decode_key(encoded: &str) -> Result<String, NoticeError> {
    decode_event_key(encoded).ok_or_else(|| NoticeError::BadKeyEncoding(encoded.to_owned()))
}

impl TryFrom<&S3EventRecord> for Notice {
    type Error = NoticeError;

    fn try_from(record: &S3EventRecord) -> Result<Self, Self::Error> {
        let name = record.event_name.as_deref().ok_or(NoticeError::Missing("eventName"))?;
        let kind = if name.starts_with("ObjectCreated:") {
            NoticeKind::Created
        } else if name.starts_with("ObjectRemoved:") || name == "LifecycleExpiration:Delete" {
            NoticeKind::Removed
        } else {
            return Err(NoticeError::OtherEvent(name.to_owned()));
        };
        let object = &record.s3.object;
        let encoded = object.key.as_deref().ok_or(NoticeError::Missing("s3.object.key"))?;
        Ok(Notice {
            kind,
            bucket: record.s3.bucket.name.clone().ok_or(NoticeError::Missing("s3.bucket.name"))?,
            key: decode_key(encoded)?,
            size: object.size.and_then(|s| u64::try_from(s).ok()),
            etag: object.e_tag.as_ref().map(|e| e.trim_matches('"').to_owned()),
            sequencer: Sequencer::new(object.sequencer.clone().ok_or(NoticeError::Missing("s3.object.sequencer"))?),
            event_time: record.event_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_form_decoded() {
        assert_eq!(
            decode_key("datasets/cats/train/tabby/my+cat%C3%A9+%2B1.jpg").unwrap(),
            "datasets/cats/train/tabby/my caté +1.jpg"
        );
        assert_eq!(decode_key("a%2Fb").unwrap(), "a/b");
        assert!(decode_key("bad%FF").is_err());
    }
}
