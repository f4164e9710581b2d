//! The network: blocks of conv3x3 -> batch norm -> ReLU -> 2x2 max-pool, widths doubling
//! (`w, 2w, 4w`), then global average pooling and a linear head. With `w = 32` on 64x64 RGB
//! this is the architecture of the GPU throughput anchor; on 28x28 digits `w = 16` is enough.
//! Global pooling makes the head independent of the input size.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};

use crate::conv::Conv3x3;

/// Batch normalisation over `[n, c, h, w]`, with the parameters and running statistics named
/// as ONNX's `BatchNormalization` inputs. Why not `candle_nn::BatchNorm`: its training pass
/// transposes the activations and reduces across strides, which made it most of a CPU step; here
/// training goes through [`crate::bn`].
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: candle_core::Var,
    running_var: candle_core::Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    pub fn new(channels: usize, eps: f64, vb: VarBuilder<'_>) -> Result<Self> {
        use candle_nn::Init::Const;
        // The running statistics are variables of the var map (so they are saved, restored and
        // exported with the rest) but never given to the optimiser (see [`trainable`]).
        let running_mean = candle_core::Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Const(0.0))?)?;
        let running_var = candle_core::Var::from_tensor(&vb.get_with_hints(channels, "running_var", Const(1.0))?)?;
        Ok(Self {
            weight: vb.get_with_hints(channels, "weight", Const(1.0))?,
            bias: vb.get_with_hints(channels, "bias", Const(0.0))?,
            running_mean,
            running_var,
            eps,
            momentum: 0.1,
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if train {
            let (y, mean, var) = crate::bn::batch_norm_train(x, &self.weight, &self.bias, self.eps)?;
            // PyTorch's update: the running variance is the unbiased estimate.
            let count = (n * h * w) as f64;
            let m = self.momentum;
            let var = (var * (count / (count - 1.0).max(1.0)))?;
            self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
            self.running_var.set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * m)?)?)?;
            return Ok(y);
        }
        let scale = (&self.weight / (self.running_var.as_tensor() + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        let flat = x.reshape((n, c, h * w))?;
        let per_channel = |t: &Tensor| t.reshape((1, c, 1));
        flat.broadcast_mul(&per_channel(&scale)?)?.broadcast_add(&per_channel(&shift)?)?.reshape((n, c, h, w))
    }
}

/// The shape of a network: what the exporter and the card need to know.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub widths: Vec<usize>,
    pub classes: usize,
    pub bn_eps: f64,
}

impl CnnShape {
    pub fn new(channels: usize, height: usize, width: usize, base_width: usize, classes: usize) -> Self {
        Self { channels, height, width, widths: vec![base_width, base_width * 2, base_width * 4], classes, bn_eps: 1e-5 }
    }

    /// For the card: `conv3x3(bn,relu,maxpool2) 16-32-64, gap, linear(10)`.
    pub fn describe(&self) -> String {
        let widths: Vec<String> = self.widths.iter().map(|w| w.to_string()).collect();
        format!("conv3x3(bn,relu,maxpool2) {}, global-avg-pool, linear({})", widths.join("-"), self.classes)
    }
}

/// A weight tensor by name, as the exporter writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug)]
pub struct Cnn {
    pub shape: CnnShape,
    blocks: Vec<(Conv3x3, BatchNorm2d)>,
    head: Linear,
}

impl Cnn {
    /// A freshly initialised network whose variables live in `vars`.
    pub fn new(shape: CnnShape, vars: &VarMap, device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_varmap(vars, DType::F32, device);
        let mut blocks = Vec::new();
        let mut inputs = shape.channels;
        for (i, &outputs) in shape.widths.iter().enumerate() {
            let p = vb.pp(format!("block{i}"));
            let conv = Conv3x3::new(inputs, outputs, i > 0, p.pp("conv"))?;
            let bn = BatchNorm2d::new(outputs, shape.bn_eps, p.pp("bn"))?;
            blocks.push((conv, bn));
            inputs = outputs;
        }
        let head = candle_nn::linear(inputs, shape.classes, vb.pp("head"))?;
        Ok(Self { shape, blocks, head })
    }

    /// Logits for a batch `[n, c, h, w]`; `train` uses batch statistics and updates the running ones.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for (conv, bn) in &self.blocks {
            x = max_pool_2x2(&bn.forward_t(&conv.forward(&x)?, train)?.relu()?)?;
        }
        self.head.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

/// Every variable of the network by name, on the CPU (for export and best-epoch snapshots).
pub fn named_tensors(vars: &VarMap) -> Result<Vec<NamedTensor>> {
    let data = vars.data().lock().expect("var map poisoned");
    let mut out = Vec::with_capacity(data.len());
    for (name, var) in data.iter() {
        let tensor = var.as_tensor().to_device(&Device::Cpu)?;
        out.push(NamedTensor {
            name: name.clone(),
            dims: tensor.dims().to_vec(),
            values: tensor.flatten_all()?.to_vec1::<f32>()?,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Puts saved values back into the variables (restoring the best epoch).
pub fn restore(vars: &VarMap, saved: &[NamedTensor], device: &Device) -> Result<()> {
    let data = vars.data().lock().expect("var map poisoned");
    for tensor in saved {
        if let Some(var) = data.get(&tensor.name) {
            var.set(&Tensor::from_slice(&tensor.values, tensor.dims.as_slice(), device)?)?;
        }
    }
    Ok(())
}

/// The variables the optimiser updates: everything but the batch-norm running statistics.
pub fn trainable(vars: &VarMap) -> Vec<candle_core::Var> {
    let data = vars.data().lock().expect("var map poisoned");
    let mut named: Vec<_> = data.iter().filter(|(name, _)| !name.contains("running_")).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, var)| var.clone()).collect()
}

/// 2x2 max-pooling with stride 2, dropping an odd last row and column (ONNX `MaxPool`'s floor
/// mode, which the exporter writes), as a reshape and two maxima. Why not candle's `max_pool2d`:
/// its gradient is a quarter of the right one, and for an odd size (the digits' 7x7 before the
/// last pool) it lines the pooled values up with the wrong input positions, so some maxima get no
/// gradient at all. A max's gradient goes to every input equal to it.
pub fn max_pool_2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (rows, columns) = (h / 2, w / 2);
    let even =
        if h % 2 == 0 && w % 2 == 0 { x.clone() } else { x.narrow(2, 0, rows * 2)?.narrow(3, 0, columns * 2)?.contiguous()? };
    even.reshape((n, c, rows, 2, columns, 2))?.max(5)?.max(3)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn pooling_matches_candle_forward_and_sends_each_max_its_whole_gradient() {
        let device = Device::Cpu;
        // Distinct values, so each window has one maximum; 7x7 leaves a row and a column out.
        let values: Vec<f32> = (0..2 * 3 * 7 * 7).map(|i| ((i * 37) % 101) as f32).collect();
        let x = Var::from_tensor(&Tensor::from_vec(values, (2, 3, 7, 7), &device).unwrap()).unwrap();
        let ours = max_pool_2x2(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().max_pool2d(2).unwrap();
        assert_eq!(ours.dims(), &[2, 3, 3, 3]);
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );

        let gradient = ours.sum_all().unwrap().backward().unwrap();
        let dx = gradient.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let input = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (plane, (dx, input)) in dx.chunks(49).zip(input.chunks(49)).enumerate() {
            let mut expected = vec![0f32; 49];
            for (py, px) in (0..3).flat_map(|py| (0..3).map(move |px| (py, px))) {
                let window =
                    [(2 * py) * 7 + 2 * px, (2 * py) * 7 + 2 * px + 1, (2 * py + 1) * 7 + 2 * px, (2 * py + 1) * 7 + 2 * px + 1];
                let best = *window.iter().max_by(|a, b| input[**a].total_cmp(&input[**b])).unwrap();
                expected[best] = 1.0;
            }
            assert_eq!(dx, expected.as_slice(), "plane {plane}");
        }
    }
}
