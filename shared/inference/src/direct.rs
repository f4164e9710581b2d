//! A direct runner for the trainer's own architecture: conv3x3 (batch norm folded in) + ReLU +
//! 2x2 max-pool blocks, global average pool, linear. Why: on these small convolutions tract's
//! im2col and matrix product run at about 48 GFLOP/s and the whole model takes 2.9x onnxruntime's
//! time; a direct 3x3 kernel blocked in registers (8 output channels per AVX2 vector, 7 output
//! pixels per block, bias and ReLU fused) runs the same layers at about 100 GFLOP/s.
//!
//! It is used only when the graph is exactly that architecture, the CPU has AVX2 and FMA, and its
//! output matches tract's on a probe input at load ([`crate::LoadedModel::load`]); anything else
//! runs on tract. On other CPUs (the arm64 Lambda) tract runs every model until this kernel has a
//! NEON twin.

use std::collections::HashMap;
use std::io::Cursor;

use cvops_core::preprocess::InputSpec;
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

/// Output channels per vector: the kernel's register block.
const LANES: usize = 8;

/// A 3x3 convolution (stride 1, padding 1) with its bias and a ReLU fused: one block of the
/// runner, and what `examples/direct_conv.rs` times on its own.
#[derive(Debug, Clone)]
pub struct ConvLayer {
    inputs: usize,
    outputs: usize,
    height: usize,
    width: usize,
    /// The weights packed `[outputs / 8][inputs][9][8]`, eight output channels per vector.
    packed: Vec<f32>,
    bias: Vec<f32>,
}

impl ConvLayer {
    /// A layer for `height` x `width` inputs from `weights` `[outputs][inputs][3][3]`; `None`
    /// where this CPU lacks the kernel's instructions, `outputs` is not a multiple of 8, or the
    /// sizes disagree.
    pub fn new(weights: &[f32], bias: Vec<f32>, inputs: usize, height: usize, width: usize) -> Option<Self> {
        let outputs = bias.len();
        if !kernel::available() || !outputs.is_multiple_of(LANES) || weights.len() != outputs * inputs * 9 {
            return None;
        }
        let mut packed = vec![0f32; weights.len()];
        for (index, weight) in weights.iter().enumerate() {
            let (o, i, k) = (index / (inputs * 9), index / 9 % inputs, index % 9);
            packed[((o / LANES * inputs + i) * 9 + k) * LANES + o % LANES] = *weight;
        }
        Some(Self { inputs, outputs, height, width, packed, bias })
    }

    /// Convolves `input`, zero-padded by one on each side, into `out[o / 8][y][x][o % 8]`.
    /// `group` is the input's layout: 1 for planes (`[c][y][x]`), 8 for this layer's own output
    /// layout (`[c / 8][y][x][c % 8]`).
    pub fn run(&self, input: &[f32], group: usize, out: &mut [f32]) {
        kernel::conv3x3_bias_relu(input, group, self, out)
    }
}

/// The trainer's network, ready to run one image at a time without tract.
#[derive(Debug, Clone)]
pub struct DirectModel {
    blocks: Vec<ConvLayer>,
    /// `[classes][features]`, as ONNX `Gemm` with `transB = 1` holds it.
    head_weight: Vec<f32>,
    head_bias: Vec<f32>,
}

fn ints(node: &pb::NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

fn int(node: &pb::NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn float(node: &pb::NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

/// An attribute that must be absent or equal to `expected`.
fn ints_are(node: &pb::NodeProto, name: &str, expected: &[i64]) -> bool {
    ints(node, name).is_none_or(|v| v == expected)
}

/// A weight's dimension, when it is one this runner takes (1 to 4096).
fn dimension(value: &i64) -> Option<usize> {
    usize::try_from(*value).ok().filter(|d| (1..=4096).contains(d))
}

/// The float initializers by name, with their dimensions.
fn initializers(graph: &pb::GraphProto) -> HashMap<&str, (Vec<i64>, Vec<f32>)> {
    let mut out = HashMap::new();
    for tensor in &graph.initializer {
        if tensor.data_type != pb::tensor_proto::DataType::Float as i32 {
            continue;
        }
        let values = if tensor.raw_data.is_empty() {
            tensor.float_data.clone()
        } else {
            tensor.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        out.insert(tensor.name.as_str(), (tensor.dims.clone(), values));
    }
    out
}

impl DirectModel {
    /// The runner for `onnx` when it is the trainer's architecture on this CPU; `None` otherwise.
    pub fn from_onnx(onnx: &[u8], spec: &InputSpec) -> Option<Self> {
        if !kernel::available() {
            return None;
        }
        let model = tract_onnx::onnx().proto_model_for_read(&mut Cursor::new(onnx)).ok()?;
        let graph = model.graph.as_ref()?;
        let weights = initializers(graph);
        let get = |name: &str, len: usize| weights.get(name).filter(|(_, v)| v.len() == len).map(|(d, v)| (d, v));
        let (mut height, mut width) = (spec.height as usize, spec.width as usize);
        let mut channels = spec.channels as usize;
        let mut current = graph.input.first()?.name.clone();
        let mut nodes = graph.node.iter().peekable();
        let mut blocks = Vec::new();

        while nodes.peek().is_some_and(|n| n.op_type == "Conv") {
            let conv = nodes.next()?;
            let (bn, relu, pool) = (nodes.next()?, nodes.next()?, nodes.next()?);
            let chained = conv.input.first() == Some(&current)
                && bn.op_type == "BatchNormalization"
                && bn.input.first() == conv.output.first()
                && relu.op_type == "Relu"
                && relu.input.first() == bn.output.first()
                && pool.op_type == "MaxPool"
                && pool.input.first() == relu.output.first();
            let conv_is_3x3 = ints(conv, "kernel_shape")? == [3, 3]
                && ints(conv, "pads")? == [1, 1, 1, 1]
                && ints_are(conv, "strides", &[1, 1])
                && ints_are(conv, "dilations", &[1, 1])
                && int(conv, "group").is_none_or(|g| g == 1);
            let pool_is_2x2 = ints(pool, "kernel_shape")? == [2, 2]
                && ints(pool, "strides")? == [2, 2]
                && ints_are(pool, "pads", &[0, 0, 0, 0])
                && int(pool, "ceil_mode").is_none_or(|c| c == 0)
                && ints_are(pool, "dilations", &[1, 1]);
            if !chained || !conv_is_3x3 || !pool_is_2x2 || height < 2 || width < 2 || bn.input.len() != 5 {
                return None;
            }
            let (dims, kernel) = weights.get(conv.input.get(1)?.as_str())?;
            let outputs = dimension(dims.first()?)?;
            if dims[..] != [outputs as i64, channels as i64, 3, 3] || kernel.len() != outputs * channels * 9 {
                return None;
            }
            let conv_bias = match conv.input.get(2) {
                Some(name) => get(name, outputs)?.1.clone(),
                None => vec![0.0; outputs],
            };
            let parameter = |i: usize| get(bn.input.get(i)?, outputs).map(|(_, v)| v.clone());
            let (gamma, beta, mean, variance) = (parameter(1)?, parameter(2)?, parameter(3)?, parameter(4)?);
            let epsilon = float(bn, "epsilon").unwrap_or(1e-5);
            // Batch norm folded into the convolution: y = scale * (conv + b - mean) + beta.
            let scales: Vec<f32> = gamma.iter().zip(&variance).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
            let bias = (0..outputs).map(|o| beta[o] + (conv_bias[o] - mean[o]) * scales[o]).collect();
            let folded: Vec<f32> = kernel.iter().enumerate().map(|(i, w)| w * scales[i / (channels * 9)]).collect();
            blocks.push(ConvLayer::new(&folded, bias, channels, height, width)?);
            current = pool.output.first()?.clone();
            (channels, height, width) = (outputs, height / 2, width / 2);
        }

        let (gap, flatten, gemm) = (nodes.next()?, nodes.next()?, nodes.next()?);
        let head_is_linear = gap.op_type == "GlobalAveragePool"
            && gap.input.first() == Some(&current)
            && flatten.op_type == "Flatten"
            && flatten.input.first() == gap.output.first()
            && int(flatten, "axis").is_none_or(|a| a == 1)
            && gemm.op_type == "Gemm"
            && gemm.input.first() == flatten.output.first()
            && int(gemm, "transB") == Some(1)
            && int(gemm, "transA").is_none_or(|t| t == 0)
            && float(gemm, "alpha").is_none_or(|a| a == 1.0)
            && float(gemm, "beta").is_none_or(|b| b == 1.0)
            && graph.output.len() == 1
            && gemm.output.first().map(String::as_str) == graph.output.first().map(|o| o.name.as_str());
        if blocks.is_empty() || !head_is_linear || nodes.next().is_some() {
            return None;
        }
        let (dims, head_weight) = weights.get(gemm.input.get(1)?.as_str())?;
        let classes = dimension(dims.first()?)?;
        if dims[..] != [classes as i64, channels as i64] || head_weight.len() != classes * channels {
            return None;
        }
        let head_bias = get(gemm.input.get(2)?, classes)?.1.clone();
        Some(Self { blocks, head_weight: head_weight.clone(), head_bias })
    }

    /// Logits for one preprocessed input (CHW, as [`crate::LoadedModel::logits`] takes it).
    pub fn logits(&self, input: &[f32]) -> Vec<f32> {
        let first = &self.blocks[0];
        let (h, w) = (first.height, first.width);
        // The first layer reads planes (one value per position), with a zero border.
        let mut padded = vec![0f32; first.inputs * (h + 2) * (w + 2)];
        for (c, plane) in input.chunks_exact(h * w).enumerate().take(first.inputs) {
            for (y, row) in plane.chunks_exact(w).enumerate() {
                let start = c * (h + 2) * (w + 2) + (y + 1) * (w + 2) + 1;
                padded[start..start + w].copy_from_slice(row);
            }
        }
        let mut group = 1;
        for block in &self.blocks {
            let (h, w) = (block.height, block.width);
            let mut convolved = vec![0f32; block.outputs * h * w];
            block.run(&padded, group, &mut convolved);
            // Pooled into the next layer's input: channel-blocked, with a zero border.
            let (ph, pw) = (h / 2, w / 2);
            padded = vec![0f32; block.outputs * (ph + 2) * (pw + 2)];
            for ob in 0..block.outputs / LANES {
                for y in 0..ph {
                    for x in 0..pw {
                        let at = |yy: usize, xx: usize| ((ob * h + yy) * w + xx) * LANES;
                        let (a, b, c, d) =
                            (at(2 * y, 2 * x), at(2 * y, 2 * x + 1), at(2 * y + 1, 2 * x), at(2 * y + 1, 2 * x + 1));
                        let out = ((ob * (ph + 2) + y + 1) * (pw + 2) + x + 1) * LANES;
                        for lane in 0..LANES {
                            padded[out + lane] =
                                convolved[a + lane].max(convolved[b + lane]).max(convolved[c + lane]).max(convolved[d + lane]);
                        }
                    }
                }
            }
            group = LANES;
        }
        let last = self.blocks.last().expect("at least one block");
        let (ph, pw) = (last.height / 2, last.width / 2);
        let mut features = vec![0f32; last.outputs];
        for (o, feature) in features.iter_mut().enumerate() {
            let (ob, lane) = (o / LANES, o % LANES);
            let mut sum = 0f32;
            for y in 0..ph {
                for x in 0..pw {
                    sum += padded[((ob * (ph + 2) + y + 1) * (pw + 2) + x + 1) * LANES + lane];
                }
            }
            *feature = sum / (ph * pw) as f32;
        }
        self.head_bias
            .iter()
            .zip(self.head_weight.chunks_exact(last.outputs))
            .map(|(b, row)| b + row.iter().zip(&features).map(|(w, f)| w * f).sum::<f32>())
            .collect()
    }
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    use super::{ConvLayer, LANES};

    pub fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `input` is zero-padded by one on each side; value (c, y, x) sits at
    /// `(c / group) * plane + c % group + (y * padded_width + x) * group`, with `group` 1 for
    /// planes and 8 for the channel-blocked layout this writes: `out[o / 8][y][x][o % 8]`.
    pub fn conv3x3_bias_relu(input: &[f32], group: usize, block: &ConvLayer, out: &mut [f32]) {
        let (h, w) = (block.height, block.width);
        assert!(available(), "checked when the layer was made");
        assert_eq!(input.len(), block.inputs.div_ceil(group) * group * (h + 2) * (w + 2));
        assert_eq!(out.len(), block.outputs * h * w);
        // SAFETY: the CPU has AVX2 and FMA (checked above), and every read stays inside `input`
        // and every write inside `out` by the two length checks.
        // The layout as a constant, so the broadcasts' addresses are fixed offsets.
        unsafe {
            match group {
                1 => conv::<1>(input, block, out),
                LANES => conv::<LANES>(input, block, out),
                other => unreachable!("no layout groups {other} channels"),
            }
        }
    }

    /// Output pixels per register block: 7 accumulators, one weight vector and one broadcast
    /// stay in registers (AVX2 has 16).
    const PIXELS: usize = 7;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn conv<const GROUP: usize>(input: &[f32], block: &ConvLayer, out: &mut [f32]) {
        use std::arch::x86_64::*;
        // SAFETY: the caller checked AVX2 and FMA; `block` was packed for this layout, so every
        // offset below stays inside `input` (padded by one pixel) and `out`.
        unsafe {
            let (h, w, cin) = (block.height, block.width, block.inputs);
            let padded_width = w + 2;
            for ob in 0..block.outputs / LANES {
                let weights = block.packed.as_ptr().add(ob * cin * 9 * LANES);
                let bias = _mm256_loadu_ps(block.bias.as_ptr().add(ob * LANES));
                for y in 0..h {
                    let mut x0 = 0;
                    while x0 < w {
                        let at = Pixels {
                            input: input.as_ptr().add((y * padded_width + x0) * GROUP),
                            plane: (h + 2) * padded_width * GROUP,
                            padded_width,
                            inputs: cin,
                            weights,
                            bias,
                            out: out.as_mut_ptr().add(((ob * h + y) * w + x0) * LANES),
                        };
                        // The count as a constant, so the accumulators live in registers.
                        match w - x0 {
                            1 => at.run::<GROUP, 1>(),
                            2 => at.run::<GROUP, 2>(),
                            3 => at.run::<GROUP, 3>(),
                            4 => at.run::<GROUP, 4>(),
                            5 => at.run::<GROUP, 5>(),
                            6 => at.run::<GROUP, 6>(),
                            _ => at.run::<GROUP, PIXELS>(),
                        }
                        x0 += PIXELS;
                    }
                }
            }
        }
    }

    /// One row segment of output pixels for eight output channels.
    struct Pixels {
        /// Input value (channel 0, the segment's first tap row and column).
        input: *const f32,
        plane: usize,
        padded_width: usize,
        inputs: usize,
        weights: *const f32,
        bias: std::arch::x86_64::__m256,
        out: *mut f32,
    }

    impl Pixels {
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn run<const GROUP: usize, const N: usize>(&self) {
            use std::arch::x86_64::*;
            // SAFETY: `conv` built these pointers inside its input and output for N pixels.
            unsafe {
                let mut acc = [self.bias; N];
                for c in 0..self.inputs {
                    let channel = self.input.add((c / GROUP) * self.plane + c % GROUP);
                    let taps = self.weights.add(c * 9 * LANES);
                    for ky in 0..3 {
                        let row = channel.add(ky * self.padded_width * GROUP);
                        for kx in 0..3 {
                            let tap = _mm256_loadu_ps(taps.add((ky * 3 + kx) * LANES));
                            for (i, a) in acc.iter_mut().enumerate() {
                                *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&*row.add((i + kx) * GROUP)), tap, *a);
                            }
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(self.out.add(i * LANES), _mm256_max_ps(*a, _mm256_setzero_ps()));
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    use super::ConvLayer;

    pub fn available() -> bool {
        false
    }

    pub fn conv3x3_bias_relu(_input: &[f32], _group: usize, _block: &ConvLayer, _out: &mut [f32]) {
        unreachable!("a ConvLayer is only made where the kernel is available")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_a_model_get_no_direct_runner() {
        let spec = InputSpec {
            name: "input".into(),
            width: 28,
            height: 28,
            channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            resize: Default::default(),
        };
        assert!(DirectModel::from_onnx(b"not a model", &spec).is_none());
        assert!(DirectModel::from_onnx(&[], &spec).is_none());
    }
}
