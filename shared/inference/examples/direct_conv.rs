//! An experiment for the model-latency gap (README, "Model latency"): a direct 3x3 convolution
//! with explicit AVX2/FMA register blocking (8 output channels per vector, 7 output pixels per
//! block, bias and ReLU fused), on the digits model's three layer shapes, checked against a plain
//! loop and timed. tract runs these three convolutions as im2col and a matrix product in 89 us;
//! this kernel measures what a specialised path could do. Not used by the endpoint (yet).
//!
//!     cargo run --release -p cvops-inference --example direct_conv

/// Input: padded NCHW [cin][hp][wp] (hp = h+2, wp = w+2). Weights packed [ocb][cin][9][8].
/// Output: [ocb][h][w][8] (oc-blocked, "NCHW8c").
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn conv3x3_avx2(
    input: &[f32],
    cin: usize,
    h: usize,
    w: usize,
    packed: &[f32],
    bias: &[f32],
    cout: usize,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (hp, wp) = (h + 2, w + 2);
    const XB: usize = 7;
    for ob in 0..cout / 8 {
        let wbase = packed.as_ptr().add(ob * cin * 9 * 8);
        let b = _mm256_loadu_ps(bias.as_ptr().add(ob * 8));
        for y in 0..h {
            let mut x0 = 0;
            while x0 < w {
                let n = XB.min(w - x0);
                let mut acc = [b; XB];
                for ic in 0..cin {
                    let plane = input.as_ptr().add(ic * hp * wp);
                    let wic = wbase.add(ic * 72);
                    for ky in 0..3 {
                        let row = plane.add((y + ky) * wp + x0);
                        for kx in 0..3 {
                            let wv = _mm256_loadu_ps(wic.add((ky * 3 + kx) * 8));
                            // A full block as its own loop with a constant count, so that it
                            // unrolls and the seven accumulators stay in registers.
                            if n == XB {
                                for (i, a) in acc.iter_mut().enumerate() {
                                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(i + kx)), wv, *a);
                                }
                            } else {
                                for (i, a) in acc[..n].iter_mut().enumerate() {
                                    *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add(i + kx)), wv, *a);
                                }
                            }
                        }
                    }
                }
                let o = out.as_mut_ptr().add(((ob * h + y) * w + x0) * 8);
                for (i, a) in acc[..n].iter().enumerate() {
                    _mm256_storeu_ps(o.add(i * 8), _mm256_max_ps(*a, _mm256_setzero_ps()));
                }
                x0 += XB;
            }
        }
    }
}

fn naive(input: &[f32], cin: usize, h: usize, w: usize, weights: &[f32], bias: &[f32], cout: usize) -> Vec<f32> {
    let (hp, wp) = (h + 2, w + 2);
    let mut out = vec![0f32; cout * h * w];
    for oc in 0..cout {
        for y in 0..h {
            for x in 0..w {
                let mut s = bias[oc];
                for ic in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            s += input[ic * hp * wp + (y + ky) * wp + x + kx] * weights[((oc * cin + ic) * 3 + ky) * 3 + kx];
                        }
                    }
                }
                out[(oc * h + y) * w + x] = s.max(0.0);
            }
        }
    }
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("direct_conv: this experiment is written for x86_64 (AVX2 and FMA) only");
}

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::time::Instant;
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        println!("direct_conv: this CPU has no AVX2 and FMA");
        return;
    }
    for &(cin, cout, h) in &[(3usize, 16usize, 28usize), (16, 32, 14), (32, 64, 7)] {
        let w = h;
        let mut seed = 1u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut input = vec![0f32; cin * (h + 2) * (w + 2)];
        for ic in 0..cin {
            for y in 0..h {
                for x in 0..w {
                    input[ic * (h + 2) * (w + 2) + (y + 1) * (w + 2) + x + 1] = rnd();
                }
            }
        }
        let weights: Vec<f32> = (0..cout * cin * 9).map(|_| rnd()).collect();
        let bias: Vec<f32> = (0..cout).map(|_| rnd()).collect();
        let mut packed = vec![0f32; cout * cin * 9];
        for oc in 0..cout {
            for ic in 0..cin {
                for k in 0..9 {
                    packed[((oc / 8 * cin + ic) * 9 + k) * 8 + oc % 8] = weights[(oc * cin + ic) * 9 + k];
                }
            }
        }
        let mut out = vec![0f32; cout * h * w];
        let reference = naive(&input, cin, h, w, &weights, &bias, cout);
        unsafe { conv3x3_avx2(&input, cin, h, w, &packed, &bias, cout, &mut out) };
        let mut worst = 0f32;
        for oc in 0..cout {
            for p in 0..h * w {
                worst = worst.max((out[(oc / 8 * h * w + p) * 8 + oc % 8] - reference[oc * h * w + p]).abs());
            }
        }
        let runs = 20000;
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            unsafe { conv3x3_avx2(std::hint::black_box(&input), cin, h, w, &packed, &bias, cout, &mut out) };
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = times[runs / 2];
        let flops = 2.0 * (cout * cin * 9 * h * w) as f64;
        println!(
            "cin {cin:>2} cout {cout:>2} {h}x{w}: {:.2} us, {:.1} GFLOP/s, max err {worst:.1e}",
            med * 1e6,
            flops / med / 1e9
        );
    }
}
