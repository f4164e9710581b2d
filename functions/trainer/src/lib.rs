//! cvops-trainer: the training job. AWS Batch runs its binary in the trainer image (with the
//! `cuda` feature); locally `cvops` runs the same library in a child process.
//!
//! - [`config`]: the job's environment (what dispatch-training sets) and the hyperparameters;
//! - [`data`]: the snapshot's images, fetched through the object-store port and decoded in parallel;
//! - [`model`], [`train`]: the CNN on candle and its training loop;
//! - [`detector`], [`detect_train`]: the reference detector (anchor-free, on the same blocks) and
//!   its training loop, for a snapshot with boxes;
//! - [`onnx`]: the exporter, by hand on prost, so the model is served without Python;
//! - [`job`]: the whole job, ending with the model card, written last.

pub mod bn;
pub mod config;
pub mod conv;
pub mod data;
pub mod detect_train;
pub mod detector;
pub mod job;
pub mod model;
pub mod onnx;
pub mod train;

pub use config::{Hyperparameters, TrainerConfig};
pub use job::{run, Progress, TrainerError};

/// The trainer's version as recorded in cards: the crate version, and the commit when the build
/// was given one (`CVOPS_GIT_SHA`).
pub const TRAINER_VERSION: &str = match option_env!("CVOPS_GIT_SHA") {
    Some(sha) => sha,
    None => env!("CARGO_PKG_VERSION"),
};
