//! One detection dataset, uploaded as YOLO, COCO and Pascal VOC: the same bucket layout, the
//! same boxes, the same snapshot id; and a snapshot that carries the boxes and their baseline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cvops_core::config::Vars;
use cvops_core::key::DatasetName;
use cvops_core::snapshot::{self, Snapshot};
use cvops_platform::export::{export, ExportFormat, MANIFEST_FILE};
use cvops_platform::upload::{upload_dir_as, DatasetFormat, UploadSummary};
use cvops_platform::{LocalPlatform, RAW_BUCKET, STORE_BUCKET};

fn detect_digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits")
}

/// Uploads `dir` as `format` into a fresh platform's `digits-det` and snapshots it.
async fn snapshot_of(dir: &Path, format: DatasetFormat) -> (UploadSummary, Snapshot, LocalPlatform, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(data.path(), Vars::from_pairs(&[])).unwrap();
    let dataset = DatasetName::parse("digits-det").unwrap();
    let summary = upload_dir_as(&platform, &dataset, dir, format, &mut ()).await.unwrap();
    let snap = snapshot::create(platform.table.as_ref(), platform.objects.as_ref(), STORE_BUCKET, "digits-det", "now".into())
        .await
        .unwrap();
    (summary, snap, platform, data)
}

/// The YOLO lines of the sample set: (boxes, boxes per class index).
fn yolo_boxes() -> (u64, BTreeMap<u32, u64>) {
    let mut per_class = BTreeMap::new();
    let mut total = 0;
    for split in ["train", "val", "test"] {
        for entry in std::fs::read_dir(detect_digits().join("labels").join(split)).unwrap() {
            for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines().filter(|l| !l.trim().is_empty()) {
                *per_class.entry(line.split(' ').next().unwrap().parse().unwrap()).or_default() += 1;
                total += 1;
            }
        }
    }
    (total, per_class)
}

/// Writes the sample set as Pascal VOC (from its COCO files; integer corners, 1-based, as VOC
/// writes them) under `out`.
fn write_voc(out: &Path) {
    std::fs::create_dir_all(out.join("Annotations")).unwrap();
    std::fs::create_dir_all(out.join("JPEGImages")).unwrap();
    std::fs::create_dir_all(out.join("ImageSets/Main")).unwrap();
    for split in ["train", "val", "test"] {
        let coco: serde_json::Value =
            serde_json::from_slice(&std::fs::read(detect_digits().join(format!("annotations/instances_{split}.json"))).unwrap())
                .unwrap();
        let mut ids = Vec::new();
        for image in coco["images"].as_array().unwrap() {
            let file = image["file_name"].as_str().unwrap();
            let id = file.trim_end_matches(".jpg");
            ids.push(id.to_owned());
            std::fs::copy(detect_digits().join("images").join(split).join(file), out.join("JPEGImages").join(file)).unwrap();
            let mut xml = format!(
                "<annotation><filename>{file}</filename><size><width>{}</width><height>{}</height><depth>3</depth></size>",
                image["width"], image["height"]
            );
            for a in coco["annotations"].as_array().unwrap().iter().filter(|a| a["image_id"] == image["id"]) {
                let b: Vec<i64> = a["bbox"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                let name = a["category_id"].as_i64().unwrap() - 1;
                xml.push_str(&format!(
                    "<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                    b[0] + 1, b[1] + 1, b[0] + 1 + b[2], b[1] + 1 + b[3]
                ));
            }
            xml.push_str("</annotation>");
            std::fs::write(out.join("Annotations").join(format!("{id}.xml")), xml).unwrap();
        }
        std::fs::write(out.join("ImageSets/Main").join(format!("{split}.txt")), ids.join("\n")).unwrap();
    }
}

#[tokio::test]
async fn yolo_coco_and_voc_uploads_of_the_same_boxes_give_one_snapshot() {
    let dir = detect_digits();
    assert_eq!(DatasetFormat::detect(&dir), DatasetFormat::Yolo, "data.yaml wins over the COCO files beside it");
    let (total, per_class) = yolo_boxes();

    let (summary, yolo, platform, _data) = snapshot_of(&dir, DatasetFormat::Yolo).await;
    assert_eq!((summary.accepted, summary.boxes as u64, summary.failed), (800, total, 0), "{summary:?}");
    assert!(summary.refused_annotations.is_empty(), "{summary:?}");
    assert!(yolo.is_detection());
    assert_eq!(yolo.samples, 800);
    assert_eq!(yolo.labels, (0..10).map(|d| d.to_string()).collect::<Vec<_>>(), "class names in index order");
    let baseline = yolo.boxes.as_ref().unwrap();
    let expected: Vec<u64> = (0..10).map(|c| per_class.get(&c).copied().unwrap_or(0)).collect();
    assert_eq!(baseline.classes, expected);
    assert_eq!(baseline.boxes_per_image.total(), 800);
    assert_eq!((yolo.samples_in(cvops_core::key::Split::Train), yolo.samples_in(cvops_core::key::Split::Test)), (640, 80));
    let mut lines = Vec::new();
    snapshot::for_each_line(platform.objects.as_ref(), STORE_BUCKET, &yolo, |line| lines.push(line)).await.unwrap();
    assert_eq!(lines.iter().map(|l| l.boxes.as_ref().unwrap().len() as u64).sum::<u64>(), total);
    assert!(lines.iter().all(|l| l.label.is_empty() && l.key.starts_with("datasets/digits-det/images/")));

    let (summary, coco, ..) = snapshot_of(&dir, DatasetFormat::Coco).await;
    assert_eq!((summary.accepted, summary.boxes as u64), (800, total), "{summary:?}");
    assert_eq!(coco.id, yolo.id, "COCO gives the YOLO snapshot");

    let voc_dir = tempfile::tempdir().unwrap();
    write_voc(voc_dir.path());
    assert_eq!(DatasetFormat::detect(voc_dir.path()), DatasetFormat::Voc);
    let (summary, voc, ..) = snapshot_of(voc_dir.path(), DatasetFormat::Voc).await;
    assert_eq!((summary.accepted, summary.boxes as u64), (800, total), "{summary:?}");
    assert_eq!(voc.id, yolo.id, "VOC gives the YOLO snapshot");
}

#[tokio::test]
async fn coco_faults_reach_ingest_as_refusals_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train");
    std::fs::create_dir_all(&train).unwrap();
    for (i, name) in ["a.jpg", "b.jpg"].iter().enumerate() {
        let source = detect_digits().join(format!("images/train/train_000{i}.jpg"));
        std::fs::copy(source, train.join(name)).unwrap();
    }
    // Roboflow's export: a placeholder category 0 that is every class's supercategory.
    let coco = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 96, "height": 96},
            {"id": 2, "file_name": "b.jpg", "width": 96, "height": 96},
            {"id": 3, "file_name": "missing.jpg", "width": 96, "height": 96}
        ],
        "categories": [
            {"id": 0, "name": "digits", "supercategory": "none"},
            {"id": 1, "name": "one", "supercategory": "digits"},
            {"id": 2, "name": "two", "supercategory": "digits"}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [10, 10, 0, 20]},
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": [90, 10, 20, 20]},
            {"id": 5, "image_id": 1, "category_id": 2, "bbox": [10, "x", 20]},
            {"id": 6, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 7, "image_id": 44, "category_id": 1, "bbox": [1, 1, 5, 5]}
        ]
    });
    std::fs::write(train.join("_annotations.coco.json"), coco.to_string()).unwrap();
    assert_eq!(DatasetFormat::detect(dir.path()), DatasetFormat::Coco);
    let data = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(data.path(), Vars::from_pairs(&[])).unwrap();
    let dataset = DatasetName::parse("faults").unwrap();
    let summary = upload_dir_as(&platform, &dataset, dir.path(), DatasetFormat::Coco, &mut ()).await.unwrap();
    // a.jpg keeps one box; missing.jpg's label file, with no image, holds the other.
    assert_eq!((summary.accepted, summary.classes, summary.boxes), (2, Some(2), 2), "{summary:?}");
    let refused: Vec<(&str, usize)> = summary.refused_annotations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(refused, vec![("malformed_annotation", 2), ("empty_box", 1), ("box_outside_image", 1), ("unknown_class", 1)]);
    let table = platform.table.as_ref();
    let health = cvops_core::health::DetectionHealth::of(
        "faults",
        &cvops_core::catalog::images(table, "faults").await.unwrap(),
        &cvops_core::catalog::label_records(table, "faults").await.unwrap(),
        cvops_core::catalog::class_names(table, "faults").await.unwrap().as_ref(),
    );
    assert_eq!(health.class_names, vec!["one", "two"], "the placeholder category is no class");
    assert_eq!(health.rejected["label_without_image"], 2, "missing.jpg's and image 44's boxes");
    assert_eq!((health.images, health.background_images), (2, 1));
}

/// Exports `snap` of `platform` as `format`, uploads the export into a fresh platform's dataset
/// of the same name, and returns the new snapshot's id and the export's folder.
async fn export_and_reimport(
    platform: &LocalPlatform,
    snap: &Snapshot,
    format: ExportFormat,
    upload_as: DatasetFormat,
) -> (String, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let (table, objects) = (platform.table.as_ref(), platform.objects.as_ref());
    let summary = export(table, objects, RAW_BUCKET, STORE_BUCKET, &snap.id, format, out.path()).await.unwrap();
    assert_eq!(summary.images, snap.samples, "{format:?}");
    let source = match format {
        ExportFormat::Jsonl => out.path().join(MANIFEST_FILE),
        _ => out.path().to_owned(),
    };
    assert_eq!(DatasetFormat::detect(&source), upload_as, "{format:?}: the export is found to be what it is");
    let data = tempfile::tempdir().unwrap();
    let again = LocalPlatform::open_with(data.path(), Vars::from_pairs(&[])).unwrap();
    let dataset = DatasetName::parse(&snap.dataset).unwrap();
    let summary = upload_dir_as(&again, &dataset, &source, upload_as, &mut ()).await.unwrap();
    assert_eq!((summary.failed, summary.rejected_total()), (0, 0), "{format:?}: {summary:?}");
    let id = snapshot::create(again.table.as_ref(), again.objects.as_ref(), STORE_BUCKET, &snap.dataset, "later".into())
        .await
        .unwrap()
        .id;
    (id, out)
}

#[tokio::test]
async fn a_detection_export_uploaded_again_gives_the_same_snapshot_in_every_format() {
    let (total, _) = yolo_boxes();
    let (_, snap, platform, _data) = snapshot_of(&detect_digits(), DatasetFormat::Yolo).await;
    for (format, upload_as) in [
        (ExportFormat::Yolo, DatasetFormat::Yolo),
        (ExportFormat::Coco, DatasetFormat::Coco),
        (ExportFormat::Jsonl, DatasetFormat::Manifest),
    ] {
        let (id, out) = export_and_reimport(&platform, &snap, format, upload_as).await;
        assert_eq!(id, snap.id, "{format:?}");
        if format == ExportFormat::Coco {
            pycocotools_counts_the_boxes(out.path(), total);
        }
    }
    let refused = export(
        platform.table.as_ref(),
        platform.objects.as_ref(),
        RAW_BUCKET,
        STORE_BUCKET,
        &snap.id,
        ExportFormat::Imagefolder,
        tempfile::tempdir().unwrap().path(),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("yolo, coco or jsonl"), "{refused}");
}

/// pycocotools (PyPI) loads the COCO export and counts the boxes the snapshot has. Run by the
/// test script, which installs it and names its Python in CVOPS_TEST_PYCOCOTOOLS.
fn pycocotools_counts_the_boxes(export: &Path, boxes: u64) {
    let Ok(python) = std::env::var("CVOPS_TEST_PYCOCOTOOLS") else {
        eprintln!("skipped: pycocotools' check of the COCO export (set CVOPS_TEST_PYCOCOTOOLS to a Python with pycocotools)");
        return;
    };
    let script = "import glob, sys\nfrom pycocotools.coco import COCO\nn = 0\nimages = 0\nfor f in sorted(glob.glob(sys.argv[1] + '/annotations/instances_*.json')):\n    c = COCO(f)\n    n += len(c.getAnnIds())\n    images += len(c.getImgIds())\nprint(n, images)\n";
    let output = std::process::Command::new(python).args(["-c", script]).arg(export).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let counts: Vec<u64> = stdout.lines().last().unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts, vec![boxes, 800], "pycocotools' count of boxes and images");
}

#[tokio::test]
async fn a_classification_export_and_a_csv_manifest_give_the_folder_upload_snapshot() {
    // Two digits of each split, with split folders, and one label without (split by hash).
    let folder = tempfile::tempdir().unwrap();
    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits");
    let mut csv = String::from("path,label,split\n");
    for split in ["train", "val", "test"] {
        for digit in ["3", "8"] {
            for entry in std::fs::read_dir(digits.join(split).join(digit)).unwrap().take(4) {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                std::fs::create_dir_all(folder.path().join(split).join(digit)).unwrap();
                std::fs::copy(&path, folder.path().join(split).join(digit).join(&name)).unwrap();
                csv.push_str(&format!("{split}/{digit}/{name},{digit},{split}\n"));
            }
        }
    }
    for entry in std::fs::read_dir(digits.join("train/5")).unwrap().take(5) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        std::fs::create_dir_all(folder.path().join("5")).unwrap();
        std::fs::copy(&path, folder.path().join("5").join(&name)).unwrap();
        csv.push_str(&format!("\"5/{name}\",5\n"));
    }
    let (_, snap, platform, _data) = snapshot_of(folder.path(), DatasetFormat::Imagefolder).await;
    assert!(!snap.is_detection());

    let manifest = folder.path().join("images.csv");
    std::fs::write(&manifest, csv).unwrap();
    assert_eq!(DatasetFormat::detect(&manifest), DatasetFormat::Manifest);
    let (_, from_csv, ..) = snapshot_of(&manifest, DatasetFormat::Manifest).await;
    assert_eq!(from_csv.id, snap.id, "the CSV manifest gives the folder's snapshot");

    for (format, upload_as) in
        [(ExportFormat::Imagefolder, DatasetFormat::Imagefolder), (ExportFormat::Jsonl, DatasetFormat::Manifest)]
    {
        let (id, _) = export_and_reimport(&platform, &snap, format, upload_as).await;
        assert_eq!(id, snap.id, "{format:?}");
    }
}
