//! Training fixtures shared by the tests that train: the job's configuration for the `digits`
//! model, register-model's, and a progress sink that keeps quiet.

use std::collections::BTreeMap;

use cvops_core::snapshot::descriptor_key;
use cvops_register_model::RegisterConfig;
use cvops_trainer::job::Progress;
use cvops_trainer::{Hyperparameters, TrainerConfig};

/// The buckets a test's platform uses.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub raw: String,
    pub store: String,
    pub models: String,
}

impl Buckets {
    /// The local stack's buckets.
    pub fn local() -> Self {
        Self { raw: crate::local::RAW.into(), store: crate::local::STORE.into(), models: crate::local::MODELS.into() }
    }

    /// What dispatch-training would give the job: model and dataset `digits`, point 0.
    pub fn trainer_config(&self, snapshot: &str, run_id: &str, values: BTreeMap<String, f64>) -> TrainerConfig {
        TrainerConfig {
            run_id: run_id.into(),
            model: "digits".into(),
            dataset: "digits".into(),
            snapshot: snapshot.into(),
            snapshot_descriptor: descriptor_key("digits", snapshot),
            store_bucket: self.store.clone(),
            raw_bucket: self.raw.clone(),
            models_bucket: self.models.clone(),
            point: 0,
            hyperparameters: Hyperparameters::from_values(&values).expect("the test's hyperparameters are valid"),
            hyperparameter_values: values,
        }
    }

    pub fn register_config(&self, promotion_floor: f64) -> RegisterConfig {
        RegisterConfig {
            raw_bucket: self.raw.clone(),
            store_bucket: self.store.clone(),
            models_bucket: self.models.clone(),
            promotion_floor,
        }
    }
}

/// Hyperparameters from pairs.
pub fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(name, value)| (name.to_string(), *value)).collect()
}

/// Progress that goes nowhere.
pub struct Quiet;

impl Progress for Quiet {
    fn line(&self, _: &str) {}
}
