//! The single table: items under (partition key, sort key), as DynamoDB holds them.
//!
//! Every item carries a `version` the table bumps on each write, for optimistic concurrency
//! (`put_if_version`), and an optional expiry (DynamoDB's TTL). An expired item reads as absent
//! even before the backend has removed it, since DynamoDB may keep it for days.

use std::fmt::Debug;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A condition (absent, or at a version) did not hold: someone else wrote first.
    #[error("conditional write on ({pk}, {sk}) failed: the item changed")]
    Conflict { pk: String, sk: String },
    #[error("item ({pk}, {sk}) is malformed: {why}")]
    Malformed { pk: String, sk: String, why: String },
    #[error("table call failed: {message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl TableError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, TableError::Conflict { .. })
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, TableError::Conflict { .. } | TableError::Backend { retryable: true, .. })
    }
}

/// Attribute names the table keeps for itself (keys, item version, expiry): a record with a field
/// of one of these names cannot be stored; rename the field (`#[serde(rename = ...)]`).
pub const RESERVED_ATTRIBUTES: [&str; 4] = ["pk", "sk", "version", "expires_at"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Set by the table on every write: 1 for a new item, then +1. Ignored on input.
    #[serde(default)]
    pub version: u64,
    /// Unix seconds after which the item reads as absent.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The attributes: numbers, strings, booleans, lists and maps.
    pub attrs: Map<String, Value>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into(), version: 0, expires_at: None, attrs: Map::new() }
    }

    /// An item whose attributes are the fields of `value` (a struct serialising to a map).
    pub fn from_record<T: Serialize>(pk: impl Into<String>, sk: impl Into<String>, value: &T) -> Result<Self, TableError> {
        let (pk, sk) = (pk.into(), sk.into());
        match serde_json::to_value(value) {
            Ok(Value::Object(attrs)) => Ok(Self { pk, sk, version: 0, expires_at: None, attrs }),
            Ok(_) => Err(TableError::Malformed { pk, sk, why: "a record must serialise to a map".into() }),
            Err(e) => Err(TableError::Malformed { pk, sk, why: e.to_string() }),
        }
    }

    /// Refuses an item that uses a [`RESERVED_ATTRIBUTES`] name; every table calls it on write.
    pub fn check_reserved(&self) -> Result<(), TableError> {
        match self.attrs.keys().find(|name| RESERVED_ATTRIBUTES.contains(&name.as_str())) {
            Some(name) => Err(TableError::Malformed {
                pk: self.pk.clone(),
                sk: self.sk.clone(),
                why: format!("attribute name {name} is reserved"),
            }),
            None => Ok(()),
        }
    }

    pub fn to_record<T: DeserializeOwned>(&self) -> Result<T, TableError> {
        serde_json::from_value(Value::Object(self.attrs.clone())).map_err(|e| TableError::Malformed {
            pk: self.pk.clone(),
            sk: self.sk.clone(),
            why: e.to_string(),
        })
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.attrs.insert(name.to_owned(), value.into());
        self
    }

    pub fn expiring_at(mut self, unix_seconds: i64) -> Self {
        self.expires_at = Some(unix_seconds);
        self
    }

    pub fn str_attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }

    pub fn i64_attr(&self, name: &str) -> Option<i64> {
        self.attrs.get(name).and_then(Value::as_i64)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass back to continue after the last item; `None` on the last page.
    pub next: Option<String>,
}

#[async_trait]
pub trait Table: Send + Sync + Debug {
    /// Writes unconditionally; returns the new version.
    async fn put(&self, item: Item) -> Result<u64, TableError>;

    /// Writes only if no (unexpired) item has the key.
    async fn put_if_absent(&self, item: Item) -> Result<u64, TableError>;

    /// Writes only if the stored item is at `expected_version`.
    async fn put_if_version(&self, item: Item, expected_version: u64) -> Result<u64, TableError>;

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError>;

    /// Items of one partition whose sort key starts with `sk_prefix`, in sort-key order, at most
    /// `limit` a page.
    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, cursor: Option<String>) -> Result<Page, TableError>;

    /// Adds `delta` to the numeric attribute `field` atomically, creating the item and the field
    /// (from 0) if absent; returns the new value.
    async fn add(&self, pk: &str, sk: &str, field: &str, delta: i64) -> Result<i64, TableError>;

    /// Adds every `(field, delta)` to one item in one atomic update (DynamoDB's `ADD a :x, b :y`),
    /// creating the item and the fields (from 0) if absent. What a monitoring flush uses: one
    /// write for a whole histogram instead of one per bin. `expires_at`, when given, becomes the
    /// item's expiry.
    async fn add_all(&self, pk: &str, sk: &str, deltas: &[(String, i64)], expires_at: Option<i64>) -> Result<(), TableError>;

    /// Deleting an absent item succeeds.
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError>;
}

/// Items a query asks for per page.
pub const PAGE_SIZE: usize = 500;
/// How often an optimistic update ([`TableExt::update`]) is tried before its conflict is reported.
pub const CONFLICT_ATTEMPTS: usize = 8;

/// What an [`TableExt::update`] decided, from the item it read.
#[derive(Debug)]
pub enum Update<T> {
    /// Write this item (only if nobody wrote since the read), then answer the value.
    Write(Item, T),
    /// Nothing to write: answer the value.
    Keep(T),
}

#[async_trait]
pub trait TableExt: Table {
    /// Writes `item` only if it is as it was read: at `read_version`, or still absent when there
    /// was nothing to read (`None`). A conflict means another writer got there in between.
    async fn put_if_unchanged(&self, item: Item, read_version: Option<u64>) -> Result<u64, TableError> {
        match read_version {
            Some(version) => self.put_if_version(item, version).await,
            None => self.put_if_absent(item).await,
        }
    }

    /// Optimistic concurrency on one item: reads it, lets `decide` choose from what it read,
    /// writes with [`Self::put_if_unchanged`], and on a conflict starts again from a fresh read,
    /// at most [`CONFLICT_ATTEMPTS`] times; then the conflict is the error. `decide` may run more
    /// than once, so it only computes.
    async fn update<T, E, F>(&self, pk: &str, sk: &str, mut decide: F) -> Result<T, E>
    where
        T: Send,
        E: From<TableError> + Send,
        F: FnMut(Option<&Item>) -> Result<Update<T>, E> + Send,
    {
        for _ in 0..CONFLICT_ATTEMPTS {
            let read = self.get(pk, sk).await?;
            match decide(read.as_ref())? {
                Update::Keep(value) => return Ok(value),
                Update::Write(item, value) => match self.put_if_unchanged(item, read.map(|item| item.version)).await {
                    Ok(_) => return Ok(value),
                    Err(TableError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Err(TableError::Conflict { pk: pk.to_owned(), sk: sk.to_owned() }.into())
    }

    /// The items of a partition under a prefix, a page at a time: memory holds one page.
    fn query_pages<'a>(&'a self, pk: &'a str, sk_prefix: &'a str) -> BoxStream<'a, Result<Vec<Item>, TableError>>
    where
        Self: Sync,
    {
        // The state: the cursor to read from, or `None` once the last page was read.
        futures::stream::try_unfold(Some(None), move |cursor: Option<Option<String>>| async move {
            let Some(cursor) = cursor else { return Ok(None) };
            let page = self.query(pk, sk_prefix, PAGE_SIZE, cursor).await?;
            Ok(Some((page.items, page.next.map(Some))))
        })
        .boxed()
    }

    /// Every item of a partition under a prefix, following the pages. Not for hot paths.
    async fn query_all(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, TableError> {
        self.query_pages(pk, sk_prefix).try_concat().await
    }
}

impl<T: Table + ?Sized> TableExt for T {}
