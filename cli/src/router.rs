//! The local event router: bucket changes in, S3 events to the subscribed function out.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::s3::S3Event;
use chrono::{TimeZone, Utc};
use cvops_core::ports::Queue;
use cvops_ingest::{IngestEvent, Outcome};
use cvops_local::{ObjectEvent, ObjectEventKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;
use tracing::warn;

use crate::platform::{LocalPlatform, INGEST_FAILURES_QUEUE, RAW_BUCKET};

/// Attempts per event before it goes to the failure queue: Lambda's asynchronous invocation
/// makes three (the first and two retries).
const ATTEMPTS: usize = 3;

/// What S3 leaves unencoded in event keys; a space becomes `+`.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b' ');

pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ENCODE).to_string().replace(' ', "+")
}

/// The S3 event notification for a local bucket change, in AWS's JSON shape.
pub fn s3_event(event: &ObjectEvent) -> S3Event {
    let (name, size, etag) = match &event.kind {
        ObjectEventKind::Created { size, etag, copy } => {
            (if *copy { "ObjectCreated:Copy" } else { "ObjectCreated:Put" }, Some(*size), Some(etag.clone()))
        }
        ObjectEventKind::Removed => ("ObjectRemoved:Delete", None, None),
    };
    let time = Utc.timestamp_millis_opt(event.time_millis).single().unwrap_or_default();
    let mut object = json!({"key": encode_key(&event.key), "sequencer": event.sequencer});
    if let (Some(size), Some(etag)) = (size, etag) {
        object["size"] = json!(size);
        object["eTag"] = json!(etag);
    }
    let record = json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "local",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventName": name,
        "userIdentity": {"principalId": "local"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "cvops-local",
            "bucket": {"name": event.bucket, "ownerIdentity": {"principalId": "local"}, "arn": format!("arn:aws:s3:::{}", event.bucket)},
            "object": object,
        }
    });
    serde_json::from_value(json!({"Records": [record]})).expect("the local S3 event has the AWS shape")
}

/// Delivers one bucket change to its subscriber. Only the raw bucket has one (ingest), as on
/// AWS, so that no function is triggered by its own writes to the store bucket.
pub async fn route(platform: &LocalPlatform, event: &ObjectEvent) -> anyhow::Result<Vec<Outcome>> {
    if event.bucket != RAW_BUCKET {
        return Ok(Vec::new());
    }
    let s3 = IngestEvent::Records(s3_event(event));
    let mut last_error = None;
    for attempt in 1..=ATTEMPTS {
        match platform.ingest.handle(&s3).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                warn!(error = %e, attempt, "ingest failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    let error = last_error.expect("the loop ends with an error unless it returned");
    // Kept, never dropped: the event and its error wait in the failure queue.
    let attributes = BTreeMap::from([("error".to_owned(), error.to_string()), ("function".to_owned(), "ingest".to_owned())]);
    let body = serde_json::to_string(&s3)?;
    platform.queue.send(INGEST_FAILURES_QUEUE, &body, &attributes).await?;
    anyhow::bail!("ingest failed on {} ({error}); the event is kept in the {INGEST_FAILURES_QUEUE} queue", event.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        assert_eq!(encode_key("datasets/d/train/7/my digit été #1.png"), "datasets/d/train/7/my+digit+%C3%A9t%C3%A9+%231.png");
        assert_eq!(cvops_ingest::notice::decode_key(&encode_key("a b+c/ü")).unwrap(), "a b+c/ü");
    }
}
