//! The reference detector: a single-stage, anchor-free network in the manner of FCOS, on the
//! classifier's convolution blocks. Three pooled blocks bring the input to a grid of stride 8
//! (12x12 on 96x96), two more widen the receptive field (about 70 pixels), and two 3x3 heads
//! give, per cell, the distances from the cell's centre to the box's four sides and one score
//! per class.
//!
//! [`Detector::decode`] turns the heads into the YOLO export layout `[n, 4 + classes, N]` (box
//! centre, width and height in input pixels, then per-class probabilities), which is also what
//! the exported ONNX graph computes, so the endpoint reads the trained model as it reads an
//! Ultralytics export.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::conv::Conv3x3;
use crate::model::{max_pool_2x2, BatchNorm2d};

/// Input pixels per grid cell.
pub const STRIDE: usize = 8;
/// Blocks that halve the resolution (2^3 = [`STRIDE`]).
pub const POOLED_BLOCKS: usize = 3;
/// Box distances are `exp` of the head's output clamped to this range, so that an untrained or
/// diverging head gives finite boxes (e^6 strides is far beyond any input).
pub const DISTANCE_LOG_RANGE: f32 = 6.0;
/// The class head's initial bias: every score starts at 1%, as in RetinaNet and FCOS, so the
/// many background cells do not swamp the first steps of the focal loss.
pub const PRIOR_PROBABILITY: f64 = 0.01;

#[derive(Debug, Clone, PartialEq)]
pub struct DetectorShape {
    pub channels: usize,
    /// The square input side, a multiple of [`STRIDE`].
    pub side: usize,
    pub widths: Vec<usize>,
    pub classes: usize,
    pub bn_eps: f64,
}

impl DetectorShape {
    pub fn new(channels: usize, side: usize, base_width: usize, classes: usize) -> Self {
        let w = base_width;
        Self { channels, side, widths: vec![w, 2 * w, 4 * w, 4 * w, 4 * w], classes, bn_eps: 1e-5 }
    }

    /// Cells per side of the output grid.
    pub fn grid(&self) -> usize {
        self.side / STRIDE
    }

    /// Candidate boxes per image.
    pub fn candidates(&self) -> usize {
        self.grid() * self.grid()
    }

    /// For the card.
    pub fn describe(&self) -> String {
        let widths: Vec<String> = self.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "anchor-free detector: conv3x3(bn,relu) {} (maxpool2 after the first {POOLED_BLOCKS}), stride {STRIDE}, \
             heads conv3x3 ltrb(4) + classes({}), {} candidates",
            widths.join("-"),
            self.classes,
            self.candidates()
        )
    }
}

/// A 3x3 convolution with a bias (the heads).
#[derive(Debug)]
struct Head {
    conv: Conv3x3,
    bias: Tensor,
}

impl Head {
    fn new(inputs: usize, outputs: usize, bias: f64, vb: VarBuilder<'_>) -> Result<Self> {
        let conv = Conv3x3::new(inputs, outputs, true, vb.clone())?;
        let bias = vb.get_with_hints(outputs, "bias", candle_nn::Init::Const(bias))?;
        Ok(Self { conv, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let outputs = self.bias.dim(0)?;
        self.conv.forward(x)?.broadcast_add(&self.bias.reshape((1, outputs, 1, 1))?)
    }
}

#[derive(Debug)]
pub struct Detector {
    pub shape: DetectorShape,
    blocks: Vec<(Conv3x3, BatchNorm2d)>,
    boxes: Head,
    classes: Head,
}

/// The heads' raw outputs: distance logs `[n, 4, g, g]` (left, top, right, bottom) and class
/// logits `[n, classes, g, g]`.
pub struct RawHeads {
    pub distances: Tensor,
    pub class_logits: Tensor,
}

impl Detector {
    pub fn new(shape: DetectorShape, vars: &VarMap, device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_varmap(vars, DType::F32, device);
        let mut blocks = Vec::new();
        let mut inputs = shape.channels;
        for (i, &outputs) in shape.widths.iter().enumerate() {
            let p = vb.pp(format!("block{i}"));
            blocks.push((
                Conv3x3::new(inputs, outputs, i > 0, p.pp("conv"))?,
                BatchNorm2d::new(outputs, shape.bn_eps, p.pp("bn"))?,
            ));
            inputs = outputs;
        }
        let prior = -((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY).ln();
        let boxes = Head::new(inputs, 4, 0.0, vb.pp("boxes"))?;
        let classes = Head::new(inputs, shape.classes, prior, vb.pp("classes"))?;
        Ok(Self { shape, blocks, boxes, classes })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<RawHeads> {
        let mut x = x.clone();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            x = bn.forward_t(&conv.forward(&x)?, train)?.relu()?;
            if i < POOLED_BLOCKS {
                x = max_pool_2x2(&x)?;
            }
        }
        Ok(RawHeads { distances: self.boxes.forward(&x)?, class_logits: self.classes.forward(&x)? })
    }

    /// `[n, 4 + classes, N]`: each cell's box (centre x, centre y, width, height in input pixels)
    /// and class probabilities, cells in row-major order.
    pub fn decode(&self, raw: &RawHeads) -> Result<Tensor> {
        let (n, _, g, _) = raw.distances.dims4()?;
        let d = distances_in_pixels(&raw.distances)?;
        let side = |i: usize| d.narrow(1, i, 1);
        let (l, t, r, b) = (side(0)?, side(1)?, side(2)?, side(3)?);
        let (ax, ay) = anchor_grid(g, d.device())?;
        let cx = ax.broadcast_add(&((&r - &l)? * 0.5)?)?;
        let cy = ay.broadcast_add(&((&b - &t)? * 0.5)?)?;
        let boxes = Tensor::cat(&[cx, cy, (&l + &r)?, (&t + &b)?], 1)?.reshape((n, 4, g * g))?;
        let scores = candle_nn::ops::sigmoid(&raw.class_logits)?.reshape((n, self.shape.classes, g * g))?;
        Tensor::cat(&[boxes, scores], 1)
    }
}

/// The four distances in input pixels, from the head's logs.
pub fn distances_in_pixels(distances: &Tensor) -> Result<Tensor> {
    distances.clamp(-DISTANCE_LOG_RANGE, DISTANCE_LOG_RANGE)?.exp()? * STRIDE as f64
}

/// The centres of the grid's cells in input pixels: x and y, each `[1, 1, g, g]`.
pub fn anchor_grid(g: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let centre = |i: usize| ((i as f32) + 0.5) * STRIDE as f32;
    let xs: Vec<f32> = (0..g * g).map(|i| centre(i % g)).collect();
    let ys: Vec<f32> = (0..g * g).map(|i| centre(i / g)).collect();
    Ok((Tensor::from_vec(xs, (1, 1, g, g), device)?, Tensor::from_vec(ys, (1, 1, g, g), device)?))
}
