//! `cvops demo` and the catalog commands, as a newcomer runs them.

use std::process::Command;

use super::common;

fn cvops(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(common::cvops_exe());
    command.arg("--data-dir").arg(data_dir);
    command
}

#[test]
fn the_demo_uploads_both_sample_sets_and_prints_the_health_summary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    // A short training run: the 97% check is the full demo's, measured for the README.
    let out = cvops(&data).args(["demo", "--epochs", "3", "--set", "width=8"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("uploaded 5000 files to digits: 5000 accepted"), "{text}");
    assert!(text.contains("1 exact duplicates aliased"), "{text}");
    for code in ["empty", "not_an_image", "unsupported_format", "truncated", "corrupt", "too_small", "too_large", "bad_key"] {
        assert!(text.contains(code), "the summary names {code}: {text}");
    }

    // It trained, registered and evaluated a model, and showed the progress of every epoch.
    assert!(text.contains("epoch   3/3"), "{text}");
    assert!(text.contains("digits v1: test accuracy"), "{text}");
    assert!(text.contains("predicted ->"), "the confusion matrix: {text}");
    // It served the model over HTTP and sent every test digit through it.
    assert!(text.contains("the val and test digits: 1000 requests, 1000 answered"), "{text}");
    assert!(text.contains("latency as the client sees it: p50"), "{text}");
    // The monitor judged the clean traffic, then flagged the inverted digits.
    assert!(text.contains("the inverted digits: 1000 requests"), "{text}");
    let after_shift = &text[text.find("the inverted digits").unwrap()..];
    assert!(after_shift.contains("digits: DRIFT"), "{after_shift}");
    assert!(after_shift.contains("brightness") && after_shift.contains("DRIFT"), "{after_shift}");
    // Last, the reference detector: trained on the boxes, evaluated by mAP, asked for boxes.
    let detector = &text[text.find("10. train the reference detector").expect("the detector's step")..];
    assert!(detector.contains("val mAP@0.5") && detector.contains("boxes v1: test mAP@0.5"), "{detector}");
    assert!(["test_0000.jpg: ", "test_0001.jpg: ", "test_0002.jpg: "].iter().all(|p| detector.contains(p)), "{detector}");

    // The monitor on demand, and its report as a page with charts.
    let monitor = cvops(&data).args(["monitor", "--model", "digits", "--json"]).output().unwrap();
    assert!(monitor.status.success(), "{}", String::from_utf8_lossy(&monitor.stderr));
    let report: serde_json::Value = serde_json::from_slice(&monitor.stdout).unwrap();
    assert_eq!(report["status"].as_str(), Some("drift"), "{report}");
    let out = dir.path().join("report");
    let written = cvops(&data).args(["report", "--out"]).arg(&out).output().unwrap();
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("DRIFT") && page.matches("<svg").count() >= 8, "a chart per feature, classes, confidence, latency");

    // The catalog commands read what the demo wrote.
    let datasets = cvops(&data).args(["datasets", "--json"]).output().unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&datasets.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let line = lines.iter().find(|l| l["dataset"] == "digits").expect("the digits dataset");
    assert_eq!(
        (line["dataset"].as_str(), line["accepted"].as_u64(), line["duplicates"].as_u64()),
        (Some("digits"), Some(5002), Some(1))
    );
    let rejected = cvops(&data).args(["images", "--dataset", "digits", "--status", "rejected", "--json"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&rejected.stdout).lines().count(), 17);
    let sevens = cvops(&data).args(["images", "--dataset", "digits", "--label", "7", "--status", "accepted"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&sevens.stdout).lines().count(), 500);

    // The detection dataset beside it: its health, its images with their boxes, an export.
    assert!(text.contains("dataset boxes (detection): 808 images"), "{text}");
    let health = cvops(&data).args(["health", "--dataset", "boxes", "--json"]).output().unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let labels = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits/labels");
    let lines: usize = ["train", "val", "test"]
        .iter()
        .flat_map(|split| std::fs::read_dir(labels.join(split)).unwrap())
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap().lines().count())
        .sum();
    assert_eq!((health["images"].as_u64(), health["boxes"].as_u64()), (Some(808), Some(lines as u64 + 3)), "{health}");
    assert_eq!(health["classes"].as_object().unwrap().len(), 10, "{health}");
    for code in
        ["malformed_annotation", "malformed_label_file", "empty_box", "box_outside_image", "unknown_class", "label_without_image"]
    {
        assert!(health["rejected"][code].as_u64().unwrap_or(0) > 0, "health counts {code}: {health}");
    }
    let images = cvops(&data).args(["images", "--dataset", "boxes", "--json"]).output().unwrap();
    let first: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&images.stdout).lines().next().unwrap()).unwrap();
    assert!(first["boxes"].is_array() && first["refused_annotations"].is_array(), "{first}");
    let snapshot = cvops(&data).args(["snapshot", "--dataset", "boxes", "--json"]).output().unwrap();
    let snapshot: serde_json::Value = serde_json::from_slice(&snapshot.stdout).unwrap();
    let exported = dir.path().join("boxes-coco");
    let out = cvops(&data)
        .args(["export", "--snapshot", snapshot["id"].as_str().unwrap(), "--format", "coco", "--json", "--out"])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["boxes"].as_u64()), (Some(808), Some(lines as u64 + 3)), "{summary}");
    assert!(exported.join("annotations/instances_train.json").is_file());

    // A snapshot of what the demo uploaded: the same set twice gives the same id.
    let snapshot = |data: &std::path::Path| {
        let out = cvops(data).args(["snapshot", "--dataset", "digits", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (first, second) = (snapshot(&data), snapshot(&data));
    assert_eq!(first["samples"].as_u64(), Some(5002));
    assert_eq!(first["id"], second["id"], "content-addressed");

    // The demo's model, imported as a model trained elsewhere: evaluated on the same test split.
    let models = data.join("buckets/models");
    let files: Vec<std::path::PathBuf> = walk(&models);
    let card = files.iter().find(|p| p.ends_with("card.json")).expect("the demo's card");
    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(card).unwrap()).unwrap();
    let labels = dir.path().join("labels.txt");
    let names: Vec<&str> = card["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    std::fs::write(&labels, names.join("\n")).unwrap();
    let onnx = files.iter().find(|p| p.ends_with("model.onnx")).expect("the demo's model");
    let (mean, std) = (card["input"]["mean"][0].as_f64().unwrap(), card["input"]["std"][0].as_f64().unwrap());
    let import = |labels: &std::path::Path| {
        cvops(&data)
            .args(["models", "import", "imported"])
            .arg(onnx)
            .args(["--dataset", "digits", "--input", "3x28x28", "--json", "--labels"])
            .arg(labels)
            .args(["--mean", &format!("{mean},{mean},{mean}"), "--std", &format!("{std},{std},{std}")])
            .output()
            .unwrap()
    };
    let out = import(&labels);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["outcome"], "registered", "{outcome}");
    assert_eq!(outcome["version"]["evaluation"]["images"].as_u64(), Some(500), "{outcome}");
    std::fs::write(&labels, names[..3].join("\n")).unwrap();
    let refused = import(&labels);
    assert_eq!(refused.status.code(), Some(1), "a refused import exits 1");
    let outcome: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(outcome["version"]["reason_code"], "shape_mismatch", "{outcome}");

    // An Ultralytics export imported as a detector on the demo's dataset of boxes: letterboxed
    // by default, evaluated by COCO mAP, held back by the gate (its weights are random).
    let names = dir.path().join("names.txt");
    std::fs::write(&names, (0..10).map(|d| d.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    let yolo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/yolov8n/yolov8n-digits.onnx");
    let out = cvops(&data)
        .args(["models", "import", "yolo"])
        .arg(&yolo)
        .args(["--task", "detection", "--dataset", "boxes", "--input", "3x96x96", "--labels"])
        .arg(&names)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("yolo v1: test mAP@0.5 ") && text.contains("below_floor"), "{text}");
    assert!(text.contains("mAP@0.5:0.95") && text.contains("at the served score threshold 0.25"), "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 10, "AP per class: {text}");
    let listed = cvops(&data).args(["models", "yolo", "--json"]).output().unwrap();
    let version: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!((version["task"].as_str(), version["metric"].as_str()), (Some("detection"), Some("map50")), "{version}");
    assert_eq!(version["detection"]["images"].as_u64(), Some(80), "{version}");
    assert_eq!(version["input"]["resize"], "letterbox", "{version}");
    let gate = cvops(&data).args(["gate", "yolo", "--json"]).output().unwrap();
    let gate: serde_json::Value = serde_json::from_slice(&gate.stdout).unwrap();
    assert_eq!((gate["metric"].as_str(), gate["floor"].as_f64()), (Some("map50"), Some(0.5)), "a detector's own floor: {gate}");
    let nothing_yet = cvops(&data).args(["gate", "unborn", "--min-test-images", "5"]).output().unwrap();
    assert_eq!(nothing_yet.status.code(), Some(2), "a model without versions needs --floor too");

    // `cvops predict`: the endpoint's answers without a server. On the digits' test images, the
    // accuracy register-model measured; on the detector, Ultralytics' boxes.
    let test = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits/test");
    let out = cvops(&data).args(["predict", "--model", "digits", "--top-k", "1", "--json"]).arg(&test).output().unwrap();
    let failures: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().filter(|l| l.contains("\"error\"")).collect();
    assert!(out.status.success(), "{:?}: {failures:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let right = lines
        .iter()
        .filter(|l| {
            let truth =
                std::path::Path::new(l["path"].as_str().unwrap()).parent().unwrap().file_name().unwrap().to_str().unwrap();
            l["predictions"][0]["label"] == truth
        })
        .count();
    let listed = cvops(&data).args(["models", "digits", "--json"]).output().unwrap();
    let v1: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&listed.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(lines.len(), 500);
    assert_eq!(right as f64 / 500.0, v1["score"].as_f64().unwrap(), "predict's accuracy is register-model's");
    let picture = yolo.parent().unwrap().join("digits.png");
    let out = cvops(&data).args(["predict", "--model", "yolo", "--version", "1", "--json"]).arg(&picture).output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(yolo.parent().unwrap().join("reference.json")).unwrap()).unwrap();
    assert_eq!(answer["detections"].as_array().unwrap().len(), reference["cases"][0]["boxes"].as_array().unwrap().len());
    let refused =
        cvops(&data).args(["predict", "--model", "digits"]).arg(yolo.parent().unwrap().join("reference.json")).output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "a file that is not an image exits 1");
    let unknown = cvops(&data).args(["predict", "--model", "nope"]).arg(&picture).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2), "no such model exits 2");

    // Running it again starts afresh in the folder it made.
    assert!(cvops(&data).args(["demo", "--epochs", "1", "--set", "width=4"]).output().unwrap().status.success());
}

#[test]
fn the_demo_refuses_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = cvops(dir.path()).arg("demo").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not make"));
    assert!(dir.path().join("precious.txt").exists());
}

#[test]
fn an_unknown_dataset_says_how_to_list_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = cvops(dir.path()).args(["images", "--dataset", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cvops datasets"));
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
