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
    pub fn new(channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
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
            x = bn.forward_t(&conv.forward(&x)?, train)?.relu()?.max_pool2d(2)?;
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
