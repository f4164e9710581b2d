//! The local event router: bucket changes in, S3 events to the subscribed function out.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::s3::S3Event;
use chrono::{TimeZone, Utc};
use cvops_core::failure::Retryable;
use cvops_core::key::encode_event_key;
use cvops_core::model_card::CARD_FILE;
use cvops_core::ports::Queue;
use cvops_ingest::{IngestEvent, Outcome};
use cvops_local::{ObjectEvent, ObjectEventKind};
use cvops_register_model::{Outcome as RegisterOutcome, RegisterError};
use serde_json::json;
use tracing::warn;

use crate::platform::{LocalPlatform, INGEST_FAILURES_QUEUE, MODELS_BUCKET, RAW_BUCKET, REGISTER_FAILURES_QUEUE};

/// Attempts per event before it goes to the failure queue: Lambda's asynchronous invocation
/// makes three (the first and two retries).
const ATTEMPTS: usize = 3;

/// The S3 event notification for a local bucket change, in AWS's JSON shape.
pub fn s3_event(event: &ObjectEvent) -> S3Event {
    let (name, size, etag) = match &event.kind {
        ObjectEventKind::Created { size, etag, copy } => {
            (if *copy { "ObjectCreated:Copy" } else { "ObjectCreated:Put" }, Some(*size), Some(etag.clone()))
        }
        ObjectEventKind::Removed => ("ObjectRemoved:Delete", None, None),
    };
    let time = Utc.timestamp_millis_opt(event.time_millis).single().unwrap_or_default();
    let mut object = json!({"key": encode_event_key(&event.key), "sequencer": event.sequencer});
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

/// Where a bucket change went, and what the function made of it.
#[derive(Debug)]
pub enum Routed {
    Ingest(Vec<Outcome>),
    Register(Vec<RegisterOutcome>),
    /// No function is subscribed to this change.
    Nowhere,
}

/// Delivers a bucket change to the function subscribed to it, if any: raw-bucket changes to
/// ingest, model cards to register-model.
pub async fn route_event(platform: &LocalPlatform, event: &ObjectEvent) -> anyhow::Result<Routed> {
    if event.bucket == RAW_BUCKET {
        return route(platform, event).await.map(Routed::Ingest);
    }
    if is_model_card(event) {
        return route_model_card(platform, event).await.map(Routed::Register);
    }
    Ok(Routed::Nowhere)
}

/// The models bucket's notification filter on AWS: prefix `models/`, suffix `card.json`.
fn is_model_card(event: &ObjectEvent) -> bool {
    event.bucket == MODELS_BUCKET && event.key.starts_with("models/") && event.key.ends_with(CARD_FILE)
}

/// Delivers one raw-bucket change to ingest. Other buckets' changes go nowhere here: the store
/// bucket has no subscriber, as on AWS, so no function is triggered by its own writes; the models
/// bucket's cards go to register-model through [`route_model_card`].
pub async fn route(platform: &LocalPlatform, event: &ObjectEvent) -> anyhow::Result<Vec<Outcome>> {
    if event.bucket != RAW_BUCKET {
        return Ok(Vec::new());
    }
    let s3 = IngestEvent::Records(s3_event(event));
    invoke_async("ingest", INGEST_FAILURES_QUEUE, platform, &s3, &event.key, || platform.ingest.handle(&s3), |e| e.is_retryable())
        .await
}

/// Delivers a models-bucket change to register-model when it is a model card.
pub async fn route_model_card(platform: &LocalPlatform, event: &ObjectEvent) -> anyhow::Result<Vec<RegisterOutcome>> {
    if !is_model_card(event) {
        return Ok(Vec::new());
    }
    let s3 = s3_event(event);
    let retryable = |e: &RegisterError| e.is_retryable();
    invoke_async(
        "register-model",
        REGISTER_FAILURES_QUEUE,
        platform,
        &s3,
        &event.key,
        || platform.register.handle(&s3),
        retryable,
    )
    .await
}

/// Lambda's asynchronous invocation: up to [`ATTEMPTS`] tries while the error is retryable, then
/// the event and its error go to the function's failure queue (its on-failure destination).
async fn invoke_async<T, E, Fut>(
    function: &str,
    failures: &str,
    platform: &LocalPlatform,
    event: &impl serde::Serialize,
    key: &str,
    mut call: impl FnMut() -> Fut,
    retryable: impl Fn(&E) -> bool,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0;
    let error = loop {
        attempt += 1;
        match call().await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                warn!(error = %e, attempt, function, "function failed; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            Err(e) => break e,
        }
    };
    // Kept, never dropped: the event and its error wait in the failure queue.
    let attributes = BTreeMap::from([("error".to_owned(), error.to_string()), ("function".to_owned(), function.to_owned())]);
    platform.queue.send(failures, &serde_json::to_string(event)?, &attributes).await?;
    anyhow::bail!("{function} failed on {key} ({error}); the event is kept in the {failures} queue")
}
