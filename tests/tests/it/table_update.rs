//! `TableExt::update`, the one optimistic-concurrency helper: a conditional write that loses a
//! race reads again and decides again; one that keeps losing reports the conflict; a decision to
//! keep writes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cvops_core::ports::{Item, Page, Table, TableError, TableExt, Update, CONFLICT_ATTEMPTS};
use cvops_tests::platform::TempPlatform;

/// A table on which another writer adds 100 to the item's `n` just before each of our next
/// `races` conditional writes.
#[derive(Debug)]
struct Racing {
    inner: Arc<dyn Table>,
    races: AtomicUsize,
}

impl Racing {
    async fn race(&self, item: &Item) -> Result<(), TableError> {
        if self.races.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let n = self.inner.get(&item.pk, &item.sk).await?.and_then(|i| i.i64_attr("n")).unwrap_or(0);
            self.inner.put(Item::new(&item.pk, &item.sk).with("n", n + 100)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Table for Racing {
    async fn put(&self, item: Item) -> Result<u64, TableError> {
        self.inner.put(item).await
    }
    async fn put_if_absent(&self, item: Item) -> Result<u64, TableError> {
        self.race(&item).await?;
        self.inner.put_if_absent(item).await
    }
    async fn put_if_version(&self, item: Item, expected_version: u64) -> Result<u64, TableError> {
        self.race(&item).await?;
        self.inner.put_if_version(item, expected_version).await
    }
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        self.inner.get(pk, sk).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, cursor: Option<String>) -> Result<Page, TableError> {
        self.inner.query(pk, sk_prefix, limit, cursor).await
    }
    async fn add(&self, pk: &str, sk: &str, field: &str, delta: i64) -> Result<i64, TableError> {
        self.inner.add(pk, sk, field, delta).await
    }
    async fn add_all(&self, pk: &str, sk: &str, deltas: &[(String, i64)], expires_at: Option<i64>) -> Result<(), TableError> {
        self.inner.add_all(pk, sk, deltas, expires_at).await
    }
    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        self.inner.delete(pk, sk).await
    }
}

/// Adds one to `n` with `update`, counting the decisions.
async fn increment(table: &Racing, decisions: &AtomicUsize) -> Result<i64, TableError> {
    table
        .update("COUNTER", "N", |read| {
            decisions.fetch_add(1, Ordering::SeqCst);
            let n = read.and_then(|item| item.i64_attr("n")).unwrap_or(0) + 1;
            Ok::<_, TableError>(Update::Write(Item::new("COUNTER", "N").with("n", n), n))
        })
        .await
}

#[tokio::test]
async fn an_update_that_loses_a_race_decides_again_on_what_the_winner_wrote() {
    let platform = TempPlatform::new();
    let table = Racing { inner: platform.table.clone(), races: AtomicUsize::new(2) };
    let decisions = AtomicUsize::new(0);
    // Absent, then 100 and 200 written by the other writer: ours lands on top of both.
    assert_eq!(increment(&table, &decisions).await.unwrap(), 201);
    assert_eq!(decisions.load(Ordering::SeqCst), 3);
    assert_eq!(platform.table.get("COUNTER", "N").await.unwrap().unwrap().i64_attr("n"), Some(201));
}

#[tokio::test]
async fn an_update_that_always_loses_reports_the_conflict_after_its_attempts() {
    let platform = TempPlatform::new();
    let table = Racing { inner: platform.table.clone(), races: AtomicUsize::new(CONFLICT_ATTEMPTS) };
    let decisions = AtomicUsize::new(0);
    let lost = increment(&table, &decisions).await.unwrap_err();
    assert!(matches!(lost, TableError::Conflict { ref pk, ref sk } if pk == "COUNTER" && sk == "N"), "{lost}");
    assert_eq!(decisions.load(Ordering::SeqCst), CONFLICT_ATTEMPTS);
}

#[tokio::test]
async fn a_decision_to_keep_writes_nothing() {
    let platform = TempPlatform::new();
    let written = platform.table.put(Item::new("COUNTER", "N").with("n", 7)).await.unwrap();
    let kept: i64 = platform
        .table
        .update("COUNTER", "N", |read| Ok::<_, TableError>(Update::Keep(read.and_then(|i| i.i64_attr("n")).unwrap_or(0))))
        .await
        .unwrap();
    assert_eq!(kept, 7);
    assert_eq!(platform.table.get("COUNTER", "N").await.unwrap().unwrap().version, written, "no write, no new version");
}
