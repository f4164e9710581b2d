//! cvops' side of the detection latency benchmark (`bench/detect_latency.py` runs it beside an
//! onnxruntime peer doing the same work): loads a detector as the endpoint does
//! (`LoadedDetector`: letterbox input of SIZE x SIZE, YOLO layout), then, on one thread, times
//! what the endpoint does per request after the image is decoded: letterbox and normalise, run,
//! decode, NMS, map back; and, apart, the model's run and the decoding alone. Every image of
//! IMAGES_DIR, RUNS times each after a warm-up. Prints one JSON line: the median and minimum per
//! image, and the boxes found on each image (so the benchmark can check both sides answer alike).
//! With CARD.json (a model card, as the trainer writes for its reference detector), the input is
//! the card's: its resize mode, mean and std.
//!
//!     cargo run --release -p cvops-inference --example detect_latency -- MODEL.onnx IMAGES_DIR CLASSES SIZE [RUNS] [CARD.json]

use std::time::Instant;

use cvops_core::preprocess::{InputSpec, ResizeMode};
use cvops_core::task::{DetectionSettings, OutputLayout};
use cvops_inference::detector::LoadedDetector;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: detect_latency MODEL.onnx IMAGES_DIR CLASSES SIZE [RUNS] [CARD.json]";
    let model = std::fs::read(args.get(1).expect(usage))?;
    let dir = std::path::PathBuf::from(args.get(2).expect(usage));
    let classes: usize = args.get(3).expect(usage).parse()?;
    let size: u32 = args.get(4).expect(usage).parse()?;
    let runs: usize = args.get(5).map(|r| r.parse()).transpose()?.unwrap_or(20);
    let spec = match args.get(6) {
        Some(card) => serde_json::from_slice::<cvops_core::model_card::ModelCard>(&std::fs::read(card)?)?.input,
        None => InputSpec {
            name: String::new(),
            width: size,
            height: size,
            channels: 3,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            resize: ResizeMode::Letterbox,
        },
    };
    let started = Instant::now();
    let detector = LoadedDetector::load(&model, &spec, classes, OutputLayout::Yolo)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut paths: Vec<_> = std::fs::read_dir(&dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    paths.sort();
    let images: Vec<image::DynamicImage> = paths.iter().map(image::open).collect::<Result<_, _>>()?;
    let settings = DetectionSettings::default();
    let (mut times, mut model_times) = (Vec::new(), Vec::new());
    let mut boxes = Vec::new();
    for image in &images {
        boxes.push(detector.detect(image, &settings)?.len());
        let (input, _) = cvops_core::preprocess::preprocess_placed(image, &spec);
        for _ in 0..runs {
            let started = Instant::now();
            std::hint::black_box(detector.detect(image, &settings)?);
            times.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            std::hint::black_box(detector.raw(&input, settings.score_threshold)?);
            model_times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    model_times.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "load_ms": load_ms,
        "images": images.len(),
        "median_ms": times[times.len() / 2],
        "min_ms": times[0],
        "model_median_ms": model_times[model_times.len() / 2],
        "boxes": boxes,
    });
    println!("{line}");
    Ok(())
}
