//! Detection datasets through ingest: label files and class names beside the images, in any
//! order, redelivered, and every annotation fault refused with its code and kept in quarantine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cvops_core::annotation::{AnnotationCode, LabelQuarantineSidecar, LabelStatus};
use cvops_core::catalog::{class_names, images, label_records, quarantine_sidecar_key};
use cvops_core::config::Vars;
use cvops_core::health::DetectionHealth;
use cvops_core::key::DatasetName;
use cvops_core::ports::{ObjectStore, ObjectStoreExt};
use cvops_ingest::{Ingest, Outcome};
use cvops_platform::upload::{upload_dir, DatasetFormat};
use cvops_platform::{LocalPlatform, STORE_BUCKET};
use cvops_tests::events::{s3_event, S3_DELETE, S3_PUT};
use cvops_tests::platform::{TempPlatform, RAW, STORE};

fn samplesets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets")
}

fn platform() -> (tempfile::TempDir, LocalPlatform) {
    let dir = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(dir.path(), Vars::from_pairs(&[])).unwrap();
    (dir, platform)
}

#[tokio::test]
async fn every_annotation_fault_gets_its_code_and_is_kept_in_quarantine() {
    let (_dir, platform) = platform();
    let dataset = DatasetName::parse("faults").unwrap();
    let folder = samplesets().join("bad/annotations");
    assert_eq!(DatasetFormat::detect(&folder), DatasetFormat::Yolo);
    let summary = upload_dir(&platform, &dataset, &folder, &mut ()).await.unwrap();
    assert_eq!((summary.failed, summary.classes, summary.accepted), (0, Some(10), 8), "{summary:?}");

    let table = platform.table.as_ref();
    let labels = label_records(table, "faults").await.unwrap();
    let by_stem: BTreeMap<&str, _> = labels.iter().map(|l| (l.stem.as_str(), l)).collect();
    let tsv = std::fs::read_to_string(folder.join("expected.tsv")).unwrap();
    let mut codes_seen = std::collections::BTreeSet::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (stem, kept, codes) = (cols[0], cols[1].parse::<usize>().unwrap(), cols[2]);
        let expected: Vec<&str> = if codes == "-" { vec![] } else { codes.split(',').collect() };
        codes_seen.extend(expected.iter().map(|c| c.to_string()));
        if expected == ["label_without_image"] {
            continue; // a state of the join, checked through health below
        }
        let Some(record) = by_stem.get(stem) else {
            assert!(kept == 0 && expected.is_empty(), "{stem} has no label file but expects {codes}");
            continue;
        };
        if expected == ["malformed_label_file"] {
            assert_eq!((record.status, record.reason), (LabelStatus::Rejected, Some(AnnotationCode::MalformedLabelFile)));
            assert!(!platform.objects.exists(RAW, &record.key).await.unwrap(), "a refused file leaves the raw bucket");
        } else {
            assert_eq!(record.status, LabelStatus::Accepted, "{stem}");
            assert_eq!(record.boxes.len(), kept, "{stem}");
            let got: Vec<&str> = record.refused.iter().map(|r| r.reason.as_str()).collect();
            assert_eq!(got, expected, "{stem}");
        }
        // Nothing is lost: the refused file or lines are in quarantine with their reasons.
        if !expected.is_empty() {
            let quarantined = record.quarantine_key.as_deref().unwrap_or_else(|| panic!("{stem} is not in quarantine"));
            assert!(platform.objects.exists(STORE_BUCKET, quarantined).await.unwrap());
            let sidecar = platform.objects.get(STORE_BUCKET, &quarantine_sidecar_key(quarantined), 1 << 20).await.unwrap();
            let sidecar: LabelQuarantineSidecar = serde_json::from_slice(&sidecar).unwrap();
            let mut got: Vec<&str> = sidecar.refused.iter().map(|r| r.reason.as_str()).collect();
            got.extend(sidecar.reason.map(|r| r.as_str()));
            assert_eq!(got, expected, "{stem}: the sidecar lists every refusal");
            assert!(sidecar.refused.iter().all(|r| r.line > 0 && !r.message.is_empty()), "{sidecar:?}");
        }
    }
    for code in AnnotationCode::ALL {
        assert!(codes_seen.contains(code.as_str()), "the bad-annotation set has no case for {code}");
    }

    let health = DetectionHealth::of(
        "faults",
        &images(table, "faults").await.unwrap(),
        &labels,
        class_names(table, "faults").await.unwrap().as_ref(),
    );
    assert_eq!((health.images, health.boxes), (8, 3));
    // background, empty_file, empty_box, outside and not_text keep no box.
    assert_eq!(health.background_images, 5);
    let refused: BTreeMap<&str, usize> = health.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let expected = BTreeMap::from([
        ("box_outside_image", 2),
        ("empty_box", 2),
        ("label_without_image", 1),
        ("malformed_annotation", 3),
        ("malformed_label_file", 1),
        ("unknown_class", 1),
    ]);
    assert_eq!(refused, expected);
}

/// A detection dataset's three kinds of objects, fed to ingest in a chosen order.
struct Objects {
    stack: TempPlatform,
    ingest: Ingest,
}

const NAMES_KEY: &str = "datasets/shelf/data.yaml";
const IMAGE_KEY: &str = "datasets/shelf/images/valid/a.jpg";
const LABELS_KEY: &str = "datasets/shelf/labels/valid/a.txt";

impl Objects {
    fn new() -> Self {
        let stack = TempPlatform::new();
        let ingest = stack.ingest.clone();
        Self { stack, ingest }
    }

    async fn put(&self, key: &str, data: Bytes, sequencer: &str) -> Outcome {
        self.stack.objects.put(RAW, key, data).await.unwrap();
        self.deliver(S3_PUT, key, sequencer).await
    }

    async fn deliver(&self, template: &[u8], key: &str, sequencer: &str) -> Outcome {
        let encoded = cvops_core::key::encode_event_key(key);
        let mut outcomes = self.ingest.handle(&s3_event(template, RAW, &encoded, sequencer, None)).await.unwrap();
        outcomes.remove(0)
    }

    async fn health(&self) -> DetectionHealth {
        let table = self.stack.table.as_ref();
        DetectionHealth::of(
            "shelf",
            &images(table, "shelf").await.unwrap(),
            &label_records(table, "shelf").await.unwrap(),
            class_names(table, "shelf").await.unwrap().as_ref(),
        )
    }
}

fn image_bytes() -> Bytes {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    Bytes::from(out.into_inner())
}

const NAMES: &[u8] = b"names: [cereal, soap]\n";
/// One good box, one unknown class (index 2 of two names), one malformed line.
const LABELS: &[u8] = b"0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.1\n0 0.5\n";

#[tokio::test]
async fn labels_images_and_class_names_give_one_result_in_any_order() {
    let orders: [[&str; 3]; 6] = [
        [NAMES_KEY, IMAGE_KEY, LABELS_KEY],
        [NAMES_KEY, LABELS_KEY, IMAGE_KEY],
        [IMAGE_KEY, NAMES_KEY, LABELS_KEY],
        [IMAGE_KEY, LABELS_KEY, NAMES_KEY],
        [LABELS_KEY, NAMES_KEY, IMAGE_KEY],
        [LABELS_KEY, IMAGE_KEY, NAMES_KEY],
    ];
    let mut results = Vec::new();
    for order in orders {
        let objects = Objects::new();
        for (i, key) in order.iter().enumerate() {
            let data = match *key {
                NAMES_KEY => Bytes::from_static(NAMES),
                IMAGE_KEY => image_bytes(),
                _ => Bytes::from_static(LABELS),
            };
            objects.put(key, data, &format!("0A{i}")).await;
        }
        let health = objects.health().await;
        assert_eq!((health.images, health.boxes, health.awaiting_class_names), (1, 1, 0), "{order:?}: {health:?}");
        assert_eq!(health.classes["cereal"].boxes, 1, "{order:?}");
        let refused: Vec<(String, usize)> = health.rejected.clone().into_iter().collect();
        assert_eq!(refused, vec![("malformed_annotation".into(), 1), ("unknown_class".into(), 1)], "{order:?}");
        let labels = label_records(objects.stack.table.as_ref(), "shelf").await.unwrap();
        let sidecar_key = quarantine_sidecar_key(labels[0].quarantine_key.as_deref().expect("quarantined"));
        let sidecar: LabelQuarantineSidecar =
            serde_json::from_slice(&objects.stack.objects.get(STORE, &sidecar_key, 1 << 20).await.unwrap()).unwrap();
        assert_eq!(sidecar.refused.len(), 2, "{order:?}: both refusals are in quarantine: {sidecar:?}");
        results.push(serde_json::to_value(&health).unwrap());
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "every order gives the same health");
}

#[tokio::test]
async fn a_redelivered_or_stale_label_event_changes_nothing() {
    let objects = Objects::new();
    objects.put(NAMES_KEY, Bytes::from_static(NAMES), "01").await;
    objects.put(IMAGE_KEY, image_bytes(), "02").await;
    let first = objects.put(LABELS_KEY, Bytes::from_static(b"1 0.5 0.5 0.2 0.2\n"), "0B").await;
    assert!(matches!(&first, Outcome::Labeled { boxes: 1, classes_checked: true, .. }), "{first:?}");
    let before = objects.health().await;
    let again = objects.deliver(S3_PUT, LABELS_KEY, "0B").await;
    assert!(matches!(again, Outcome::Ignored { .. }), "{again:?}");
    let stale = objects.deliver(S3_PUT, LABELS_KEY, "0A").await;
    assert!(matches!(stale, Outcome::Ignored { .. }), "{stale:?}");
    assert_eq!(objects.health().await, before);

    // A newer upload of the file replaces its boxes; its removal takes them away.
    objects.put(LABELS_KEY, Bytes::from_static(b"0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n"), "0C").await;
    assert_eq!(objects.health().await.boxes, 2);
    let removed = objects.deliver(S3_DELETE, LABELS_KEY, "0D").await;
    assert_eq!(removed, Outcome::Deleted { key: LABELS_KEY.into() });
    let health = objects.health().await;
    assert_eq!((health.boxes, health.background_images), (0, 1));
    let late = objects.deliver(S3_PUT, LABELS_KEY, "0C").await;
    assert!(matches!(late, Outcome::Ignored { .. }), "a late create cannot bring the file back: {late:?}");
}

#[tokio::test]
async fn a_bad_data_yaml_is_quarantined_and_the_labels_wait_for_a_good_one() {
    let objects = Objects::new();
    objects.put(LABELS_KEY, Bytes::from_static(b"1 0.5 0.5 0.2 0.2\n"), "01").await;
    let bad = objects.put(NAMES_KEY, Bytes::from_static(b"names: {0: a, 2: b}\n"), "02").await;
    let Outcome::LabelsRejected { reason, quarantine_key, .. } = bad else { panic!("{bad:?}") };
    assert_eq!(reason, AnnotationCode::MalformedLabelFile);
    assert!(objects.stack.objects.exists(STORE, &quarantine_key).await.unwrap());
    assert_eq!(objects.health().await.awaiting_class_names, 1);
    let good = objects.put(NAMES_KEY, Bytes::from_static(b"names: [a, b]\n"), "03").await;
    assert!(matches!(good, Outcome::ClassNames { classes: 2, checked: 1, .. }), "{good:?}");
    assert_eq!(objects.health().await.awaiting_class_names, 0);
    // A bad data.yaml after a good one keeps the names, and checks nothing again.
    let before = label_records(objects.stack.table.as_ref(), "shelf").await.unwrap();
    let bad = objects.put(NAMES_KEY, Bytes::from_static(b"names: oops\n"), "04").await;
    assert!(matches!(bad, Outcome::LabelsRejected { .. }), "{bad:?}");
    assert_eq!(label_records(objects.stack.table.as_ref(), "shelf").await.unwrap(), before);
    assert_eq!(objects.health().await.class_names, vec!["a", "b"]);
}

#[tokio::test]
async fn new_class_names_take_back_a_box_refused_as_unknown() {
    let objects = Objects::new();
    objects.put(NAMES_KEY, Bytes::from_static(b"names: [a, b]\n"), "01").await;
    objects.put(IMAGE_KEY, image_bytes(), "02").await;
    objects.put(LABELS_KEY, Bytes::from_static(b"0 0.5 0.5 0.2 0.2\n3 0.2 0.2 0.1 0.1\n"), "03").await;
    let before = objects.health().await;
    assert_eq!((before.boxes, before.rejected.get("unknown_class").copied()), (1, Some(1)));
    let first_quarantine = label_records(objects.stack.table.as_ref(), "shelf").await.unwrap()[0].quarantine_key.clone().unwrap();

    let renamed = objects.put(NAMES_KEY, Bytes::from_static(b"names: [a, b, c, d]\n"), "04").await;
    assert!(matches!(renamed, Outcome::ClassNames { classes: 4, checked: 1, .. }), "{renamed:?}");
    let after = objects.health().await;
    assert_eq!((after.boxes, after.rejected.get("unknown_class")), (2, None), "{after:?}");
    assert_eq!(after.classes["d"].boxes, 1);
    // The first quarantine copy stays; the old names again refuse the box, in a copy of its own.
    assert!(objects.stack.objects.exists(STORE, &first_quarantine).await.unwrap());
    objects.put(NAMES_KEY, Bytes::from_static(b"names: [a, b]\n"), "05").await;
    let labels = label_records(objects.stack.table.as_ref(), "shelf").await.unwrap();
    let again = labels[0].quarantine_key.clone().unwrap();
    assert_ne!(again, first_quarantine);
    assert!(
        objects.stack.objects.exists(STORE, &again).await.unwrap()
            && objects.stack.objects.exists(STORE, &first_quarantine).await.unwrap()
    );
    assert_eq!(objects.health().await.rejected.get("unknown_class").copied(), Some(1));
}
