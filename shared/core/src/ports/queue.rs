//! Message queues: SQS on AWS, a SQLite table locally.
//!
//! Delivery is at least once. A message received and not acknowledged within its visibility
//! timeout comes back; after the queue's maximum number of receives it moves to the queue's
//! dead-letter queue instead. Handlers that find a message malformed send it to the dead-letter
//! queue themselves, with the reason in the attributes, and acknowledge it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no queue {0}")]
    NoSuchQueue(String),
    #[error("receipt handle is no longer valid (the message was received again or deleted)")]
    StaleReceipt,
    #[error("queue call failed: {message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    /// Names this delivery: ack and visibility changes take it.
    pub receipt: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

#[async_trait]
pub trait Queue: Send + Sync + Debug {
    /// Returns the message id.
    async fn send(&self, queue: &str, body: &str, attributes: &BTreeMap<String, String>) -> Result<String, QueueError>;

    /// Up to `max` visible messages, each hidden for `visibility` from now.
    async fn receive(&self, queue: &str, max: usize, visibility: Duration) -> Result<Vec<Message>, QueueError>;

    /// Deletes the message received with this receipt.
    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError>;

    /// Hides (or, with zero, releases) a received message for `visibility` from now.
    async fn change_visibility(&self, queue: &str, receipt: &str, visibility: Duration) -> Result<(), QueueError>;
}
