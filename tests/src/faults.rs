//! Fault injection for any port implementation: wrap it, then make its Nth call fail (throttled,
//! as a real service would), or slow every call down. Used to show that a failure anywhere in a
//! handler leaves nothing a retry cannot repair.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cvops_core::ports::{
    Item, JobRunner, JobSpec, JobStatus, JobsError, ListPage, ObjectMeta, ObjectStore, ObjectStoreError, Page, Table, TableError,
};

/// What goes wrong, shared by every wrapper built on it, so calls are counted across ports.
#[derive(Debug, Default)]
pub struct FaultPlan {
    calls: AtomicUsize,
    failing: Mutex<BTreeSet<usize>>,
    /// Writes of items whose partition or sort key starts with one of these fail until healed.
    failing_writes: Mutex<Vec<String>>,
    delay: Mutex<Option<Duration>>,
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Calls so far, across all wrapped ports.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The `n`th call from now (1-based) fails with a throttling error.
    pub fn fail_call(&self, n: usize) {
        let base = self.calls();
        self.failing.lock().unwrap().insert(base + n);
    }

    /// Every call waits this long first.
    pub fn delay_every_call(&self, delay: Duration) {
        *self.delay.lock().unwrap() = Some(delay);
    }

    /// Every write (put, put-if-absent, put-if-version) of an item whose partition or sort key
    /// starts with `prefix` fails, until [`Self::heal`].
    pub fn fail_writes_to(&self, prefix: &str) {
        self.failing_writes.lock().unwrap().push(prefix.to_owned());
    }

    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
        self.failing_writes.lock().unwrap().clear();
        *self.delay.lock().unwrap() = None;
    }

    /// Counts the call; `Some(message)` when it must fail.
    async fn check(&self, operation: &str) -> Option<String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.delay.lock().unwrap();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.failing.lock().unwrap().remove(&n).then(|| format!("injected throttling on call {n} ({operation})"))
    }

    /// [`Self::check`] for a write of `item`.
    async fn check_write(&self, operation: &str, item: &Item) -> Option<String> {
        let refused = self
            .failing_writes
            .lock()
            .unwrap()
            .iter()
            .any(|p| item.pk.starts_with(p.as_str()) || item.sk.starts_with(p.as_str()));
        match self.check(operation).await {
            None if refused => Some(format!("injected failure writing {} ({operation})", item.sk)),
            other => other,
        }
    }
}

#[derive(Debug)]
pub struct FaultyObjectStore {
    pub inner: Arc<dyn ObjectStore>,
    pub plan: Arc<FaultPlan>,
}

fn store_fault(message: String) -> ObjectStoreError {
    ObjectStoreError::Backend { message, retryable: true, source: None }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put(&self, bucket: &str, key: &str, data: Bytes) -> Result<ObjectMeta, ObjectStoreError> {
        match self.plan.check("put").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.put(bucket, key, data).await,
        }
    }
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        match self.plan.check("get").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.get(bucket, key, max_bytes).await,
        }
    }
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        match self.plan.check("head").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.head(bucket, key).await,
        }
    }
    async fn list(&self, bucket: &str, prefix: &str, cursor: Option<String>) -> Result<ListPage, ObjectStoreError> {
        match self.plan.check("list").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.list(bucket, prefix, cursor).await,
        }
    }
    async fn copy(&self, from_bucket: &str, from_key: &str, to_bucket: &str, to_key: &str) -> Result<(), ObjectStoreError> {
        match self.plan.check("copy").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.copy(from_bucket, from_key, to_bucket, to_key).await,
        }
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        match self.plan.check("delete").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.delete(bucket, key).await,
        }
    }
    async fn get_version(&self, bucket: &str, key: &str, version_id: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        match self.plan.check("get_version").await {
            Some(m) => Err(store_fault(m)),
            None => self.inner.get_version(bucket, key, version_id, max_bytes).await,
        }
    }
}

#[derive(Debug)]
pub struct FaultyTable {
    pub inner: Arc<dyn Table>,
    pub plan: Arc<FaultPlan>,
}

fn table_fault(message: String) -> TableError {
    TableError::Backend { message, retryable: true, source: None }
}

#[async_trait]
impl Table for FaultyTable {
    async fn put(&self, item: Item) -> Result<u64, TableError> {
        match self.plan.check_write("put", &item).await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.put(item).await,
        }
    }
    async fn put_if_absent(&self, item: Item) -> Result<u64, TableError> {
        match self.plan.check_write("put_if_absent", &item).await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.put_if_absent(item).await,
        }
    }
    async fn put_if_version(&self, item: Item, expected_version: u64) -> Result<u64, TableError> {
        match self.plan.check_write("put_if_version", &item).await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.put_if_version(item, expected_version).await,
        }
    }
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        match self.plan.check("get").await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.get(pk, sk).await,
        }
    }
    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, cursor: Option<String>) -> Result<Page, TableError> {
        match self.plan.check("query").await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.query(pk, sk_prefix, limit, cursor).await,
        }
    }
    async fn add(&self, pk: &str, sk: &str, field: &str, delta: i64) -> Result<i64, TableError> {
        match self.plan.check("add").await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.add(pk, sk, field, delta).await,
        }
    }
    async fn add_all(&self, pk: &str, sk: &str, deltas: &[(String, i64)], expires_at: Option<i64>) -> Result<(), TableError> {
        match self.plan.check("add_all").await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.add_all(pk, sk, deltas, expires_at).await,
        }
    }
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        match self.plan.check("delete").await {
            Some(m) => Err(table_fault(m)),
            None => self.inner.delete(pk, sk).await,
        }
    }
}

/// A job runner that counts the jobs it is asked to submit.
#[derive(Debug)]
pub struct CountingJobRunner {
    pub inner: Arc<dyn JobRunner>,
    submits: AtomicUsize,
}

impl CountingJobRunner {
    pub fn new(inner: Arc<dyn JobRunner>) -> Self {
        Self { inner, submits: AtomicUsize::new(0) }
    }

    pub fn submits(&self) -> usize {
        self.submits.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JobRunner for CountingJobRunner {
    async fn submit(&self, spec: &JobSpec) -> Result<String, JobsError> {
        self.submits.fetch_add(1, Ordering::SeqCst);
        self.inner.submit(spec).await
    }
    async fn find(&self, name: &str) -> Result<Option<String>, JobsError> {
        self.inner.find(name).await
    }
    async fn describe(&self, id: &str) -> Result<JobStatus, JobsError> {
        self.inner.describe(id).await
    }
}
