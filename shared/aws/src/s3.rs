//! The object-store port on S3.

use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};
use cvops_core::ports::{ListPage, ObjectMeta, ObjectStore, ObjectStoreError};

use crate::errors::{describe, is_retryable};

#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
}

impl S3ObjectStore {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

fn backend<E, R>(operation: &str, error: SdkError<E, R>) -> ObjectStoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    ObjectStoreError::Backend {
        message: describe(operation, &error),
        retryable: is_retryable(&error),
        source: Some(Box::new(error)),
    }
}

fn not_found(bucket: &str, key: &str) -> ObjectStoreError {
    ObjectStoreError::NotFound { bucket: bucket.to_owned(), key: key.to_owned() }
}

fn is_missing<E: aws_sdk_s3::error::ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(error, SdkError::ServiceError(e) if matches!(e.err().code(), Some("NoSuchKey" | "NotFound" | "404")))
}

fn etag(raw: Option<&str>) -> String {
    raw.unwrap_or_default().trim_matches('"').to_owned()
}

/// `CopySource` is `bucket/key` with the key URL-encoded (spaces and UTF-8 included).
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl S3ObjectStore {
    /// GetObject, of one version when `version_id` names it. Refuses on the declared length
    /// before reading, and again while streaming in case the length was absent or wrong: never
    /// more than `max_bytes` + one chunk in memory.
    async fn read(&self, bucket: &str, key: &str, version_id: Option<&str>, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        let request = self.client.get_object().bucket(bucket).key(key).set_version_id(version_id.map(str::to_owned));
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Err(not_found(bucket, key)),
            Err(e) => return Err(backend("GetObject", e)),
        };
        let too_large = |size: u64| ObjectStoreError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes };
        let declared = out.content_length().and_then(|n| u64::try_from(n).ok());
        if let Some(size) = declared.filter(|&size| size > max_bytes) {
            return Err(too_large(size));
        }
        let mut body = out.body;
        let mut data = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(chunk) = body.try_next().await.map_err(|e| ObjectStoreError::Backend {
            message: format!("GetObject body: {e}"),
            retryable: true,
            source: Some(Box::new(e)),
        })? {
            if (data.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large((data.len() + chunk.len()) as u64));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data.freeze())
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, bucket: &str, key: &str, data: Bytes) -> Result<ObjectMeta, ObjectStoreError> {
        let size = data.len() as u64;
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| backend("PutObject", e))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size,
            etag: etag(out.e_tag()),
            last_modified_millis: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default(),
            version_id: out.version_id().map(str::to_owned),
        })
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        self.read(bucket, key, None, max_bytes).await
    }

    async fn get_version(&self, bucket: &str, key: &str, version_id: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        self.read(bucket, key, Some(version_id), max_bytes).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(ObjectMeta {
                key: key.to_owned(),
                size: out.content_length().unwrap_or_default().max(0) as u64,
                etag: etag(out.e_tag()),
                last_modified_millis: out.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or_default(),
                version_id: out.version_id().map(str::to_owned),
            }),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Err(not_found(bucket, key)),
            Err(e) => Err(backend("HeadObject", e)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str, cursor: Option<String>) -> Result<ListPage, ObjectStoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(cursor)
            .send()
            .await
            .map_err(|e| backend("ListObjectsV2", e))?;
        let objects = out
            .contents()
            .iter()
            .map(|o| ObjectMeta {
                key: o.key().unwrap_or_default().to_owned(),
                size: o.size().unwrap_or_default().max(0) as u64,
                etag: etag(o.e_tag()),
                last_modified_millis: o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or_default(),
                // ListObjectsV2 lists current versions without naming them.
                version_id: None,
            })
            .collect();
        let next = out.is_truncated().unwrap_or(false).then(|| out.next_continuation_token().map(str::to_owned)).flatten();
        Ok(ListPage { objects, next })
    }

    async fn copy(&self, from_bucket: &str, from_key: &str, to_bucket: &str, to_key: &str) -> Result<(), ObjectStoreError> {
        match self.client.copy_object().copy_source(copy_source(from_bucket, from_key)).bucket(to_bucket).key(to_key).send().await
        {
            Ok(_) => Ok(()),
            Err(e) if is_missing(&e) => Err(not_found(from_bucket, from_key)),
            Err(e) => Err(backend("CopyObject", e)),
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        self.client.delete_object().bucket(bucket).key(key).send().await.map_err(|e| backend("DeleteObject", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_sources_are_url_encoded() {
        assert_eq!(super::copy_source("b", "datasets/a b/é+1.png"), "b/datasets/a%20b/%C3%A9%2B1.png");
    }
}
