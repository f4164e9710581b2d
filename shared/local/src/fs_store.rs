//! Buckets as folders under one root: `<root>/<bucket>/<key>`.
//!
//! Puts write a temporary file outside the buckets and rename it into place, so a reader sees the
//! old object or the new one, never half of one. Each change can be announced on a channel as an
//! [`ObjectEvent`] carrying an S3-style sequencer, which is how the local platform reproduces S3
//! event notifications.
//!
//! Durability: a change is on disk before it is announced, as S3 has stored an object before it
//! sends the notification. A put (and a copy) flushes the temporary file's data before the rename
//! and then the folder that holds the new name (and any folder it had to create), so that a power
//! cut after the event cannot leave the catalog pointing at an object that is missing or empty; a
//! delete flushes the folder it removed the name from. A process killed in the middle of a put
//! leaves at most a temporary file, never a visible object; [`FsObjectStore::new`] sweeps those
//! once they are old enough that no put can still be writing them.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cvops_core::ports::{ListPage, ObjectMeta, ObjectStore, ObjectStoreError};
use tokio::sync::mpsc::UnboundedSender;

const TEMP_DIR: &str = ".tmp";
const LIST_PAGE: usize = 1000;
/// A temporary file untouched for this long belongs to a put that will never finish (its process
/// was killed): a put keeps writing its file until the rename.
const STALE_TEMP: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectEventKind {
    /// `ObjectCreated:Put` or `ObjectCreated:Copy`.
    Created { size: u64, etag: String, copy: bool },
    /// `ObjectRemoved:Delete`.
    Removed,
}

/// A change to a bucket, in the terms of an S3 event notification record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    pub bucket: String,
    pub key: String,
    pub kind: ObjectEventKind,
    /// Increases with every change made through any store of this process (hex, as S3's).
    pub sequencer: String,
    pub time_millis: i64,
}

#[derive(Debug)]
pub struct FsObjectStore {
    root: PathBuf,
    events: Option<UnboundedSender<ObjectEvent>>,
}

impl FsObjectStore {
    /// Opens (creating if needed) the buckets under `root`, and removes the temporary files of
    /// puts that were interrupted more than an hour ago.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        create_dirs_durably(&root.join(TEMP_DIR))?;
        sweep_stale_temps(&root.join(TEMP_DIR), STALE_TEMP);
        Ok(Self { root, events: None })
    }

    /// Announces every put, copy and delete on `sender`.
    pub fn with_events(mut self, sender: UnboundedSender<ObjectEvent>) -> Self {
        self.events = Some(sender);
        self
    }

    /// The folder that holds a bucket's objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectStoreError> {
        check_name(bucket, "bucket")?;
        let invalid = |why: &str| ObjectStoreError::InvalidKey { key: key.to_owned(), why: why.to_owned() };
        if key.is_empty() || key.len() > 1024 {
            return Err(invalid("a key is 1 to 1024 bytes"));
        }
        if key.contains('\0') || key.starts_with('/') || key.ends_with('/') {
            return Err(invalid("a local key has no NUL, and does not start or end with '/'"));
        }
        let relative = Path::new(key);
        let odd_segment = key.split('/').any(|s| s.is_empty() || s == "." || s == "..");
        if odd_segment || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(invalid("a local key has no empty, '.' or '..' segments"));
        }
        Ok(self.bucket_dir(bucket).join(relative))
    }

    fn announce(&self, bucket: &str, key: &str, kind: ObjectEventKind) {
        if let Some(events) = &self.events {
            let time_millis = now_nanos() as i64 / 1_000_000;
            // A closed receiver means nobody routes events any more (shutdown): nothing to do.
            let _ = events.send(ObjectEvent {
                bucket: bucket.into(),
                key: key.into(),
                kind,
                sequencer: next_sequencer(),
                time_millis,
            });
        }
    }

    /// Puts a local file's content without holding it in memory (`cvops upload` of large files).
    pub fn put_file(&self, bucket: &str, key: &str, source: &Path) -> Result<ObjectMeta, ObjectStoreError> {
        let path = self.path(bucket, key)?;
        self.place(&path, |temp| fs::copy(source, temp).map(|_| ()))?;
        let meta = meta(key, &fs::metadata(&path).map_err(io_error)?);
        self.announce(bucket, key, ObjectEventKind::Created { size: meta.size, etag: meta.etag.clone(), copy: false });
        Ok(meta)
    }

    fn write_atomically(&self, path: &Path, data: &[u8]) -> Result<(), ObjectStoreError> {
        self.place(path, |temp| fs::write(temp, data))
    }

    /// Writes a temporary file with `write` and flushes it to disk, renames it to `path`, then
    /// flushes the folder that holds `path`: when this returns, the object survives a power cut.
    fn place(&self, path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), ObjectStoreError> {
        let temp = self.root.join(TEMP_DIR).join(uuid::Uuid::new_v4().to_string());
        let written = write(&temp).and_then(|()| sync_file(&temp));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error(e));
        }
        let parent = path.parent().expect("an object's path is inside its bucket folder");
        let renamed = create_dirs_durably(parent).and_then(|()| fs::rename(&temp, path));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(io_error(e));
        }
        sync_dir(parent).map_err(io_error)
    }
}

/// Flushes a file's data and metadata (`fsync`; on macOS `F_FULLFSYNC`, which is what
/// `sync_all` does there).
fn sync_file(path: &Path) -> std::io::Result<()> {
    // Opened for writing, as Windows flushes only handles with write access.
    fs::OpenOptions::new().write(true).open(path)?.sync_all()
}

/// Flushes a folder, so that the names created, renamed into or removed from it are on disk.
/// Windows has no such call for folders (NTFS journals its metadata): nothing to do there.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `create_dir_all`, then a flush of the parent of every folder it created, top down: a new
/// object's folder must not vanish in a power cut while its object's name survives.
fn create_dirs_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(d) = cursor.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(d);
        cursor = d.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Removes the temporary files in `temp_dir` not modified for `age`: the leftovers of puts whose
/// process was killed. Best effort: a file it cannot read or remove stays for the next sweep.
fn sweep_stale_temps(temp_dir: &Path, age: Duration) {
    let Ok(entries) = fs::read_dir(temp_dir) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let Ok(metadata) = entry.metadata() else { continue };
        let stale = metadata.modified().ok().and_then(|m| now.duration_since(m).ok()).is_some_and(|idle| idle >= age);
        if metadata.is_file() && stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn check_name(bucket: &str, what: &str) -> Result<(), ObjectStoreError> {
    let ok = !bucket.is_empty()
        && bucket != TEMP_DIR
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ObjectStoreError::InvalidKey { key: bucket.to_owned(), why: format!("not a valid {what} name") })
    }
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// Strictly increasing within the process, and across processes as far as the clock goes.
/// The next sequencer of this process: what a change seen outside the store (a file copied into
/// a bucket folder) is announced with.
pub fn next_sequencer() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_nanos() as u64;
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return format!("{next:016X}"),
            Err(seen) => last = seen,
        }
    }
}

fn io_error(e: std::io::Error) -> ObjectStoreError {
    let retryable = matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut);
    ObjectStoreError::Backend { message: e.to_string(), retryable, source: Some(Box::new(e)) }
}

fn meta(key: &str, metadata: &fs::Metadata) -> ObjectMeta {
    let modified = metadata.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    ObjectMeta {
        key: key.to_owned(),
        size: metadata.len(),
        // Size and modification time to the nanosecond: changes whenever a put replaces the file.
        etag: format!("{:x}-{:x}", metadata.len(), modified.as_nanos()),
        last_modified_millis: modified.as_millis() as i64,
        // A folder keeps one version of a key: what must never change is written under a key of
        // its own (a trainer attempt's model), so nothing here needs an older version back.
        version_id: None,
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn put(&self, bucket: &str, key: &str, data: Bytes) -> Result<ObjectMeta, ObjectStoreError> {
        let path = self.path(bucket, key)?;
        self.write_atomically(&path, &data)?;
        let meta = meta(key, &fs::metadata(&path).map_err(io_error)?);
        self.announce(bucket, key, ObjectEventKind::Created { size: meta.size, etag: meta.etag.clone(), copy: false });
        Ok(meta)
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, ObjectStoreError> {
        let path = self.path(bucket, key)?;
        let not_found = || ObjectStoreError::NotFound { bucket: bucket.to_owned(), key: key.to_owned() };
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(io_error(e)),
        };
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.is_file() {
            return Err(not_found());
        }
        let size = metadata.len();
        if size > max_bytes {
            return Err(ObjectStoreError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes });
        }
        // Bounded even if the file grows between the size check and the read.
        let mut data = Vec::with_capacity(size as usize);
        file.take(max_bytes + 1).read_to_end(&mut data).map_err(io_error)?;
        if data.len() as u64 > max_bytes {
            return Err(ObjectStoreError::TooLarge {
                bucket: bucket.into(),
                key: key.into(),
                size: data.len() as u64,
                limit: max_bytes,
            });
        }
        Ok(Bytes::from(data))
    }

    /// Never asked: this store reports no versions.
    async fn get_version(&self, bucket: &str, key: &str, version_id: &str, _: u64) -> Result<Bytes, ObjectStoreError> {
        Err(ObjectStoreError::InvalidKey {
            key: format!("{bucket}/{key}"),
            why: format!("local buckets keep no versions (asked for {version_id})"),
        })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectMeta, ObjectStoreError> {
        let path = self.path(bucket, key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(meta(key, &m)),
            Ok(_) => Err(ObjectStoreError::NotFound { bucket: bucket.into(), key: key.into() }),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(ObjectStoreError::NotFound { bucket: bucket.into(), key: key.into() })
            }
            Err(e) => Err(io_error(e)),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str, cursor: Option<String>) -> Result<ListPage, ObjectStoreError> {
        check_name(bucket, "bucket")?;
        let bucket_dir = self.bucket_dir(bucket);
        // Walk only the folder the prefix names, then filter on the rest of the prefix.
        let start = match prefix.rfind('/') {
            Some(slash) => bucket_dir.join(&prefix[..slash]),
            None => bucket_dir.clone(),
        };
        let mut keys = Vec::new();
        collect_files(&bucket_dir, &start, &mut keys).map_err(io_error)?;
        let cursor = cursor.unwrap_or_default();
        let mut keys: Vec<(String, fs::Metadata)> =
            keys.into_iter().filter(|(key, _)| key.starts_with(prefix) && key.as_str() > cursor.as_str()).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        let next = (keys.len() > LIST_PAGE).then(|| keys[LIST_PAGE - 1].0.clone());
        keys.truncate(LIST_PAGE);
        Ok(ListPage { objects: keys.iter().map(|(key, m)| meta(key, m)).collect(), next })
    }

    async fn copy(&self, from_bucket: &str, from_key: &str, to_bucket: &str, to_key: &str) -> Result<(), ObjectStoreError> {
        let from = self.path(from_bucket, from_key)?;
        let to = self.path(to_bucket, to_key)?;
        let data = match fs::read(&from) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ObjectStoreError::NotFound { bucket: from_bucket.into(), key: from_key.into() })
            }
            Err(e) => return Err(io_error(e)),
        };
        self.write_atomically(&to, &data)?;
        let meta = meta(to_key, &fs::metadata(&to).map_err(io_error)?);
        self.announce(to_bucket, to_key, ObjectEventKind::Created { size: meta.size, etag: meta.etag, copy: true });
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectStoreError> {
        let path = self.path(bucket, key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(e)),
        }
        // Tidy the folders the key made, as S3 has no folders to leave behind.
        let bucket_dir = self.bucket_dir(bucket);
        let mut dir = path.parent().expect("an object's path is inside its bucket folder");
        while dir != bucket_dir && dir.starts_with(&bucket_dir) && fs::remove_dir(dir).is_ok() {
            dir = dir.parent().expect("inside the bucket folder");
        }
        // The removal is on disk before it is announced: the lowest folder still there lost a name.
        sync_dir(dir).map_err(io_error)?;
        self.announce(bucket, key, ObjectEventKind::Removed);
        Ok(())
    }
}

fn collect_files(bucket_dir: &Path, dir: &Path, out: &mut Vec<(String, fs::Metadata)>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let metadata = entry.metadata()?;
        let path = entry.path();
        if metadata.is_dir() {
            collect_files(bucket_dir, &path, out)?;
        } else if metadata.is_file() {
            if let Some(key) = path.strip_prefix(bucket_dir).ok().and_then(|p| p.to_str()) {
                out.push((key.to_owned(), metadata));
            }
        }
    }
    Ok(())
}

/// A fresh folder under the system's temporary folder, removed on drop (no dev-dependency needed).
#[cfg(test)]
pub(crate) struct TestDir(PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("cvops-local-test-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps(root: &Path) -> Vec<PathBuf> {
        fs::read_dir(root.join(TEMP_DIR)).unwrap().map(|e| e.unwrap().path()).collect()
    }

    #[tokio::test]
    async fn puts_copies_and_deletes_leave_no_temporary_files_and_no_empty_folders() {
        let dir = TestDir::new();
        let store = FsObjectStore::new(dir.path()).unwrap();
        store.put("raw", "a/b/c/one.bin", Bytes::from_static(b"one")).await.unwrap();
        let source = dir.path().join("source.bin");
        fs::write(&source, b"two").unwrap();
        store.put_file("raw", "a/b/two.bin", &source).unwrap();
        store.copy("raw", "a/b/c/one.bin", "store", "x/one.bin").await.unwrap();
        assert!(temps(dir.path()).is_empty(), "every temporary file was renamed into place");
        assert_eq!(fs::read(dir.path().join("raw/a/b/c/one.bin")).unwrap(), b"one");
        assert_eq!(fs::read(dir.path().join("store/x/one.bin")).unwrap(), b"one");

        store.delete("raw", "a/b/c/one.bin").await.unwrap();
        assert!(!dir.path().join("raw/a/b/c").exists(), "the emptied folder went with the object");
        assert!(dir.path().join("raw/a/b/two.bin").exists());
        store.delete("raw", "a/b/two.bin").await.unwrap();
        assert!(!dir.path().join("raw/a").exists());
        assert!(dir.path().join("raw").is_dir(), "the bucket folder stays");
    }

    #[test]
    fn opening_sweeps_only_the_temporary_files_of_long_interrupted_puts() {
        let dir = TestDir::new();
        FsObjectStore::new(dir.path()).unwrap();
        let (old, fresh) = (dir.path().join(TEMP_DIR).join("old"), dir.path().join(TEMP_DIR).join("fresh"));
        fs::write(&old, b"half of a put").unwrap();
        fs::write(&fresh, b"a put in progress").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
        fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        FsObjectStore::new(dir.path()).unwrap();
        assert_eq!(temps(dir.path()), vec![fresh]);
    }

    #[test]
    fn folders_are_created_all_the_way_down() {
        let dir = TestDir::new();
        let deep = dir.path().join("a/b/c");
        create_dirs_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dirs_durably(&deep).unwrap();
        sync_dir(&deep).unwrap();
    }
}
