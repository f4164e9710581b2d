//! A real Ultralytics export (`samplesets/yolov8n`, made by its `make.py`: a YOLOv8n built from
//! `yolov8n.yaml` with random weights, exported to ONNX): cvops' decoding, NMS and mapping back
//! give Ultralytics' own boxes from the same raw output; imported as a detector on
//! `detect-digits` it is verified, evaluated (COCO mAP) and gated; the endpoint serves
//! Ultralytics' boxes for the same image; a boxes/scores/labels graph exported by torch gives
//! torchvision's NMS's boxes; and detectors that cannot be right are refused with their codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cvops_core::key::DatasetName;
use cvops_core::preprocess::{preprocess_placed, InputSpec, ResizeMode};
use cvops_core::registry::VersionStatus;
use cvops_core::task::DetectionSettings;
use cvops_core::task::{Metric, OutputLayout, Task};
use cvops_infer::{InferConfig, Models};
use cvops_inference::detect::decode_yolo;
use cvops_inference::detector::{layout_of, Candidates, Detected, LoadedDetector};
use cvops_monitor::{Monitor, MonitorConfig};
use cvops_platform::import::{import_model, ImportRequest};
use cvops_platform::upload::{upload_dir_as, DatasetFormat};
use cvops_platform::{MODELS_BUCKET, STORE_BUCKET};
use cvops_register_model::Outcome;
use cvops_tests::platform::TempPlatform;
use serde_json::Value;
use tower::ServiceExt;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/yolov8n")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join("reference.json")).unwrap()).unwrap()
}

/// Ultralytics' input: 3x96x96, letterboxed, scaled to 0..1.
fn input() -> InputSpec {
    InputSpec {
        name: String::new(),
        width: 96,
        height: 96,
        channels: 3,
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        resize: ResizeMode::Letterbox,
    }
}

/// A case's boxes (Ultralytics' or torchvision's) as (x1, y1, x2, y2, score, class), best first.
fn reference_boxes(case: &Value) -> Vec<[f64; 6]> {
    case["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let v: Vec<f64> = b.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            [v[0], v[1], v[2], v[3], v[4], v[5]]
        })
        .collect()
}

/// A detected box as (x1, y1, x2, y2, score, class), as Ultralytics and torchvision write them.
fn corners(d: &Detected) -> [f64; 6] {
    let b = d.bbox;
    [b.x, b.y, b.x + b.width, b.y + b.height, f64::from(d.score), f64::from(d.class)]
}

/// Same boxes in the same order: classes equal, scores and corners within the tolerances.
fn assert_same_boxes(ours: &[[f64; 6]], theirs: &[[f64; 6]], pixels: f64, score: f64, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {} boxes, Ultralytics {}", ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a[5], b[5], "{what}: box {i}'s class: {a:?} against {b:?}");
        assert!((a[4] - b[4]).abs() <= score, "{what}: box {i}'s score: {a:?} against {b:?}");
        for k in 0..4 {
            assert!((a[k] - b[k]).abs() <= pixels, "{what}: box {i}: {a:?} against {b:?}");
        }
    }
}

#[test]
fn ultralytics_postprocessing_is_reproduced_from_the_same_raw_output() {
    let reference = reference();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap().trim_end_matches(".png");
        let bytes = std::fs::read(fixture().join(format!("{name}.output.f32"))).unwrap();
        let raw: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let shape: Vec<usize> = case["output_shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        // Where an image of this size lands in the input: the letterbox's scale and padding.
        let (_, placement) = preprocess_placed(&image::DynamicImage::new_rgb8(w, h), &input());
        // The endpoint's own path from candidates on: threshold, NMS, mapping back, clipping.
        let candidates = Candidates::new(decode_yolo(&raw, &shape, 10, 0.25).unwrap(), placement, w, h);
        let ours: Vec<[f64; 6]> = candidates.finish(&DetectionSettings::default()).iter().map(corners).collect();
        assert!(ours.len() > 20, "{name}: the fixture must give NMS work: {} boxes", ours.len());
        assert_same_boxes(&ours, &reference_boxes(case), 1e-3, 1e-6, name);
    }
}

#[test]
fn a_boxes_scores_labels_graph_gives_torchvisions_boxes() {
    let reference = reference();
    let bsl = &reference["boxes_scores_labels"];
    let model = std::fs::read(fixture().join(bsl["model"].as_str().unwrap())).unwrap();
    assert_eq!(layout_of(&model), Ok(OutputLayout::BoxesScoresLabels), "three outputs: boxes, scores, labels");
    let yolo = std::fs::read(fixture().join("yolov8n-digits.onnx")).unwrap();
    assert_eq!(layout_of(&yolo), Ok(OutputLayout::Yolo));
    let detector = LoadedDetector::load(&model, &input(), 10, OutputLayout::BoxesScoresLabels).unwrap();
    for case in bsl["cases"].as_array().unwrap() {
        let image = image::open(fixture().join(case["image"].as_str().unwrap())).unwrap();
        let ours: Vec<[f64; 6]> = detector.detect(&image, &DetectionSettings::default()).unwrap().iter().map(corners).collect();
        assert!(ours.len() > 10, "{} boxes", ours.len());
        assert_same_boxes(&ours, &reference_boxes(case), 1e-2, 1e-4, "boxes/scores/labels");
    }
    // Read as the other layout, its outputs do not fit: refused at load, not at the first request.
    let wrong = LoadedDetector::load(&model, &input(), 10, OutputLayout::Yolo).unwrap_err();
    assert_eq!(wrong.code(), "shape_mismatch", "{wrong}");
}

fn detect_request(labels: usize) -> ImportRequest {
    ImportRequest {
        model: "yolo".into(),
        dataset: "digits-det".into(),
        labels: (0..labels).map(|d| d.to_string()).collect(),
        input: input(),
        task: Task::Detection,
        output_layout: None,
    }
}

fn rejection(outcome: Outcome) -> String {
    match outcome {
        Outcome::Rejected { version } => version.reason_code.clone().unwrap(),
        other => panic!("not rejected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_yolov8n_is_evaluated_gated_and_serves_ultralytics_boxes() {
    let stack = TempPlatform::new();
    let dataset = DatasetName::parse("digits-det").unwrap();
    let detect_digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits");
    upload_dir_as(&stack, &dataset, &detect_digits, DatasetFormat::Yolo, &mut ()).await.unwrap();
    let model = fixture().join("yolov8n-digits.onnx");

    let Outcome::Registered { version, promoted } = import_model(&stack, &detect_request(10), &model).await.unwrap() else {
        panic!("not registered")
    };
    assert_eq!((version.task, version.output_layout), (Task::Detection, OutputLayout::Yolo));
    let evaluation = version.detection.as_ref().expect("a detector's evaluation");
    assert_eq!(evaluation.images, 80, "{evaluation:?}");
    assert!((0.0..=1.0).contains(&evaluation.map50) && evaluation.map <= evaluation.map50, "{evaluation:?}");
    let served = evaluation.served.expect("precision and recall at the served threshold");
    assert_eq!(served.score_threshold, f64::from(0.25f32));
    // Random weights find no digit: the gate holds it back on mAP@0.5, and says so.
    let gate = version.gate.as_ref().unwrap();
    assert!(!promoted && gate.metric == Metric::Map50 && gate.code.as_deref() == Some("below_floor"), "{gate:?}");

    // Served by the endpoint, pinned: Ultralytics' boxes for the same image.
    let models = Arc::new(Models::new(&stack.ports, MODELS_BUCKET.into(), Duration::from_secs(60)));
    let feed = Arc::new(cvops_infer::Feed::new(&stack.ports, None, 1));
    let app = cvops_infer::router(models, InferConfig::new(MODELS_BUCKET), Some(feed.clone()));
    let png = std::fs::read(fixture().join("digits.png")).unwrap();
    let request = Request::post("/v1/models/yolo/predict?version=1").header("content-type", "image/png").body(Body::from(png));
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!((answer["model"].as_str(), answer["version"].as_u64()), (Some("yolo"), Some(1)));
    let ours: Vec<[f64; 6]> = answer["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b = &d["box"];
            let (x, y, w, h) =
                (b["x"].as_f64().unwrap(), b["y"].as_f64().unwrap(), b["width"].as_f64().unwrap(), b["height"].as_f64().unwrap());
            [x, y, x + w, y + h, d["score"].as_f64().unwrap(), d["label"].as_str().unwrap().parse().unwrap()]
        })
        .collect();
    // tract and onnxruntime run the same graph to about 1e-5: boxes agree to a hundredth of a pixel.
    assert_same_boxes(&ours, &reference_boxes(&reference()["cases"][0]), 1e-2, 1e-4, "endpoint");
    // A request's own thresholds: fewer boxes at a higher score.
    let request = Request::post("/v1/models/yolo/predict?version=1&score_threshold=0.9&max_detections=3")
        .header("content-type", "image/png")
        .body(Body::from(std::fs::read(fixture().join("digits.png")).unwrap()));
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    let answer: Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
    let detections = answer["detections"].as_array().unwrap();
    assert!(!detections.is_empty() && detections.len() <= 3 && detections.iter().all(|d| d["score"].as_f64().unwrap() >= 0.9));
    let request = Request::post("/v1/models/yolo/predict?version=1&iou_threshold=2")
        .header("content-type", "image/png")
        .body(Body::empty());
    assert_eq!(app.clone().oneshot(request.unwrap()).await.unwrap().status(), StatusCode::BAD_REQUEST);

    // Every answer fed the version's hourly boxes, at the version's own thresholds whatever the
    // request asked for; the monitor judges them against the snapshot's box baseline (two
    // answers are too few to judge, but all are measured).
    let served_boxes = 2 * ours.len() as u64;
    feed.flush().await.unwrap();
    let monitor = Monitor::new(&stack.ports, MonitorConfig::new(STORE_BUCKET, "training"));
    let reports = monitor.run(Some("yolo")).await.unwrap();
    let assessment = &reports[0].versions.iter().find(|v| v.model_version == 1).unwrap().assessment;
    let window = |name: &str| assessment.features.iter().find(|f| f.feature == name).unwrap().window.total();
    assert_eq!((window("boxes_per_image"), window("box_size"), window("box_aspect")), (2, served_boxes, served_boxes));
    assert_eq!(assessment.prediction.predicted.values().sum::<u64>(), served_boxes, "served boxes per class");
    assert_eq!(assessment.confidence.histogram.total(), served_boxes, "each served box's score");
    assert_eq!(assessment.status, cvops_core::drift::Status::InsufficientData);

    // Detectors that cannot be right (the wrong class count or layout, no signature, an operator
    // no runtime knows, another dataset's classes or task), each with its code; none reaches
    // production.
    assert_eq!(rejection(import_model(&stack, &detect_request(9), &model).await.unwrap()), "shape_mismatch");
    let three_outputs = ImportRequest { output_layout: Some(OutputLayout::BoxesScoresLabels), ..detect_request(10) };
    assert_eq!(rejection(import_model(&stack, &three_outputs, &model).await.unwrap()), "shape_mismatch");
    let no_signature = ImportRequest { output_layout: Some(OutputLayout::Logits), ..detect_request(10) };
    assert_eq!(rejection(import_model(&stack, &no_signature, &model).await.unwrap()), "missing_signature");
    let unknown_op = fixture().join("unknown-op.onnx");
    assert_eq!(rejection(import_model(&stack, &detect_request(10), &unknown_op).await.unwrap()), "unloadable_model");
    let cats = ImportRequest { labels: (0..10).map(|d| format!("cat{d}")).collect(), ..detect_request(10) };
    assert_eq!(rejection(import_model(&stack, &cats, &model).await.unwrap()), "labels_mismatch");
    stack.upload_digits("digits", [("train", 2), ("val", 1), ("test", 3)]).await;
    let on_classes = ImportRequest { dataset: "digits".into(), ..detect_request(10) };
    assert_eq!(rejection(import_model(&stack, &on_classes, &model).await.unwrap()), "task_mismatch");
    let versions = cvops_core::registry::versions(stack.table.as_ref(), "yolo").await.unwrap();
    assert!(versions.iter().skip(1).all(|v| v.status == VersionStatus::Rejected), "{versions:?}");
    assert!(cvops_core::registry::production(stack.table.as_ref(), "yolo").await.unwrap().is_none());
}
