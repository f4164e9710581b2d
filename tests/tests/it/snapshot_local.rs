//! Dataset snapshots on the embedded adapters: what they hold, that they are content-addressed,
//! and that the manifest streams part by part.

use bytes::Bytes;
use cvops_core::key::Split;
use cvops_core::ports::{ObjectStore, ObjectStoreExt, Table};
use cvops_core::snapshot::{self, SnapshotError};
use cvops_ingest::Ingest;
use cvops_tests::events::{s3_event, S3_PUT};
use cvops_tests::platform::{TempPlatform, RAW};
use sha2::Digest;

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

/// The first `n` files of a digits folder.
fn digits(split: &str, label: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/../samplesets/digits/{split}/{label}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names.into_iter().take(n).map(|name| (name.clone(), std::fs::read(format!("{dir}/{name}")).unwrap())).collect()
}

#[tokio::test]
async fn a_dataset_of_train_and_test_folders_gets_val_carved_from_train_by_content_hash() {
    let env = env();
    let mut sequencer = 0;
    let mut carved = 0;
    // As public sets come: `train/` and `valid`-less, `test/`.
    for label in ["1", "7"] {
        for (name, bytes) in digits("train", label, 30) {
            sequencer += 1;
            env.upload(&format!("datasets/tt/train/{label}/{name}"), &bytes, &format!("{sequencer:04}")).await;
            carved += usize::from(snapshot::carved_into_val(&hex::encode(sha2::Sha256::digest(&bytes)), 0.1));
        }
        for (name, bytes) in digits("test", label, 3) {
            sequencer += 1;
            env.upload(&format!("datasets/tt/test/{label}/{name}"), &bytes, &format!("{sequencer:04}")).await;
        }
    }
    assert!(carved > 0, "60 train images give some val at 10%");
    let create = || snapshot::create(env.stack.table.as_ref(), env.stack.objects.as_ref(), "store", "tt", "now".into());
    let snap = create().await.unwrap();
    assert_eq!(snap.val_from_train, Some(0.1), "the descriptor records the carving");
    assert_eq!(
        (snap.samples_in(Split::Train), snap.samples_in(Split::Val), snap.samples_in(Split::Test)),
        (60 - carved as u64, carved as u64, 6)
    );
    assert_eq!(create().await.unwrap().id, snap.id, "carved the same way every time");

    // A `valid/` folder (Roboflow's name) is val: nothing is carved then.
    let (name, bytes) = digits("val", "7", 1).remove(0);
    env.upload(&format!("datasets/tt/valid/7/{name}"), &bytes, "9999").await;
    let with_val = create().await.unwrap();
    assert_eq!((with_val.val_from_train, with_val.samples_in(Split::Val), with_val.samples_in(Split::Train)), (None, 1, 60));
}
