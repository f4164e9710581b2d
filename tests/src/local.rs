//! The embedded adapters in a temporary folder: what most cross-crate tests start from.

use std::sync::Arc;

use cvops_core::clock::SystemClock;
use cvops_ingest::{Ingest, IngestConfig};
use cvops_local::{open_database, FsObjectStore, SqliteTable};

pub const RAW: &str = "raw";
pub const STORE: &str = "store";
pub const MODELS: &str = "models";

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

/// The digits sample set, in the repository.
pub fn digits_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits")
}

impl LocalStack {
    /// Uploads the first `per_label` digits of every label of each split into `dataset` and
    /// ingests them as S3 events would; returns how many were uploaded.
    pub async fn upload_digits(&self, dataset: &str, per_label: [(&str, usize); 3]) -> usize {
        self.upload_digits_as(dataset, per_label, |digit| digit.to_string()).await
    }

    /// [`Self::upload_digits`] with each digit's folder named by `label`: the same images as
    /// another task.
    pub async fn upload_digits_as(&self, dataset: &str, per_label: [(&str, usize); 3], label: impl Fn(u32) -> String) -> usize {
        use cvops_core::ports::ObjectStore;
        let ingest = self.ingest();
        let mut uploaded = 0;
        for (split, count) in per_label {
            for digit in 0..10 {
                let dir = digits_dir().join(split).join(digit.to_string());
                let label = label(digit);
                let mut names: Vec<_> = std::fs::read_dir(&dir).expect("the digits").map(|e| e.unwrap().path()).collect();
                names.sort();
                for path in names.into_iter().take(count) {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    let key = format!("datasets/{dataset}/{split}/{label}/{name}");
                    let data = bytes::Bytes::from(std::fs::read(&path).unwrap());
                    self.objects.put(RAW, &key, data).await.unwrap();
                    uploaded += 1;
                    let event = crate::events::s3_event(crate::events::S3_PUT, RAW, &key, &format!("{uploaded:08}"), None);
                    ingest.handle(&event).await.unwrap();
                }
            }
        }
        uploaded
    }
}

/// Every file under `dir` (recursively) whose name ends in `.extension`, in path order.
pub fn files_with_extension(dir: &std::path::Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
