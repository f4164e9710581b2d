//! A 3x3 convolution (stride 1, padding 1, no bias) whose backward pass on the CPU is made of
//! forward convolutions. Why: candle's own backward computes the input gradient with a direct,
//! unvectorised transposed convolution (about 5x slower than a forward convolution here); the
//! same gradient is a forward convolution with the kernel flipped and its channels swapped, which
//! candle runs as im2col and a matrix product. The first layer skips the input gradient entirely.
//! The weight keeps ONNX's `Conv` layout `[out, in, 3, 3]`.
//!
//! On a GPU the convolution is unfolded into tensor ops instead ([`conv3x3_unfolded`]), because
//! candle 0.9.2's CUDA `conv2d` is wrong for training: given a non-contiguous kernel it copies it
//! to a contiguous buffer and then multiplies with the original storage anyway, and candle's own
//! backward pass hands it exactly such a kernel (the transposed output gradient) for the weight
//! gradient. Every weight gradient came out scrambled: the digits run on an H200 reached 44% where
//! the CPU reaches 97%.

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weight: Tensor,
    /// False for the first layer, whose input is data.
    input_gradient: bool,
}

impl Conv3x3 {
    pub fn new(inputs: usize, outputs: usize, input_gradient: bool, vb: VarBuilder<'_>) -> Result<Self> {
        let weight = vb.get_with_hints((outputs, inputs, 3, 3), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        Ok(Self { weight, input_gradient })
    }
}

impl Module for Conv3x3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            x.apply_op2(&self.weight, Conv3x3Op { input_gradient: self.input_gradient })
        } else {
            conv3x3_unfolded(x, &self.weight)
        }
    }
}

/// The same convolution from ops whose CUDA gradients are sound: zero padding, the nine shifted
/// views stacked as columns, one matrix product (im2col spelled out, so autograd differentiates
/// narrows, a copy and a matmul instead of candle's conv2d).
pub fn conv3x3_unfolded(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let outputs = weight.dim(0)?;
    let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let mut shifted = Vec::with_capacity(9);
    for dy in 0..3 {
        for dx in 0..3 {
            shifted.push(padded.narrow(2, dy, h)?.narrow(3, dx, w)?);
        }
    }
    // [b, c, h, w, 9] -> one row per output pixel, its columns ordered (channel, ky, kx) as the
    // weight `[out, c, 3, 3]` flattens.
    let columns = Tensor::stack(&shifted, 4)?.permute((0, 2, 3, 1, 4))?.reshape((b * h * w, c * 9))?;
    let y = columns.matmul(&weight.reshape((outputs, c * 9))?.t()?)?;
    y.reshape((b, h, w, outputs))?.permute((0, 3, 1, 2))?.contiguous()
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
        // The kernel argument made contiguous: see the module's note on candle's CUDA conv2d.
        let dw = x.transpose(0, 1)?.conv2d(&dy.transpose(0, 1)?.contiguous()?, 1, 1, 1, 1)?.transpose(0, 1)?;
        Ok((dx, Some(dw)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    /// The output and both gradients of `conv` against candle's own convolution on the CPU
    /// (which is correct there), on an odd-sized input.
    fn assert_matches_candle(conv: impl Fn(&Tensor, &Tensor) -> Tensor) {
        let device = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 7, 6), &device).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4, 3, 3), &device).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 5, 7, 6), &device).unwrap();
        let grads_of = |y: Tensor| {
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(w.as_tensor()).unwrap())]
        };
        let ours = grads_of(conv(x.as_tensor(), w.as_tensor()));
        let theirs = grads_of(x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap());
        for (name, (a, b)) in ["y", "dx", "dw"].iter().zip(ours.iter().zip(&theirs)) {
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-3, "{name} differs by {worst}");
        }
    }

    #[test]
    fn gradients_match_candles_own_convolution() {
        assert_matches_candle(|x, w| x.apply_op2(w, Conv3x3Op { input_gradient: true }).unwrap());
    }

    #[test]
    fn the_unfolded_convolution_for_gpus_matches_too() {
        assert_matches_candle(|x, w| conv3x3_unfolded(x, w).unwrap());
    }
}
