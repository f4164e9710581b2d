//! The direct runner's convolution (`cvops_inference::direct::ConvLayer`: 3x3, 8 output channels
//! per AVX2 vector, 7 output pixels per register block, bias and ReLU fused) on the digits
//! model's three layer shapes, each checked against a plain loop and timed on its own: the
//! per-layer table of the README's latency analysis.
//!
//!     cargo run --release -p cvops-inference --example direct_conv

use std::time::Instant;

use cvops_inference::direct::ConvLayer;

/// The same convolution as plain loops over a planar, zero-padded input: `[cout][h][w]`.
fn reference(input: &[f32], cin: usize, h: usize, w: usize, weights: &[f32], bias: &[f32]) -> Vec<f32> {
    let (hp, wp) = (h + 2, w + 2);
    let mut out = vec![0f32; bias.len() * h * w];
    for (o, b) in bias.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                let mut sum = *b;
                for c in 0..cin {
                    for k in 0..9 {
                        sum += input[c * hp * wp + (y + k / 3) * wp + x + k % 3] * weights[(o * cin + c) * 9 + k];
                    }
                }
                out[(o * h + y) * w + x] = sum.max(0.0);
            }
        }
    }
    out
}

fn main() {
    let mut seed = 1u32;
    let mut random = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    println!("| layer (digits model) | MFLOP | direct kernel | GFLOP/s | largest error |");
    println!("|---|---:|---:|---:|---:|");
    for (cin, cout, side) in [(3usize, 16usize, 28usize), (16, 32, 14), (32, 64, 7)] {
        let (h, w) = (side, side);
        let mut input = vec![0f32; cin * (h + 2) * (w + 2)];
        for c in 0..cin {
            for y in 0..h {
                for x in 0..w {
                    input[c * (h + 2) * (w + 2) + (y + 1) * (w + 2) + x + 1] = random();
                }
            }
        }
        let weights: Vec<f32> = (0..cout * cin * 9).map(|_| random()).collect();
        let bias: Vec<f32> = (0..cout).map(|_| random()).collect();
        let Some(layer) = ConvLayer::new(&weights, bias.clone(), cin, h, w) else {
            println!("this CPU has no AVX2 and FMA: the direct runner is off here");
            return;
        };
        let mut out = vec![0f32; cout * h * w];
        layer.run(&input, 1, &mut out);
        let expected = reference(&input, cin, h, w, &weights, &bias);
        let mut worst = 0f32;
        for o in 0..cout {
            for p in 0..h * w {
                worst = worst.max((out[(o / 8 * h * w + p) * 8 + o % 8] - expected[o * h * w + p]).abs());
            }
        }
        assert!(worst < 1e-4, "the kernel disagrees with the plain loop by {worst}");
        let runs = 20_000;
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                layer.run(std::hint::black_box(&input), 1, &mut out);
                started.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[runs / 2];
        let flops = 2.0 * (cout * cin * 9 * h * w) as f64;
        println!(
            "| {cin} -> {cout} channels, {h}x{w} | {:.2} | {:.1} us | {:.1} | {worst:.1e} |",
            flops / 1e6,
            median * 1e6,
            flops / median / 1e9
        );
    }
}
