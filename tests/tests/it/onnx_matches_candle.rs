//! The exported ONNX model, run by tract and by the direct runner, gives the same logits as the
//! candle network it came from, on real images: relative error below 1e-4.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cvops_core::preprocess::{planes, preprocess, InputSpec};
use cvops_core::validate::{decode_image, ValidationLimits};
use cvops_inference::LoadedModel;
use cvops_trainer::data::Samples;
use cvops_trainer::model::{named_tensors, CnnShape};
use cvops_trainer::{onnx, train, Hyperparameters};

fn digits(split: &str, per_label: usize) -> Vec<(image::DynamicImage, u32)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/digits").join(split);
    let mut out = Vec::new();
    for label in 0..10u32 {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(label.to_string())).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths.into_iter().take(per_label) {
            out.push((decode_image(&std::fs::read(path).unwrap(), &ValidationLimits::default()).unwrap(), label));
        }
    }
    out
}

fn samples(images: &[(image::DynamicImage, u32)]) -> Samples {
    let mut samples = Samples::default();
    for (image, label) in images {
        samples.planes.extend(planes(image, 28, 28, 1));
        samples.labels.push(*label);
    }
    samples
}

/// Whether this CPU runs the direct runner (x86-64 with AVX2 and FMA).
fn direct_kernel_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// A network of `width` trained a little (so the batch-norm running statistics are the data's,
/// not the initial ones), exported.
fn trained(width: usize) -> (cvops_trainer::model::Cnn, Vec<u8>, InputSpec) {
    let spec = InputSpec {
        name: onnx::INPUT.into(),
        width: 28,
        height: 28,
        channels: 1,
        mean: vec![0.13],
        std: vec![0.31],
        resize: Default::default(),
    };
    let hyperparameters = Hyperparameters { epochs: 2, width, ..Hyperparameters::default() };
    let shape = CnnShape::new(1, 28, 28, width, 10);
    let (train_set, val) = (samples(&digits("train", 30)), samples(&digits("val", 5)));
    let (net, vars, _) =
        train::train(shape.clone(), &train_set, &val, &spec, &hyperparameters, &Device::Cpu, &mut |_| {}).unwrap();
    let exported = onnx::export(&shape, &named_tensors(&vars).unwrap(), &[]);
    (net, exported, spec)
}

#[test]
fn tract_and_the_direct_runner_run_the_export_with_candles_outputs() {
    let (net, exported, spec) = trained(8);
    let tract = LoadedModel::load_tract_only(&exported, &spec, 10).unwrap();
    let fastest = LoadedModel::load(&exported, &spec, 10).unwrap();
    assert_eq!(tract.runner(), "tract");
    assert_eq!(fastest.runner(), if direct_kernel_here() { "direct" } else { "tract" });

    for model in [&tract, &fastest] {
        let mut worst = 0f32;
        for (image, _) in digits("test", 5) {
            let input = preprocess(&image, &spec);
            let x = Tensor::from_vec(input.clone(), spec.shape(1).as_slice(), &Device::Cpu).unwrap();
            let theirs = net.forward_t(&x, false).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ours = model.logits(&input).unwrap();
            let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let difference = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            worst = worst.max(difference / scale);
        }
        eprintln!("largest relative error between {} and candle: {worst:e}", model.runner());
        assert!(worst < 1e-4, "{}: largest relative error {worst}", model.runner());
    }
}

#[test]
fn a_network_the_direct_kernel_cannot_block_runs_on_tract() {
    // Width 4: the first layer's 4 output channels do not fill the kernel's 8-channel vectors.
    let (_, exported, spec) = trained(4);
    assert_eq!(LoadedModel::load(&exported, &spec, 10).unwrap().runner(), "tract");
}

/// The detector's export, decoding included, gives candle's boxes and scores on tract: every
/// one of the 144 candidates of real detect-digits pictures, after a little training.
#[test]
fn the_detectors_export_gives_candles_boxes_and_scores_on_tract() {
    use cvops_core::annotation::BoundingBox;
    use cvops_core::detect::decode_yolo;
    use cvops_core::task::{DetectionSettings, OutputLayout};
    use cvops_inference::detector::{layout_of, LoadedDetector};
    use cvops_trainer::detector::{Detector, DetectorShape};

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits");
    let load = |split: &str, count: usize| {
        let mut samples = Samples::default();
        let mut images = Vec::new();
        for i in 0..count {
            let stem = format!("{split}_{i:04}");
            let image = image::open(root.join(format!("images/{split}/{stem}.jpg"))).unwrap();
            samples.planes.extend(planes(&image, 96, 96, 3));
            samples.labels.push(0);
            let text = std::fs::read_to_string(root.join(format!("labels/{split}/{stem}.txt"))).unwrap_or_default();
            samples.boxes.push(
                text.lines()
                    .map(|l| {
                        let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                        BoundingBox { class: v[0] as u32, cx: v[1], cy: v[2], w: v[3], h: v[4] }
                    })
                    .collect(),
            );
            images.push(image);
        }
        (samples, images)
    };
    let ((train_set, _), (val, _), (_, test_images)) = (load("train", 48), load("val", 8), load("test", 4));
    let spec = InputSpec {
        name: onnx::INPUT.into(),
        width: 96,
        height: 96,
        channels: 3,
        mean: vec![0.45; 3],
        std: vec![0.25; 3],
        resize: Default::default(),
    };
    let h = Hyperparameters { epochs: 1, width: 4, ..Hyperparameters::detection() };
    let shape = DetectorShape::new(3, 96, 4, 10);
    let (net, vars, _): (Detector, _, _) = cvops_trainer::detect_train::train(
        shape.clone(),
        &train_set,
        &val,
        &spec,
        &h,
        &DetectionSettings::default(),
        &Device::Cpu,
        &mut |_| {},
    )
    .unwrap();
    let exported = onnx::export_detector(&shape, &named_tensors(&vars).unwrap(), &[]);
    assert_eq!(layout_of(&exported).unwrap(), OutputLayout::Yolo);
    let tract = LoadedDetector::load(&exported, &spec, 10, OutputLayout::Yolo).unwrap();
    for image in &test_images {
        let input = preprocess(image, &spec);
        let x = Tensor::from_vec(input.clone(), spec.shape(1).as_slice(), &Device::Cpu).unwrap();
        let decoded = net.decode(&net.forward_t(&x, false).unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let theirs = decode_yolo(&decoded, &[1, 14, 144], 10, 0.0).unwrap();
        let ours = tract.raw(&input, 0.0).unwrap();
        assert_eq!(ours.len(), 144, "every cell is a candidate");
        assert_eq!(theirs.len(), 144);
        // Classes can swap where two scores tie to float noise, as little-trained ones do.
        let same_class = ours.iter().zip(&theirs).filter(|(a, b)| a.class == b.class).count();
        assert!(same_class >= 130, "{same_class} of 144 candidates have candle's class");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a.score - b.score).abs() < 1e-4, "{a:?} vs {b:?}");
            let corners = |d: &cvops_core::detect::RawDetection| [d.bbox.x, d.bbox.y, d.bbox.width, d.bbox.height];
            for (p, q) in corners(a).iter().zip(corners(b)) {
                assert!((p - q).abs() < 1e-2, "{a:?} vs {b:?}");
            }
        }
    }
}
