//! The local platform in a temporary folder: what most cross-crate tests start from. The same
//! [`LocalPlatform`] the `cvops` command opens, so the tests exercise its wiring, not a copy.

use std::ops::Deref;

use cvops_core::config::Vars;

pub use cvops_platform::{LocalPlatform, MODELS_BUCKET as MODELS, RAW_BUCKET as RAW, STORE_BUCKET as STORE};

pub struct TempPlatform {
    pub platform: LocalPlatform,
    /// Removed when the platform is dropped.
    _dir: tempfile::TempDir,
}

impl TempPlatform {
    /// The platform with the functions' default settings, whatever `CVOPS_*` the test's
    /// environment holds.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let platform = LocalPlatform::open_with(dir.path(), Vars::from_pairs(&[])).expect("the local platform");
        Self { platform, _dir: dir }
    }
}

impl Default for TempPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for TempPlatform {
    type Target = LocalPlatform;

    fn deref(&self) -> &LocalPlatform {
        &self.platform
    }
}

/// The digits sample set, in the repository.
pub fn digits_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits")
}

impl TempPlatform {
    /// Uploads the first `per_label` digits of every label of each split into `dataset` and
    /// ingests them as S3 events would; returns how many were uploaded.
    pub async fn upload_digits(&self, dataset: &str, per_label: [(&str, usize); 3]) -> usize {
        self.upload_digits_as(dataset, per_label, |digit| digit.to_string()).await
    }

    /// [`Self::upload_digits`] with each digit's folder named by `label`: the same images as
    /// another task.
    pub async fn upload_digits_as(&self, dataset: &str, per_label: [(&str, usize); 3], label: impl Fn(u32) -> String) -> usize {
        use cvops_core::ports::ObjectStore;
        let ingest = &self.ingest;
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
