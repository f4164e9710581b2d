//! Buckets of objects: S3 on AWS, folders locally.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("no object {bucket}/{key}")]
    NotFound { bucket: String, key: String },
    #[error("object {bucket}/{key} is {size} bytes, over the {limit} byte limit of this read")]
    TooLarge { bucket: String, key: String, size: u64, limit: u64 },
    #[error("invalid object key {key:?}: {why}")]
    InvalidKey { key: String, why: String },
    #[error("object store call failed: {message}")]
    Backend {
        message: String,
        /// Throttling, timeouts and 5xx: worth a retry.
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl ObjectStoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ObjectStoreError::Backend { retryable: true, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Changes whenever the content does (S3's ETag; locally a hash of the bytes).
    pub etag: String,
    pub last_modified_millis: i64,
    /// S3's VersionId, on a bucket that keeps versions (the models bucket); `None` where the
    /// store keeps one version of a key (local buckets, unversioned S3 buckets).
    #[serde(default)]
    pub version_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Pass back to get the next page; `None` on the last one.
    pub next: Option<String>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Writes the whole object or nothing: readers never see a partial object.
    async fn put(&self, bucket: &str, key: &str, data: Bytes) -> Result<ObjectMeta, ObjectStoreError>;

    /// Reads the object, refusing with `TooLarge` (before reading the body) past `max_bytes`.
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError>;

    /// Reads exactly the version `version_id` (as `put` or `head` reported it) of the object,
    /// whatever was written under its key since; limits as in [`ObjectStore::get`]. A store that
    /// keeps no versions reports none, so it is never asked for one.
    async fn get_version(&self, bucket: &str, key: &str, version_id: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError>;

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError>;

    /// One page of the keys under `prefix`, in key order.
    async fn list(&self, bucket: &str, prefix: &str, cursor: Option<String>) -> Result<ListPage, ObjectStoreError>;

    async fn copy(&self, from_bucket: &str, from_key: &str, to_bucket: &str, to_key: &str) -> Result<(), ObjectStoreError>;

    /// Deleting an absent object succeeds, as in S3.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError>;
}

/// Conveniences built on the trait, for every implementation.
#[async_trait]
pub trait ObjectStoreExt: ObjectStore {
    /// The version recorded for an object when there is one (a registered model's artifact on
    /// S3), else the object as it is.
    async fn get_recorded(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        max_bytes: u64,
    ) -> Result<Bytes, ObjectStoreError> {
        match version_id {
            Some(version_id) => self.get_version(bucket, key, version_id, max_bytes).await,
            None => self.get(bucket, key, max_bytes).await,
        }
    }

    /// Every key under `prefix`, following the pages. For bounded listings (tests, small prefixes).
    async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectStoreError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(bucket, prefix, cursor).await?;
            out.extend(page.objects);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectStoreError> {
        match self.head(bucket, key).await {
            Ok(_) => Ok(true),
            Err(ObjectStoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: ObjectStore + ?Sized> ObjectStoreExt for T {}
