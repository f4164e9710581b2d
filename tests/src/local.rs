//! The embedded adapters in a temporary folder: what most cross-crate tests start from.

use std::sync::Arc;

use cvops_core::clock::SystemClock;
use cvops_ingest::{Ingest, IngestConfig};
use cvops_local::{open_database, FsObjectStore, SqliteTable};

pub const RAW: &str = "raw";
pub const STORE: &str = "store";

pub struct LocalStack {
    /// Removed when the stack is dropped.
    pub dir: tempfile::TempDir,
    pub clock: Arc<SystemClock>,
    pub objects: Arc<FsObjectStore>,
    pub table: Arc<SqliteTable>,
}

impl LocalStack {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let clock = Arc::new(SystemClock);
        let objects = Arc::new(FsObjectStore::new(dir.path().join("buckets")).expect("the buckets folder"));
        let db = open_database(&dir.path().join("db.sqlite")).expect("the database");
        let table = Arc::new(SqliteTable::open(db, clock.clone()).expect("the table"));
        Self { dir, clock, objects, table }
    }

    /// Ingest on this stack, quarantining into [`STORE`].
    pub fn ingest(&self) -> Ingest {
        Ingest::new(self.objects.clone(), self.table.clone(), self.clock.clone(), IngestConfig::new(STORE))
    }
}

impl Default for LocalStack {
    fn default() -> Self {
        Self::new()
    }
}
