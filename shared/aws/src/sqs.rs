//! The queue port on SQS. Queues are named by their URL.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use cvops_core::ports::{Message, Queue, QueueError};

use crate::errors::{describe, is_retryable};

/// SQS returns at most 10 messages a call.
const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }
}

fn backend<E, R>(operation: &str, error: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let SdkError::ServiceError(e) = &error {
        if matches!(e.err().code(), Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")) {
            return QueueError::NoSuchQueue(describe(operation, &error));
        }
    }
    QueueError::Backend { message: describe(operation, &error), retryable: is_retryable(&error), source: Some(Box::new(error)) }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).min(43_200)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, queue: &str, body: &str, attributes: &BTreeMap<String, String>) -> Result<String, QueueError> {
        let mut request = self.client.send_message().queue_url(queue).message_body(body);
        for (name, value) in attributes {
            let value = MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| {
                QueueError::Backend {
                    message: format!("message attribute {name}: {e}"),
                    retryable: false,
                    source: Some(Box::new(e)),
                }
            })?;
            request = request.message_attributes(name, value);
        }
        let out = request.send().await.map_err(|e| backend("SendMessage", e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    async fn receive(&self, queue: &str, max: usize, visibility: Duration) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(seconds(visibility))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| backend("ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| Message {
                id: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                attributes: m
                    .message_attributes()
                    .map(|a| a.iter().filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned()))).collect())
                    .unwrap_or_default(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| backend("DeleteMessage", e))?;
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        match self
            .client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err().code(), Some("ReceiptHandleIsInvalid" | "MessageNotInflight" | "InvalidParameterValue")) =>
            {
                Err(QueueError::StaleReceipt)
            }
            Err(e) => Err(backend("ChangeMessageVisibility", e)),
        }
    }
}
