//! The reference detector trained on a YOLO-layout folder straight from disk (no platform), for
//! tuning its recipe and timing it:
//!
//!     cargo run -p cvops-trainer --example detect_train -- samplesets/detect-digits \
//!         [--epochs 40] [--width 16] [--lr 0.004] [--batch 32] [--out detector.onnx]
//!
//! Prints each epoch, then the test split's COCO figures and the wall time.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use cvops_core::annotation::{BoundingBox, PixelBox};
use cvops_core::metrics::detection::{self, Detection, GroundTruth};
use cvops_core::preprocess::{planes, InputSpec};
use cvops_core::task::DetectionSettings;
use cvops_trainer::data::Samples;
use cvops_trainer::detector::DetectorShape;
use cvops_trainer::model::named_tensors;
use cvops_trainer::{detect_train, onnx, Hyperparameters};

fn argument(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn split(root: &Path, split: &str, side: u32) -> Samples {
    let mut samples = Samples::default();
    let mut files: Vec<_> = std::fs::read_dir(root.join("images").join(split)).expect("images/<split>").flatten().collect();
    files.sort_by_key(|f| f.file_name());
    for file in files {
        let image = image::open(file.path()).expect("an image");
        samples.planes.extend(planes(&image, side, side, 3));
        samples.labels.push(0);
        let stem = file.path().file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(root.join("labels").join(split).join(format!("{stem}.txt"))).unwrap_or_default();
        let boxes = text
            .lines()
            .filter_map(|line| {
                let v: Vec<f64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                (v.len() == 5).then(|| BoundingBox { class: v[0] as u32, cx: v[1], cy: v[2], w: v[3], h: v[4] })
            })
            .collect();
        samples.boxes.push(boxes);
    }
    samples
}

/// mAP@0.5 with every box, found or true, of one class.
fn class_agnostic_map50(found: &[Vec<(u32, f32, PixelBox)>], samples: &Samples) -> f64 {
    let images: Vec<u64> = (1..=samples.len() as u64).collect();
    let truth: Vec<GroundTruth> =
        detect_train::ground_truth(samples, 96).into_iter().map(|g| GroundTruth { class: 0, ..g }).collect();
    let mut detections = Vec::new();
    for (i, boxes) in found.iter().enumerate() {
        for &(_, score, bbox) in boxes {
            detections.push(Detection { image: i as u64 + 1, class: 0, bbox, score: f64::from(score) });
        }
    }
    detection::evaluate(&images, &truth, &detections).map50
}

fn main() -> candle_core::Result<()> {
    let root = std::env::args().nth(1).expect("a YOLO dataset folder");
    let root = Path::new(&root);
    let side = 96;
    let mut h = Hyperparameters::detection();
    let parse = |name: &str| argument(name).map(|v| v.parse::<f64>().expect("a number"));
    if let Some(v) = parse("--epochs") {
        h.epochs = v as u32;
    }
    if let Some(v) = parse("--width") {
        h.width = v as usize;
    }
    if let Some(v) = parse("--lr") {
        h.learning_rate = v;
    }
    if let Some(v) = parse("--batch") {
        h.batch_size = v as usize;
    }
    let (train, val, test) = (split(root, "train", side), split(root, "val", side), split(root, "test", side));
    let labels: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let spec = InputSpec {
        name: onnx::INPUT.into(),
        width: side,
        height: side,
        channels: 3,
        mean: vec![0.5; 3],
        std: vec![0.25; 3],
        resize: Default::default(),
    };
    let started = Instant::now();
    let shape = DetectorShape::new(3, side as usize, h.width, labels.len());
    println!("{} on {} train images", shape.describe(), train.len());
    let settings = DetectionSettings::default();
    let mut on_epoch = |e: &cvops_core::model_card::EpochRecord| {
        println!(
            "epoch {:>3} loss {:.4} box {:.4} val mAP@0.5 {:.3} {:.1} s",
            e.epoch,
            e.loss,
            e.box_loss.unwrap_or(0.0),
            e.val_map50.unwrap_or(0.0),
            e.seconds
        )
    };
    let (net, vars, outcome) =
        detect_train::train(shape.clone(), &train, &val, &spec, &h, &settings, &Device::Cpu, &mut on_epoch)?;
    let test_eval = detect_train::evaluate(&net, &test, &spec, &h, &settings, &labels, &Device::Cpu)?;
    println!(
        "best epoch {} val {:.3}; test mAP@0.5 {:.3} mAP {:.3}; {:.0} img/s; {:.0} s",
        outcome.best_epoch,
        outcome.val_map50,
        test_eval.map50,
        test_eval.map,
        outcome.images_per_second,
        started.elapsed().as_secs_f64()
    );
    // Where the errors are: NMS at IoU 0.5 instead of 0.7, and boxes alone (every class as one).
    let strict = DetectionSettings { iou_threshold: 0.5, ..settings };
    let at_half = detect_train::evaluate(&net, &test, &spec, &h, &strict, &labels, &Device::Cpu)?;
    let agnostic = class_agnostic_map50(&detect_train::detect_all(&net, &test, &spec, &h, &settings, &Device::Cpu)?, &test);
    println!("test mAP@0.5 with NMS IoU 0.5: {:.3}; boxes alone (class-agnostic) mAP@0.5: {:.3}", at_half.map50, agnostic);
    if let Some(out) = argument("--out") {
        std::fs::write(out, onnx::export_detector(&shape, &named_tensors(&vars)?, &[])).expect("written");
    }
    Ok(())
}
