//! Dataset snapshots on the embedded adapters: what they hold, that they are content-addressed,
//! and that the manifest streams part by part.

use bytes::Bytes;
use cvops_core::key::Split;
use cvops_core::ports::{ObjectStore, ObjectStoreExt, Table};
use cvops_core::snapshot::{self, SnapshotError};
use cvops_ingest::Ingest;
use cvops_tests::events::{s3_event, S3_PUT};
use cvops_tests::platform::{TempPlatform, RAW};

struct Env {
    stack: TempPlatform,
    ingest: Ingest,
}

fn env() -> Env {
    let stack = TempPlatform::new();
    let ingest = stack.ingest.clone();
    Env { stack, ingest }
}

impl Env {
    async fn upload(&self, key: &str, data: &[u8], sequencer: &str) {
        self.stack.objects.put(RAW, key, Bytes::copy_from_slice(data)).await.unwrap();
        self.ingest.handle(&s3_event(S3_PUT, RAW, key, sequencer, None)).await.unwrap();
    }

    /// Five accepted digits over two labels and all splits, one exact duplicate, one rejection.
    async fn populate(&self) {
        let digit = |label: &str, split: &str| {
            std::fs::read(format!("{}/../samplesets/digits/{split}/{label}/{}", env!("CARGO_MANIFEST_DIR"), first(label, split)))
                .unwrap()
        };
        self.upload("datasets/d/train/3/a.png", &digit("3", "train"), "01").await;
        self.upload("datasets/d/val/3/b.png", &digit("3", "val"), "02").await;
        self.upload("datasets/d/test/3/c.png", &digit("3", "test"), "03").await;
        self.upload("datasets/d/train/8/d.png", &digit("8", "train"), "04").await;
        self.upload("datasets/d/train/8/e.png", &digit("8", "val"), "05").await;
        self.upload("datasets/d/train/8/dup.png", &digit("8", "train"), "06").await;
        self.upload("datasets/d/train/8/bad.png", b"not an image", "07").await;
    }
}

fn first(label: &str, split: &str) -> String {
    let dir = format!("{}/../samplesets/digits/{split}/{label}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names.remove(0)
}

#[tokio::test]
async fn a_snapshot_lists_the_accepted_samples_with_counts_and_a_baseline() {
    let env = env();
    env.populate().await;
    let snap =
        snapshot::create(env.stack.table.as_ref(), env.stack.objects.as_ref(), "store", "d", "2026-11-27T00:00:00Z".into())
            .await
            .unwrap();
    assert_eq!(snap.samples, 5, "duplicates and rejections are not samples");
    assert_eq!(snap.labels, ["3", "8"]);
    assert_eq!(snap.counts["3"][&Split::Val], 1);
    assert_eq!(snap.counts["8"][&Split::Train], 2);
    assert_eq!(snap.baseline.brightness.total(), 5);
    assert_eq!(snap.baseline.width.total(), 5);

    let mut lines = Vec::new();
    snapshot::for_each_line(env.stack.objects.as_ref(), "store", &snap, |line| lines.push(line)).await.unwrap();
    let keys: Vec<_> = lines.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "datasets/d/test/3/c.png",
            "datasets/d/train/3/a.png",
            "datasets/d/train/8/d.png",
            "datasets/d/train/8/e.png",
            "datasets/d/val/3/b.png"
        ]
    );
    assert!(lines.iter().all(|l| l.sha256.len() == 64));
    for line in &lines {
        let size = env.stack.objects.head(RAW, &line.key).await.unwrap().size;
        assert_eq!(line.bytes, Some(size), "the manifest carries each object's size: {}", line.key);
    }

    // The descriptor is stored, and the table lists the snapshot.
    assert!(env.stack.objects.exists("store", &snapshot::descriptor_key("d", &snap.id)).await.unwrap());
    let item = env.stack.table.get("DS#d", &snapshot::snapshot_sk(&snap.id)).await.unwrap().expect("the snapshot is recorded");
    assert_eq!(item.i64_attr("samples"), Some(5));
}

#[tokio::test]
async fn the_same_accepted_set_gives_the_same_snapshot_and_a_change_a_new_one() {
    let env = env();
    env.populate().await;
    let create = |parts| {
        snapshot::create_in_parts(env.stack.table.as_ref(), env.stack.objects.as_ref(), "store", "d", "now".into(), parts)
    };
    let first = create(2).await.unwrap();
    let again = create(2).await.unwrap();
    assert_eq!(first.id, again.id, "content-addressed");
    assert_eq!(first.parts, again.parts);
    assert_eq!(first.parts.len(), 3, "5 lines in parts of 2");
    let part_objects = env.stack.objects.list_all("store", "snapshots/d/parts/").await.unwrap();
    assert_eq!(part_objects.len(), 3, "parts are stored once");

    let mut streamed = 0;
    snapshot::for_each_line(env.stack.objects.as_ref(), "store", &first, |_| streamed += 1).await.unwrap();
    assert_eq!(streamed, 5, "every part is read back in order");

    env.upload(
        "datasets/d/train/3/new.png",
        &std::fs::read(format!("{}/../samplesets/digits/train/5/{}", env!("CARGO_MANIFEST_DIR"), first_name("5"))).unwrap(),
        "08",
    )
    .await;
    let changed = create(2).await.unwrap();
    assert_ne!(changed.id, first.id, "a new sample makes a new snapshot");
    assert_eq!(changed.samples, 6);
}

fn first_name(label: &str) -> String {
    first(label, "train")
}

#[tokio::test]
async fn an_empty_dataset_cannot_be_snapshotted() {
    let env = env();
    env.upload("datasets/e/train/3/bad.png", b"", "01").await;
    let result = snapshot::create(env.stack.table.as_ref(), env.stack.objects.as_ref(), "store", "e", "now".into()).await;
    assert!(matches!(result, Err(SnapshotError::Empty(_))), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("cvops upload"));
}
