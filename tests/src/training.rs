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
        Self { raw: crate::platform::RAW.into(), store: crate::platform::STORE.into(), models: crate::platform::MODELS.into() }
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
        RegisterConfig { promotion_floor, ..RegisterConfig::new(self.raw.clone(), self.store.clone(), self.models.clone()) }
    }
}

/// Records run `run_id` of model `model` as dispatch-training would have (one point), so that
/// register-model accepts the cards a test writes for it.
pub async fn record_run(table: &dyn cvops_core::ports::Table, model: &str, run_id: &str, dataset: &str, snapshot: &str) {
    use cvops_core::runs::{run_pk, run_sk, RunRecord, RunStatus};
    let run = RunRecord {
        run_id: run_id.into(),
        model: model.into(),
        dataset: dataset.into(),
        snapshot: snapshot.into(),
        points: vec![BTreeMap::new()],
        reason: Some("test".into()),
        status: RunStatus::Submitted,
        job_id: Some(format!("job-{run_id}")),
        status_reason: None,
        claimed_by: None,
        created_at: "2026-11-27T00:00:00Z".into(),
        updated_at: "2026-11-27T00:00:00Z".into(),
    };
    table.put(cvops_core::ports::Item::from_record(run_pk(model), run_sk(run_id), &run).unwrap()).await.unwrap();
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
