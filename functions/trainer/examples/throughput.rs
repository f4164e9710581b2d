//! Training throughput of the trainer's network, for comparing with PyTorch on the same device
//! (bench/train_throughput.py runs both and prints the ratio).
//!
//!     cargo run --release -p cvops-trainer --example throughput [--features cuda] -- \
//!         [--batch 256] [--side 64] [--channels 3] [--width 32] [--steps 50] [--warmup 10]
//!
//! Synthetic inputs that already live on the device, so this measures the training step
//! (forward, backward, AdamW update), not image loading: the same thing the PyTorch anchor times.
//! Prints one JSON line: images per second and the device it ran on.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use cvops_trainer::job::device;
use cvops_trainer::model::{trainable, Cnn, CnnShape};

fn argument(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, got {v}")))
        .unwrap_or(default)
}

/// Blocks until the device has finished the queued work (reading a value back does).
fn synchronise(loss: &Tensor) -> candle_core::Result<f32> {
    loss.to_dtype(DType::F32)?.to_scalar::<f32>()
}

fn main() -> candle_core::Result<()> {
    let (batch, side, channels) = (argument("--batch", 256), argument("--side", 64), argument("--channels", 3));
    let (width, steps, warmup, classes) = (argument("--width", 32), argument("--steps", 50), argument("--warmup", 10), 10);
    let device = if std::env::args().any(|a| a == "--cpu") { Device::Cpu } else { device() };

    let vars = VarMap::new();
    let net = Cnn::new(CnnShape::new(channels, side, side, width, classes), &vars, &device)?;
    let mut optimiser = AdamW::new(trainable(&vars), ParamsAdamW { lr: 1e-3, ..Default::default() })?;
    let x = Tensor::randn(0f32, 1f32, (batch, channels, side, side), &device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    let y = Tensor::new(labels.as_slice(), &device)?;

    let mut step = || -> candle_core::Result<Tensor> {
        let loss = candle_nn::loss::cross_entropy(&net.forward_t(&x, true)?, &y)?;
        optimiser.backward_step(&loss)?;
        Ok(loss)
    };
    for _ in 0..warmup {
        synchronise(&step()?)?;
    }
    let started = Instant::now();
    let mut last = None;
    for _ in 0..steps {
        last = Some(step()?);
    }
    let final_loss = match last {
        Some(loss) => synchronise(&loss)?,
        None => f32::NAN,
    };
    let seconds = started.elapsed().as_secs_f64();
    let images_per_second = (steps * batch) as f64 / seconds;
    eprintln!(
        "candle on {}: {steps} steps of {batch} ({channels}x{side}x{side}, width {width}) in {seconds:.3} s: {images_per_second:.0} images/s (loss {final_loss:.3})",
        if device.is_cpu() { "cpu" } else { "cuda" }
    );
    println!(
        "{}",
        serde_json::json!({
            "framework": "candle",
            "device": if device.is_cpu() { "cpu" } else { "cuda" },
            "batch": batch, "side": side, "channels": channels, "width": width, "steps": steps,
            "seconds": seconds, "images_per_second": images_per_second, "loss": final_loss,
        })
    );
    Ok(())
}
