//! The real AWS events in events/, pointed at a test's own bucket and objects.

use aws_lambda_events::s3::S3Event;
use cvops_ingest::IngestEvent;

pub const S3_PUT: &[u8] = include_bytes!("../../events/s3-put.json");
pub const S3_DELETE: &[u8] = include_bytes!("../../events/s3-delete.json");

/// Every record of `template` pointed at `bucket`, the key as S3 encodes it in events, the
/// sequencer, and the etag (`None` when the test does not check the object's identity).
pub fn s3_event(template: &[u8], bucket: &str, encoded_key: &str, sequencer: &str, etag: Option<&str>) -> IngestEvent {
    let mut event: S3Event = serde_json::from_slice(template).expect("the template is an S3 event");
    for record in &mut event.records {
        record.s3.bucket.name = Some(bucket.into());
        record.s3.object.key = Some(encoded_key.into());
        record.s3.object.sequencer = Some(sequencer.into());
        record.s3.object.e_tag = etag.map(str::to_owned);
    }
    IngestEvent::Records(event)
}

pub const MODEL_CARD_CREATED: &[u8] = include_bytes!("../../events/model-card-created.json");

/// The model-card ObjectCreated event for `key` in `bucket`, as register-model receives it.
pub fn card_event(bucket: &str, key: &str, sequencer: &str) -> S3Event {
    match s3_event(MODEL_CARD_CREATED, bucket, key, sequencer, None) {
        IngestEvent::Records(event) => event,
        IngestEvent::Test(_) => unreachable!("the template holds records"),
    }
}
