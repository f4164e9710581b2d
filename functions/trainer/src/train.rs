//! The training loop: shuffled mini-batches with augmentation (random shifts, optional flips),
//! AdamW with a cosine learning-rate decay, validation after every epoch, early stopping when the
//! validation accuracy stops improving, and the best epoch's weights kept.

use std::time::Instant;

use candle_core::{Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use cvops_core::model_card::EpochRecord;
use cvops_core::preprocess::{argmax, normalise_into, InputSpec};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::config::Hyperparameters;
use crate::data::Samples;
use crate::model::{named_tensors, restore, trainable, Cnn, CnnShape, NamedTensor};

/// Images per forward pass when only predicting.
const PREDICT_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    pub best_epoch: u32,
    pub val_accuracy: f64,
    /// Training images per second over all epochs (forward and backward passes).
    pub images_per_second: f64,
}

/// One image's planes, shifted by (dx, dy) with zero fill and optionally mirrored.
pub(crate) fn augment(planes: &[u8], side: usize, dx: i32, dy: i32, flip: bool, out: &mut Vec<u8>) {
    out.clear();
    out.resize(planes.len(), 0);
    let s = side as i32;
    for (plane_in, plane_out) in planes.chunks_exact(side * side).zip(out.chunks_exact_mut(side * side)) {
        for y in 0..s {
            let sy = y + dy;
            if !(0..s).contains(&sy) {
                continue;
            }
            for x in 0..s {
                let sx = if flip { s - 1 - x } else { x } + dx;
                if (0..s).contains(&sx) {
                    plane_out[(y * s + x) as usize] = plane_in[(sy * s + sx) as usize];
                }
            }
        }
    }
}

/// A batch tensor of the samples at `indices`, augmented when `rng` is given.
fn batch(
    samples: &Samples,
    indices: &[usize],
    spec: &InputSpec,
    h: &Hyperparameters,
    rng: Option<&mut StdRng>,
    device: &Device,
) -> Result<Tensor> {
    let per = spec.len();
    let side = spec.width as usize;
    let mut values = Vec::with_capacity(indices.len() * per);
    let mut shifted = Vec::with_capacity(per);
    match rng {
        Some(rng) => {
            let s = h.shift as i32;
            for &i in indices {
                let (dx, dy) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
                let flip = h.flip && rng.random_bool(0.5);
                augment(&samples.planes[i * per..(i + 1) * per], side, dx, dy, flip, &mut shifted);
                normalise_into(&shifted, spec, &mut values);
            }
        }
        None => {
            for &i in indices {
                normalise_into(&samples.planes[i * per..(i + 1) * per], spec, &mut values);
            }
        }
    }
    Tensor::from_vec(values, spec.shape(indices.len()).as_slice(), device)
}

/// Predicted label indices for every sample, in eval mode.
pub fn predict(net: &Cnn, samples: &Samples, spec: &InputSpec, h: &Hyperparameters, device: &Device) -> Result<Vec<u32>> {
    let all: Vec<usize> = (0..samples.len()).collect();
    let mut out = Vec::with_capacity(samples.len());
    for chunk in all.chunks(PREDICT_BATCH) {
        let logits = net.forward_t(&batch(samples, chunk, spec, h, None, device)?, false)?.to_device(&Device::Cpu)?;
        out.extend(logits.to_vec2::<f32>()?.iter().map(|row| argmax(row) as u32));
    }
    Ok(out)
}

fn accuracy(predicted: &[u32], truth: &[u32]) -> f64 {
    let correct = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    correct as f64 / truth.len().max(1) as f64
}

/// Cosine decay from the full rate to nearly zero over the planned epochs.
pub(crate) fn cosine_rate(h: &Hyperparameters, epoch: u32) -> f64 {
    let progress = (epoch - 1) as f64 / h.epochs as f64;
    h.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The epoch with the best validation score so far and its weights; says when `patience`
/// epochs have gone by without a better one.
pub(crate) struct BestEpoch {
    pub epoch: u32,
    pub score: f64,
    weights: Option<Vec<NamedTensor>>,
}

impl BestEpoch {
    pub fn new() -> Self {
        Self { epoch: 0, score: -1.0, weights: None }
    }

    /// Records `epoch`'s score, keeping the weights when it is the best; true when training
    /// should stop.
    pub fn offer(&mut self, epoch: u32, score: f64, vars: &VarMap, patience: u32) -> Result<bool> {
        if score > self.score {
            (self.epoch, self.score, self.weights) = (epoch, score, Some(named_tensors(vars)?));
            return Ok(false);
        }
        Ok(epoch - self.epoch >= patience)
    }

    /// Puts the best epoch's weights back.
    pub fn restore(&self, vars: &VarMap, device: &Device) -> Result<()> {
        match &self.weights {
            Some(weights) => restore(vars, weights, device),
            None => Ok(()),
        }
    }
}

/// Trains a fresh network on `train`, picks the epoch with the best accuracy on `val`.
pub fn train(
    shape: CnnShape,
    train: &Samples,
    val: &Samples,
    spec: &InputSpec,
    h: &Hyperparameters,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(Cnn, VarMap, TrainOutcome)> {
    let vars = VarMap::new();
    let net = Cnn::new(shape, &vars, device)?;
    let params = ParamsAdamW { lr: h.learning_rate, weight_decay: h.weight_decay, ..Default::default() };
    let mut optimiser = AdamW::new(trainable(&vars), params)?;
    let mut rng = StdRng::seed_from_u64(h.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (mut history, mut best) = (Vec::new(), BestEpoch::new());
    let (mut trained_images, mut training_seconds) = (0usize, 0.0f64);

    for epoch in 1..=h.epochs {
        let started = Instant::now();
        optimiser.set_learning_rate(cosine_rate(h, epoch));
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for indices in order.chunks(h.batch_size) {
            // A batch of one has no batch statistics to normalise with.
            if indices.len() < 2 {
                continue;
            }
            let x = batch(train, indices, spec, h, Some(&mut rng), device)?;
            let targets: Vec<u32> = indices.iter().map(|&i| train.labels[i]).collect();
            let y = Tensor::new(targets.as_slice(), device)?;
            let logits = net.forward_t(&x, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            optimiser.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * indices.len() as f64;
            let predicted = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += predicted.iter().zip(&targets).filter(|(p, t)| p == t).count();
            seen += indices.len();
        }
        let train_seconds = started.elapsed().as_secs_f64();
        trained_images += seen;
        training_seconds += train_seconds;
        let val_accuracy = accuracy(&predict(&net, val, spec, h, device)?, &val.labels);
        let record = EpochRecord {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_accuracy: Some(correct as f64 / seen.max(1) as f64),
            val_accuracy: Some(val_accuracy),
            box_loss: None,
            val_map50: None,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_epoch(&record);
        history.push(record);
        if best.offer(epoch, val_accuracy, &vars, h.patience)? {
            break;
        }
    }
    best.restore(&vars, device)?;
    let outcome = TrainOutcome {
        history,
        best_epoch: best.epoch,
        val_accuracy: best.score.max(0.0),
        images_per_second: trained_images as f64 / training_seconds.max(1e-9),
    };
    Ok((net, vars, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_moves_pixels_and_fills_with_zero() {
        let planes: Vec<u8> = (1..=9).collect();
        let mut out = Vec::new();
        augment(&planes, 3, 1, 0, false, &mut out);
        assert_eq!(out, vec![2, 3, 0, 5, 6, 0, 8, 9, 0]);
        augment(&planes, 3, 0, 0, true, &mut out);
        assert_eq!(out, vec![3, 2, 1, 6, 5, 4, 9, 8, 7]);
    }
}
