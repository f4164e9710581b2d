//! The folder watcher: a file another process puts into a bucket folder becomes the S3 event,
//! at once when the operating system tells of it, else at a scan; and only once.

use std::time::Duration;

use cvops_local::ObjectEvent;
use cvops_platform::watcher::Watcher;
use cvops_tests::platform::{TempPlatform, RAW};

/// The events the watcher announces from notifications within `limit`.
async fn notified_events(watcher: &mut Watcher, platform: &TempPlatform, limit: Duration) -> Vec<ObjectEvent> {
    let mut events = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        loop {
            let notification = watcher.notified().await;
            events.extend(watcher.complete(&notification, platform));
        }
    })
    .await;
    events
}

#[tokio::test]
async fn a_file_renamed_into_the_raw_folder_is_announced_by_its_notification_alone_and_once() {
    let platform = TempPlatform::new();
    let folder = platform.objects.bucket_dir(RAW).join("datasets/pets/train/cat");
    std::fs::create_dir_all(&folder).unwrap();
    let mut watcher = Watcher::new(&platform);
    assert!(watcher.is_notified(), "Linux gives inotify notifications");
    // As `cp` and `aws s3 sync` write: a hidden temporary, then a rename into place.
    std::fs::write(folder.join(".a.png.part"), b"not even an image").unwrap();
    std::fs::rename(folder.join(".a.png.part"), folder.join("a.png")).unwrap();
    let events = notified_events(&mut watcher, &platform, Duration::from_secs(2)).await;
    let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!((keys, events[0].bucket.as_str()), (vec!["datasets/pets/train/cat/a.png"], RAW));
    assert!(watcher.scan(&platform).is_empty() && watcher.scan(&platform).is_empty(), "announced once, not again by a scan");
}

#[tokio::test]
async fn a_file_written_in_place_is_announced_when_closed_and_a_scan_finds_what_no_notification_told() {
    let platform = TempPlatform::new();
    let folder = platform.objects.bucket_dir(RAW).join("datasets/pets/dog");
    std::fs::create_dir_all(&folder).unwrap();
    let mut watcher = Watcher::new(&platform);
    std::fs::write(folder.join("b.jpg"), b"bytes").unwrap();
    let events = notified_events(&mut watcher, &platform, Duration::from_secs(2)).await;
    assert_eq!(events.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["datasets/pets/dog/b.jpg"]);

    // A watcher that never reads its notifications still finds a file: at the second scan that
    // sees it unchanged (the first may catch it half-copied).
    let mut scanning = Watcher::new(&platform);
    std::fs::write(folder.join("c.jpg"), b"more bytes").unwrap();
    assert!(scanning.scan(&platform).is_empty(), "first seen: maybe still being copied");
    let found = scanning.scan(&platform);
    assert_eq!(found.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["datasets/pets/dog/c.jpg"]);
    assert!(scanning.scan(&platform).is_empty());
}
