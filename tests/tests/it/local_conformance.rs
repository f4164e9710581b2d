//! The port conformance suites against the embedded implementations.

use std::sync::Arc;

use cvops_core::clock::{Clock, ManualClock, SystemClock};
use cvops_local::{open_database, FsObjectStore, ProcessJobRunner, SqliteQueue, SqliteTable};
use cvops_tests::conformance;

#[tokio::test]
async fn the_filesystem_object_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::new(dir.path()).unwrap();
    conformance::object_store::object_store(&store, "raw", "conformance").await;
}

#[tokio::test]
async fn the_filesystem_object_store_refuses_keys_that_escape_the_bucket() {
    use cvops_core::ports::{ObjectStore, ObjectStoreError};
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::new(dir.path().join("buckets")).unwrap();
    for key in ["../outside", "a/../../outside", "/etc/passwd", "a//b", "a/./b", ""] {
        let result = store.put("raw", key, bytes::Bytes::from_static(b"x")).await;
        assert!(matches!(result, Err(ObjectStoreError::InvalidKey { .. })), "{key:?}: {result:?}");
    }
    assert!(!dir.path().join("outside").exists());
}

#[tokio::test]
async fn the_sqlite_table_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let table = SqliteTable::open(open_database(&dir.path().join("db.sqlite")).unwrap(), clock.clone()).unwrap();
    conformance::table::table(&table, clock.as_ref(), "conformance").await;
}

#[tokio::test]
async fn the_sqlite_queue_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_700_000_000_000));
    let queue = SqliteQueue::open(open_database(&dir.path().join("db.sqlite")).unwrap(), clock.clone()).unwrap();
    queue.create_queue("training", Some("training-dlq"), 3).unwrap();
    let pass_time = move |d: std::time::Duration| clock.advance_millis(d.as_millis() as i64);
    conformance::queue::queue(&queue, "training", "training-dlq", 3, &pass_time).await;
}

#[tokio::test]
async fn the_process_job_runner_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::jobs::jobs(&ProcessJobRunner::new(dir.path()).unwrap()).await;
}
