//! The folder watcher: files that appear in the raw bucket's folder without passing through the
//! object store (copied in by hand, or by another program) become the events S3 would have sent.
//! (A training job's model card is routed by the job's host: see [`crate::job_host`].)
//!
//! The operating system tells of a file the moment it is complete (closed after writing, or
//! renamed into place), through the `notify` crate (inotify, FSEvents, ReadDirectoryChangesW).
//! Polling is the fallback, and also the safety net for what notifications miss (a file system
//! that sends none, such as some network mounts, or a file written in place without a close
//! event): a periodic scan announces a file once it kept its size and time for one scan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cvops_local::{ObjectEvent, ObjectEventKind};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::platform::{LocalPlatform, RAW_BUCKET};

/// Finds files that appeared in the raw bucket's folder without passing through the object store
/// and turns them into the event S3 would have sent. A file counts once it has kept its size and time for one scan, so one
/// still being copied is not read half-way.
pub struct Watcher {
    roots: Vec<PathBuf>,
    /// Path -> (size, modified) as last seen; `announced` once routed.
    known: HashMap<PathBuf, (u64, SystemTime, bool)>,
    /// The operating system's notifications, when it gives them; `None` leaves polling alone.
    notifications: Option<(RecommendedWatcher, UnboundedReceiver<notify::Event>)>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("roots", &self.roots).field("notified", &self.notifications.is_some()).finish()
    }
}

impl Watcher {
    /// Watches the raw bucket's folder. Everything already there is known: the watcher reports
    /// what arrives from now on.
    pub fn new(platform: &LocalPlatform) -> Self {
        let roots = vec![platform.objects.bucket_dir(RAW_BUCKET)];
        let notifications = match notifications(&roots) {
            Ok(notifications) => Some(notifications),
            Err(e) => {
                tracing::warn!(error = %e, "no file system notifications here: the bucket folders are scanned instead");
                None
            }
        };
        let mut watcher = Self { roots, known: HashMap::new(), notifications };
        for (path, size, modified) in watcher.files() {
            watcher.known.insert(path, (size, modified, true));
        }
        watcher
    }

    /// Whether the operating system's notifications are on (else only scans find files).
    pub fn is_notified(&self) -> bool {
        self.notifications.is_some()
    }

    /// The next notification about the bucket folders; never, without notifications.
    pub async fn notified(&mut self) -> notify::Event {
        match &mut self.notifications {
            Some((_, receiver)) => match receiver.recv().await {
                Some(event) => event,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// The events for the files a notification says are complete: closed after writing, or
    /// renamed into place. Others (created, still being written) wait for the close, or a scan.
    pub fn complete(&mut self, event: &notify::Event, platform: &LocalPlatform) -> Vec<ObjectEvent> {
        let path = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => event.paths.first(),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first(),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
            _ => None,
        };
        let Some(path) = path else { return Vec::new() };
        if path.file_name().is_none_or(|name| name.to_string_lossy().starts_with('.')) {
            return Vec::new();
        }
        let Ok(meta) = std::fs::metadata(path) else { return Vec::new() };
        if !meta.is_file() {
            return Vec::new();
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if self.known.get(path).is_some_and(|(size, time, announced)| *announced && *size == meta.len() && *time == modified) {
            return Vec::new();
        }
        self.known.insert(path.clone(), (meta.len(), modified, true));
        self.event_for(path, meta.len(), platform).into_iter().collect()
    }

    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
                // Hidden files are editors' and copiers' temporaries, not uploads.
                if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    out.push((entry.path().to_path_buf(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                }
            }
        }
        out
    }

    /// An event that came through the store: its file is already handled.
    pub fn saw(&mut self, event: &ObjectEvent, platform: &LocalPlatform) {
        if event.bucket != RAW_BUCKET {
            return;
        }
        let path = platform.objects.bucket_dir(&event.bucket).join(&event.key);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                self.known.insert(path, (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), true));
            }
            Err(_) => {
                self.known.remove(&path);
            }
        }
    }

    pub fn scan(&mut self, platform: &LocalPlatform) -> Vec<ObjectEvent> {
        let mut events = Vec::new();
        for (path, size, modified) in self.files() {
            match self.known.get(&path) {
                Some((s, m, announced)) if *s == size && *m == modified => {
                    if !announced {
                        if let Some(event) = self.event_for(&path, size, platform) {
                            events.push(event);
                        }
                        self.known.insert(path, (size, modified, true));
                    }
                }
                // New or still changing: look again at the next scan.
                _ => {
                    self.known.insert(path, (size, modified, false));
                }
            }
        }
        events
    }

    fn event_for(&self, path: &Path, size: u64, platform: &LocalPlatform) -> Option<ObjectEvent> {
        let relative = path.strip_prefix(platform.objects.bucket_dir(RAW_BUCKET)).ok()?;
        let key = relative.to_str()?.replace(std::path::MAIN_SEPARATOR, "/");
        Some(created_event(RAW_BUCKET, &key, size))
    }
}

/// The `ObjectCreated:Put` event S3 would send for an object of `size` bytes that another process
/// wrote under `key`.
fn created_event(bucket: &str, key: &str, size: u64) -> ObjectEvent {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    ObjectEvent {
        bucket: bucket.into(),
        key: key.into(),
        kind: ObjectEventKind::Created { size, etag: format!("{size:x}-{:x}", now.as_nanos()), copy: false },
        sequencer: cvops_local::next_sequencer(),
        time_millis: now.as_millis() as i64,
    }
}

/// Recursive notifications on every root, handed to an async receiver.
fn notifications(roots: &[PathBuf]) -> notify::Result<(RecommendedWatcher, UnboundedReceiver<notify::Event>)> {
    let (sender, receiver) = unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // An error (an overflowed queue) loses nothing for good: the next scan finds the files.
        if let Ok(event) = event {
            let _ = sender.send(event);
        }
    })?;
    for root in roots {
        std::fs::create_dir_all(root)?;
        watcher.watch(root, RecursiveMode::Recursive)?;
    }
    Ok((watcher, receiver))
}
