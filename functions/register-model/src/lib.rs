//! The register-model function: when a trainer's model card lands in the models bucket, verify
//! the model (the artifact's sha256 against the card, that tract loads it with the card's input),
//! evaluate it on its snapshot's test split independently of the trainer, register it as the
//! model's next version with its lineage, and promote it to `production` when it is at least as
//! accurate as the current production version on the same test split and above a floor.
//!
//! A model that fails verification is registered as `rejected` with a stable code and reason;
//! production is never touched by it.

pub mod config;
pub mod evaluate;
pub mod handler;

pub use config::RegisterConfig;
pub use handler::{Outcome, Register, RegisterError};
