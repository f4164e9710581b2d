//! Queues on SQLite, with SQS's semantics: visibility timeouts, receive counts, and a redrive to
//! the dead-letter queue once a message has been received `max_receives` times without an ack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cvops_core::clock::Clock;
use cvops_core::ports::{Message, Queue, QueueError};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::{queue_error, SharedConnection};

/// Attributes a redriven message gets, as the SQS console shows for a redrive.
pub const DEAD_LETTER_REASON: &str = "dead_letter_reason";
pub const SOURCE_QUEUE: &str = "source_queue";

#[derive(Debug, Clone)]
pub struct SqliteQueue {
    conn: SharedConnection,
    clock: Arc<dyn Clock>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    dead_letter TEXT,
    max_receives INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attrs TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, visible_at);";

impl SqliteQueue {
    pub fn open(conn: SharedConnection, clock: Arc<dyn Clock>) -> Result<Self, QueueError> {
        conn.lock().expect("queue connection poisoned").execute_batch(SCHEMA).map_err(queue_error)?;
        Ok(Self { conn, clock })
    }

    /// Creates or reconfigures a queue (the local twin of CreateQueue with a RedrivePolicy).
    /// A dead-letter queue is itself a queue, created here without a redrive of its own.
    pub fn create_queue(&self, name: &str, dead_letter: Option<&str>, max_receives: u32) -> Result<(), QueueError> {
        let conn = self.conn.lock().expect("queue connection poisoned");
        if let Some(dlq) = dead_letter {
            conn.execute("INSERT OR IGNORE INTO queues (name, dead_letter, max_receives) VALUES (?1, NULL, 0)", [dlq])
                .map_err(queue_error)?;
        }
        conn.execute(
            "INSERT INTO queues (name, dead_letter, max_receives) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET dead_letter = excluded.dead_letter, max_receives = excluded.max_receives",
            params![name, dead_letter, max_receives],
        )
        .map_err(queue_error)?;
        Ok(())
    }

    /// Messages waiting or in flight, for `cvops` status output and tests.
    pub fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let conn = self.conn.lock().expect("queue connection poisoned");
        conn.query_row("SELECT COUNT(*) FROM messages WHERE queue = ?1", [queue], |row| row.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(queue_error)
    }
}

fn queue_config(conn: &rusqlite::Connection, queue: &str) -> Result<(Option<String>, u32), QueueError> {
    conn.query_row("SELECT dead_letter, max_receives FROM queues WHERE name = ?1", [queue], |row| {
        Ok((row.get::<_, Option<String>>(0)?, row.get::<_, u32>(1)?))
    })
    .optional()
    .map_err(queue_error)?
    .ok_or_else(|| QueueError::NoSuchQueue(queue.to_owned()))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, queue: &str, body: &str, attributes: &BTreeMap<String, String>) -> Result<String, QueueError> {
        let conn = self.conn.lock().expect("queue connection poisoned");
        queue_config(&conn, queue)?;
        let id = uuid::Uuid::new_v4().to_string();
        let attrs = serde_json::to_string(attributes).expect("a string map serialises");
        conn.execute(
            "INSERT INTO messages (id, queue, body, attrs, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, queue, body, attrs, self.clock.now_millis()],
        )
        .map_err(queue_error)?;
        Ok(id)
    }

    async fn receive(&self, queue: &str, max: usize, visibility: Duration) -> Result<Vec<Message>, QueueError> {
        let now = self.clock.now_millis();
        let mut conn = self.conn.lock().expect("queue connection poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(queue_error)?;
        let (dead_letter, max_receives) = queue_config(&tx, queue)?;
        let candidates: Vec<(i64, String, String, String, u32)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, id, body, attrs, receive_count FROM messages
                     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(queue_error)?;
            let rows = stmt
                .query_map(params![queue, now, (max * 2 + 16) as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(queue_error)?;
            rows.collect::<Result<_, _>>().map_err(queue_error)?
        };
        let mut out = Vec::new();
        for (seq, id, body, attrs, receive_count) in candidates {
            if out.len() >= max {
                break;
            }
            let mut attributes: BTreeMap<String, String> = serde_json::from_str(&attrs).unwrap_or_default();
            if let Some(dlq) = dead_letter.as_deref().filter(|_| max_receives > 0 && receive_count >= max_receives) {
                attributes.insert(DEAD_LETTER_REASON.into(), format!("received {receive_count} times without being processed"));
                attributes.insert(SOURCE_QUEUE.into(), queue.to_owned());
                tx.execute(
                    "UPDATE messages SET queue = ?1, attrs = ?2, receive_count = 0, receipt = NULL, visible_at = ?3 WHERE seq = ?4",
                    params![dlq, serde_json::to_string(&attributes).expect("a string map serialises"), now, seq],
                )
                .map_err(queue_error)?;
                continue;
            }
            let receipt = uuid::Uuid::new_v4().to_string();
            tx.execute(
                "UPDATE messages SET receive_count = receive_count + 1, receipt = ?1, visible_at = ?2 WHERE seq = ?3",
                params![receipt, now + millis(visibility), seq],
            )
            .map_err(queue_error)?;
            out.push(Message { id, receipt, body, attributes, receive_count: receive_count + 1 });
        }
        tx.commit().map_err(queue_error)?;
        Ok(out)
    }

    /// Like SQS, acknowledging with a receipt that is no longer current succeeds without effect.
    async fn ack(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let conn = self.conn.lock().expect("queue connection poisoned");
        queue_config(&conn, queue)?;
        conn.execute("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2", params![queue, receipt]).map_err(queue_error)?;
        Ok(())
    }

    async fn change_visibility(&self, queue: &str, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        let conn = self.conn.lock().expect("queue connection poisoned");
        queue_config(&conn, queue)?;
        let changed = conn
            .execute(
                "UPDATE messages SET visible_at = ?1 WHERE queue = ?2 AND receipt = ?3",
                params![self.clock.now_millis() + millis(visibility), queue, receipt],
            )
            .map_err(queue_error)?;
        if changed == 0 {
            return Err(QueueError::StaleReceipt);
        }
        Ok(())
    }
}
