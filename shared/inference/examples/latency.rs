//! tract's side of the inference latency benchmark (`bench/infer_latency.py` runs it beside the
//! onnxruntime peer): loads `MODEL_DIR/model.onnx` for the shape of `MODEL_DIR/input.npy`, checks
//! the output against `output.npy` when there is one, then times RUNS single-image runs after 5
//! warm-ups on one thread; then the same through `LoadedModel`, what the endpoint runs (the direct
//! runner for the trainer's architecture where the CPU allows it, else tract). Prints one JSON line.

use std::time::Instant;

use cvops_core::preprocess::InputSpec;
use cvops_inference::LoadedModel;
use tract_onnx::prelude::*;

/// A little-endian float32 `.npy` (format 1.0): its shape and values.
fn read_npy(path: &std::path::Path) -> TractResult<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        anyhow::bail!("{} is not a .npy file", path.display());
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len])?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        anyhow::bail!("{} must be little-endian float32 in C order", path.display());
    }
    let shape_text = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
    let shape: Vec<usize> = shape_text.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let values = bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((shape, values))
}

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: latency MODEL_DIR [RUNS]"));
    let runs: usize = args.get(2).map(|r| r.parse().expect("RUNS is a number")).unwrap_or(50);
    let (shape, input) = read_npy(&dir.join("input.npy"))?;

    let started = Instant::now();
    let model = onnx()
        .model_for_path(dir.join("model.onnx"))?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let tensor = Tensor::from_shape(&shape, &input)?;
    let output = model.run(tvec!(tensor.clone().into()))?;
    let ours: Vec<f32> = output[0].to_array_view::<f32>()?.iter().copied().collect();
    let relative_error = match read_npy(&dir.join("output.npy")) {
        Ok((_, expected)) => {
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            Some(ours.iter().zip(&expected).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale)
        }
        Err(_) => None,
    };
    for _ in 0..5 {
        model.run(tvec!(tensor.clone().into()))?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let input = tvec!(tensor.clone().into());
        let started = Instant::now();
        model.run(input)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);

    // The endpoint's way: a card-shaped spec (the normalisation does not matter to the timing).
    let [1, channels, height, width] = shape[..] else { anyhow::bail!("the input must be [1, C, H, W]") };
    let spec = InputSpec {
        name: "input".into(),
        width: width as u32,
        height: height as u32,
        channels: channels as u8,
        mean: vec![0.0; channels],
        std: vec![1.0; channels],
        resize: Default::default(),
    };
    let started = Instant::now();
    let served = LoadedModel::load(&std::fs::read(dir.join("model.onnx"))?, &spec, ours.len())?;
    let served_load_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut served_times = Vec::with_capacity(runs);
    for _ in 0..5 {
        served.logits(&input)?;
    }
    for _ in 0..runs {
        let started = Instant::now();
        served.logits(&input)?;
        served_times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    served_times.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "model": dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            "load_ms": load_ms,
            "median_ms": times[times.len() / 2],
            "min_ms": times[0],
            "relative_error_vs_output_npy": relative_error,
            "cvops_runner": served.runner(),
            "cvops_load_ms": served_load_ms,
            "cvops_median_ms": served_times[served_times.len() / 2],
        })
    );
    Ok(())
}
