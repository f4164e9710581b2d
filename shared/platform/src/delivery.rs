//! Local queue delivery, as Lambda's SQS event source mapping does it: up to ten visible messages
//! go to the handler as one `SqsEvent`; the messages its `SqsBatchResponse` does not name as
//! failed are deleted; the failed ones (all of them, if the handler errs) stay, come back after
//! the visibility timeout, and after the queue's maximum receives move to its dead-letter queue.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use cvops_core::ports::{Message, Queue, QueueError};

/// SQS hands Lambda at most ten messages a batch (the standard queue default).
pub const BATCH_SIZE: usize = 10;

/// What one delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub received: usize,
    pub acknowledged: usize,
    /// Left on the queue for redelivery.
    pub failed: usize,
}

/// The SQS event Lambda would build for these messages.
pub fn sqs_event(queue: &str, messages: &[Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.id.clone());
            record.receipt_handle = Some(m.receipt.clone());
            record.body = Some(m.body.clone());
            record.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), m.receive_count.to_string())]);
            record.message_attributes = m
                .attributes
                .iter()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = Some(value.clone());
                    attribute.data_type = Some("String".into());
                    (name.clone(), attribute)
                })
                .collect();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:{queue}"));
            record.aws_region = Some("local".into());
            record
        })
        .collect();
    event
}

/// Receives one batch from `queue` and hands it to `handler`, honouring partial failures.
pub async fn deliver<F, Fut, E>(queue: &dyn Queue, name: &str, visibility: Duration, handler: F) -> Result<Delivery, QueueError>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = Result<SqsBatchResponse, E>>,
    E: std::fmt::Display,
{
    let messages = queue.receive(name, BATCH_SIZE, visibility).await?;
    if messages.is_empty() {
        return Ok(Delivery::default());
    }
    let received = messages.len();
    let failed_ids: Vec<String> = match handler(sqs_event(name, &messages)).await {
        Ok(response) => response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
        Err(e) => {
            tracing::warn!(error = %e, queue = name, "the handler failed the whole batch; it will be redelivered");
            messages.iter().map(|m| m.id.clone()).collect()
        }
    };
    let mut delivery = Delivery { received, ..Delivery::default() };
    for message in &messages {
        if failed_ids.contains(&message.id) {
            delivery.failed += 1;
        } else {
            queue.ack(name, &message.receipt).await?;
            delivery.acknowledged += 1;
        }
    }
    Ok(delivery)
}
