//! The single table on SQLite: one row per item, the attributes as a JSON document.

use std::sync::Arc;

use async_trait::async_trait;
use cvops_core::clock::Clock;
use cvops_core::ports::{Item, Page, Table, TableError, RESERVED_ATTRIBUTES};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use crate::db::{table_error, SharedConnection};

#[derive(Debug, Clone)]
pub struct SqliteTable {
    conn: SharedConnection,
    clock: Arc<dyn Clock>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at INTEGER,
    attrs TEXT NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;";

/// Sorts after any sort key that starts with the prefix (U+10FFFF is a non-character).
const PREFIX_END: char = '\u{10FFFF}';

impl SqliteTable {
    /// Creates the schema if needed and removes items expired by the clock (TTL's sweeper).
    pub fn open(conn: SharedConnection, clock: Arc<dyn Clock>) -> Result<Self, TableError> {
        {
            let c = conn.lock().expect("table connection poisoned");
            c.execute_batch(SCHEMA).map_err(table_error)?;
            c.execute("DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1", [clock.now_millis() / 1000])
                .map_err(table_error)?;
        }
        Ok(Self { conn, clock })
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_millis() / 1000
    }

    /// Writes `item` in one immediate transaction, if `condition` accepts the stored version
    /// (`None` when absent or expired).
    fn write(&self, item: Item, condition: impl FnOnce(Option<u64>) -> bool) -> Result<u64, TableError> {
        item.check_reserved()?;
        let mut conn = self.conn.lock().expect("table connection poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(table_error)?;
        let stored = live_version(&tx, &item.pk, &item.sk, self.now_secs())?;
        if !condition(stored) {
            return Err(TableError::Conflict { pk: item.pk, sk: item.sk });
        }
        let version = stored.unwrap_or(0) + 1;
        upsert(&tx, &item, version)?;
        tx.commit().map_err(table_error)?;
        Ok(version)
    }
}

fn malformed(pk: &str, sk: &str, e: impl std::fmt::Display) -> TableError {
    TableError::Malformed { pk: pk.to_owned(), sk: sk.to_owned(), why: e.to_string() }
}

fn live_version(conn: &rusqlite::Connection, pk: &str, sk: &str, now: i64) -> Result<Option<u64>, TableError> {
    conn.query_row(
        "SELECT version FROM items WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        params![pk, sk, now],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.map(|v| v as u64))
    .map_err(table_error)
}

/// The item under (pk, sk) unless it has expired.
fn live_item(conn: &rusqlite::Connection, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, TableError> {
    conn.query_row(
        "SELECT pk, sk, version, expires_at, attrs FROM items
         WHERE pk = ?1 AND sk = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        params![pk, sk, now],
        row_to_item,
    )
    .optional()
    .map_err(table_error)?
    .map(to_item)
    .transpose()
}

/// Inserts or replaces the whole item at `version`.
fn upsert(conn: &rusqlite::Connection, item: &Item, version: u64) -> Result<(), TableError> {
    let attrs = serde_json::to_string(&item.attrs).map_err(|e| malformed(&item.pk, &item.sk, e))?;
    conn.execute(
        "INSERT INTO items (pk, sk, version, expires_at, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (pk, sk) DO UPDATE SET version = excluded.version, expires_at = excluded.expires_at, attrs = excluded.attrs",
        params![item.pk, item.sk, version as i64, item.expires_at, attrs],
    )
    .map_err(table_error)?;
    Ok(())
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, Option<i64>, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn to_item((pk, sk, version, expires_at, attrs): (String, String, i64, Option<i64>, String)) -> Result<Item, TableError> {
    let attrs: Map<String, Value> = serde_json::from_str(&attrs).map_err(|e| malformed(&pk, &sk, e))?;
    Ok(Item { pk, sk, version: version as u64, expires_at, attrs })
}

#[async_trait]
impl Table for SqliteTable {
    async fn put(&self, item: Item) -> Result<u64, TableError> {
        self.write(item, |_| true)
    }

    async fn put_if_absent(&self, item: Item) -> Result<u64, TableError> {
        self.write(item, |stored| stored.is_none())
    }

    async fn put_if_version(&self, item: Item, expected_version: u64) -> Result<u64, TableError> {
        self.write(item, |stored| stored == Some(expected_version))
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let conn = self.conn.lock().expect("table connection poisoned");
        live_item(&conn, pk, sk, self.now_secs())
    }

    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, cursor: Option<String>) -> Result<Page, TableError> {
        let limit = limit.max(1);
        let upper = format!("{sk_prefix}{PREFIX_END}");
        let conn = self.conn.lock().expect("table connection poisoned");
        let mut stmt = conn
            .prepare_cached(
                "SELECT pk, sk, version, expires_at, attrs FROM items
                 WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 AND instr(sk, ?2) = 1 AND sk > ?4
                   AND (expires_at IS NULL OR expires_at > ?5)
                 ORDER BY sk LIMIT ?6",
            )
            .map_err(table_error)?;
        let rows = stmt
            .query_map(
                params![pk, sk_prefix, upper, cursor.unwrap_or_default(), self.now_secs(), (limit + 1) as i64],
                row_to_item,
            )
            .map_err(table_error)?;
        let mut items = Vec::with_capacity(limit + 1);
        for row in rows {
            items.push(to_item(row.map_err(table_error)?)?);
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| item.sk.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn add(&self, pk: &str, sk: &str, field: &str, delta: i64) -> Result<i64, TableError> {
        if RESERVED_ATTRIBUTES.contains(&field) {
            return Err(malformed(pk, sk, format!("counter name {field} is reserved")));
        }
        let mut conn = self.conn.lock().expect("table connection poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(table_error)?;
        let mut item = live_item(&tx, pk, sk, self.now_secs())?.unwrap_or_else(|| Item::new(pk, sk));
        let current = match item.attrs.get(field) {
            None => 0,
            Some(value) => value.as_i64().ok_or_else(|| malformed(pk, sk, format!("counter {field} is not an integer")))?,
        };
        let value = current.checked_add(delta).ok_or_else(|| malformed(pk, sk, format!("counter {field} overflows")))?;
        item.attrs.insert(field.to_owned(), value.into());
        upsert(&tx, &item, item.version + 1)?;
        tx.commit().map_err(table_error)?;
        Ok(value)
    }

    async fn add_all(&self, pk: &str, sk: &str, deltas: &[(String, i64)], expires_at: Option<i64>) -> Result<(), TableError> {
        if let Some((field, _)) = deltas.iter().find(|(field, _)| RESERVED_ATTRIBUTES.contains(&field.as_str())) {
            return Err(malformed(pk, sk, format!("counter name {field} is reserved")));
        }
        let mut conn = self.conn.lock().expect("table connection poisoned");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(table_error)?;
        let mut item = live_item(&tx, pk, sk, self.now_secs())?.unwrap_or_else(|| Item::new(pk, sk));
        for (field, delta) in deltas {
            let current = match item.attrs.get(field) {
                None => 0,
                Some(value) => value.as_i64().ok_or_else(|| malformed(pk, sk, format!("counter {field} is not an integer")))?,
            };
            let value = current.checked_add(*delta).ok_or_else(|| malformed(pk, sk, format!("counter {field} overflows")))?;
            item.attrs.insert(field.clone(), value.into());
        }
        if expires_at.is_some() {
            item.expires_at = expires_at;
        }
        upsert(&tx, &item, item.version + 1)?;
        tx.commit().map_err(table_error)?;
        Ok(())
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        let conn = self.conn.lock().expect("table connection poisoned");
        conn.execute("DELETE FROM items WHERE pk = ?1 AND sk = ?2", params![pk, sk]).map_err(table_error)?;
        Ok(())
    }
}
