//! A 3x3 convolution (stride 1, padding 1, no bias) whose backward pass on the CPU is made of
//! forward convolutions. Why: candle's own backward computes the input gradient with a direct,
//! unvectorised transposed convolution (about 5x slower than a forward convolution here); the
//! same gradient is a forward convolution with the kernel flipped and its channels swapped, which
//! candle runs as im2col and a matrix product. The first layer skips the input gradient entirely.
//! The weight keeps ONNX's `Conv` layout `[out, in, 3, 3]`. On a GPU candle's own op runs.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weight: Tensor,
    /// False for the first layer, whose input is data.
    input_gradient: bool,
}

impl Conv3x3 {
    pub fn new(inputs: usize, outputs: usize, input_gradient: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((outputs, inputs, 3, 3), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        Ok(Self { weight, input_gradient })
    }
}

impl Module for Conv3x3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            x.apply_op2(&self.weight, Conv3x3Op { input_gradient: self.input_gradient })
        } else {
            x.conv2d(&self.weight, 1, 1, 1, 1)
        }
    }
}

struct Conv3x3Op {
    input_gradient: bool,
}

/// A CPU tensor holding a copy of a storage's data.
fn tensor(storage: &CpuStorage, layout: &Layout) -> Result<Tensor> {
    let data = storage.as_slice::<f32>()?;
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("conv3x3 expects contiguous input".into()))?;
    Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)
}

impl CustomOp2 for Conv3x3Op {
    fn name(&self) -> &'static str {
        "conv3x3"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = tensor(s1, l1)?.conv2d(&tensor(s2, l2)?, 1, 1, 1, 1)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, x: &Tensor, weight: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (x, weight, dy) = (x.detach(), weight.detach(), dy.detach().contiguous()?);
        let dx = if self.input_gradient {
            let reversed = Tensor::new(&[2u32, 1, 0], x.device())?;
            let flipped = weight.index_select(&reversed, 2)?.index_select(&reversed, 3)?.transpose(0, 1)?.contiguous()?;
            Some(dy.conv2d(&flipped, 1, 1, 1, 1)?)
        } else {
            None
        };
        // Batch and channels swapped: a convolution of the input with the output gradient.
        let dw = x.transpose(0, 1)?.conv2d(&dy.transpose(0, 1)?, 1, 1, 1, 1)?.transpose(0, 1)?;
        Ok((dx, Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    #[test]
    fn gradients_match_candles_own_convolution() {
        let device = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 7, 6), &device).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4, 3, 3), &device).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 5, 7, 6), &device).unwrap();
        let grads_of = |y: Tensor| {
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(w.as_tensor()).unwrap())]
        };
        let ours = grads_of(x.as_tensor().apply_op2(w.as_tensor(), Conv3x3Op { input_gradient: true }).unwrap());
        let theirs = grads_of(x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap());
        for (name, (a, b)) in ["y", "dx", "dw"].iter().zip(ours.iter().zip(&theirs)) {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-3, "{name} differs by {worst}");
        }
    }
}
