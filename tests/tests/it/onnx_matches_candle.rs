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
