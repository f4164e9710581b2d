//! Batch normalisation in training mode on the CPU, as one custom op with a hand-written backward
//! pass. Why: composed from candle's tensor ops, the per-channel statistics and their gradients
//! are strided reductions and broadcasts, which made batch norm over half of a CPU training step.
//! Here each channel is one pass over contiguous rows. On a GPU the composed version runs instead
//! (`reference`), and a test holds the two to the same outputs and gradients.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `(mean, biased variance)` per channel of the last forward pass.
type Statistics = Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>;

struct BatchNormTrain {
    eps: f32,
    statistics: Statistics,
}

/// Contiguous f32 data of a storage, or an error naming what was expected.
fn slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("batch norm expects contiguous f32 tensors"),
    }
}

/// The rows (one per image) of channel `c` in `[n, c, hw]` data.
fn rows(data: &[f32], n: usize, channels: usize, plane: usize, c: usize) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &data[(i * channels + c) * plane..(i * channels + c + 1) * plane])
}

fn statistics(x: &[f32], n: usize, channels: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (n * plane) as f64;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let mean = rows(x, n, channels, plane, c).flatten().map(|&v| v as f64).sum::<f64>() / count;
            let var = rows(x, n, channels, plane, c).flatten().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / count;
            (mean as f32, var as f32)
        })
        .unzip()
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, channels, h, w) = l1.shape().dims4()?;
        let plane = h * w;
        let (x, weight, bias) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let (mean, var) = statistics(x, n, channels, plane);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(plane).enumerate().for_each(|(row, out)| {
            let c = row % channels;
            let scale = weight[c] / (var[c] + self.eps).sqrt();
            let shift = bias[c] - mean[c] * scale;
            for (o, &v) in out.iter_mut().zip(&x[row * plane..(row + 1) * plane]) {
                *o = v * scale + shift;
            }
        });
        *self.statistics.lock().expect("statistics poisoned") = Some((mean, var));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, channels, h, w) = x.dims4()?;
        let plane = h * w;
        let count = (n * plane) as f32;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let dys = dy.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let weights = weight.to_vec1::<f32>()?;
        let (mean, var) = statistics(&xs, n, channels, plane);
        // Per channel: sum(dy) and sum(dy * xhat), which give the weight and bias gradients too.
        let sums: Vec<(f32, f32)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let inv_std = 1.0 / (var[c] + self.eps).sqrt();
                let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
                for (xr, dr) in rows(&xs, n, channels, plane, c).zip(rows(&dys, n, channels, plane, c)) {
                    for (&xv, &dv) in xr.iter().zip(dr) {
                        sum_dy += dv as f64;
                        sum_dy_xhat += (dv * (xv - mean[c]) * inv_std) as f64;
                    }
                }
                (sum_dy as f32, sum_dy_xhat as f32)
            })
            .collect();
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(plane).enumerate().for_each(|(row, out)| {
            let c = row % channels;
            let inv_std = 1.0 / (var[c] + self.eps).sqrt();
            let (sum_dy, sum_dy_xhat) = sums[c];
            let k = weights[c] * inv_std / count;
            let (xr, dr) = (&xs[row * plane..(row + 1) * plane], &dys[row * plane..(row + 1) * plane]);
            for ((o, &xv), &dv) in out.iter_mut().zip(xr).zip(dr) {
                let xhat = (xv - mean[c]) * inv_std;
                *o = k * (count * dv - sum_dy - xhat * sum_dy_xhat);
            }
        });
        let device = x.device();
        let dweight = Tensor::from_vec(sums.iter().map(|s| s.1).collect::<Vec<_>>(), channels, device)?;
        let dbias = Tensor::from_vec(sums.iter().map(|s| s.0).collect::<Vec<_>>(), channels, device)?;
        Ok((Some(Tensor::from_vec(dx, x.shape(), device)?), Some(dweight), Some(dbias)))
    }
}

/// Normalises `x` `[n, c, h, w]` with its batch statistics, then scales and shifts per channel.
/// Returns the output and the batch's `(mean, biased variance)` per channel.
pub fn batch_norm_train(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    if !x.device().is_cpu() {
        return reference(x, weight, bias, eps);
    }
    let statistics: Statistics = Arc::default();
    let op = BatchNormTrain { eps: eps as f32, statistics: statistics.clone() };
    let y = x.contiguous()?.apply_op3(weight, bias, op)?;
    let (mean, var) = statistics.lock().expect("statistics poisoned").take().expect("the forward pass ran");
    let channels = mean.len();
    Ok((y, Tensor::from_vec(mean, channels, x.device())?, Tensor::from_vec(var, channels, x.device())?))
}

/// The same, composed from tensor ops (any device).
pub fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c, h * w))?;
    let per_channel = |t: &Tensor| t.reshape((1, c, 1));
    let mean = flat.mean_keepdim(2)?.mean_keepdim(0)?;
    let centered = flat.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(2)?.mean_keepdim(0)?;
    let y = centered
        .broadcast_div(&(&var + eps)?.sqrt()?)?
        .broadcast_mul(&per_channel(weight)?)?
        .broadcast_add(&per_channel(bias)?)?
        .reshape((n, c, h, w))?;
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn the_custom_op_matches_the_composed_reference_forward_and_backward() {
        let device = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (5, 3, 4, 6), &device).unwrap() + 1.5).unwrap()).unwrap();
        let weight = Var::from_tensor(&Tensor::new(&[0.5f32, 1.0, 2.0], &device).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::new(&[0.1f32, -0.2, 0.3], &device).unwrap()).unwrap();
        // A loss that weighs outputs unevenly, so every gradient term matters.
        let probe = Tensor::randn(0f32, 1.0, (5, 3, 4, 6), &device).unwrap();
        // A batch norm's training forward: (x, weight, bias, eps) -> (y, mean, var).
        type Forward = fn(&Tensor, &Tensor, &Tensor, f64) -> Result<(Tensor, Tensor, Tensor)>;
        let run = |f: Forward| {
            let (y, mean, var) = f(x.as_tensor(), weight.as_tensor(), bias.as_tensor(), 1e-5).unwrap();
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let grad = |v: &Var| flat(grads.get(v.as_tensor()).unwrap());
            [flat(&y), flat(&mean), flat(&var), grad(&x), grad(&weight), grad(&bias)]
        };
        let (ours, theirs) = (run(batch_norm_train), run(reference));
        for (name, (a, b)) in ["y", "mean", "var", "dx", "dweight", "dbias"].iter().zip(ours.iter().zip(&theirs)) {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{name} differs by {worst}");
        }
    }
}
