//! What dispatch-training is configured with, read once at start-up.

use std::collections::BTreeMap;

pub use cvops_core::config::ConfigError;
use cvops_core::config::Vars;
use cvops_core::snapshot::DEFAULT_VAL_FRACTION;

/// What the function is configured with, read once at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchConfig {
    /// Where the accepted images are; the trainer reads the manifest's keys from it.
    pub raw_bucket: String,
    pub store_bucket: String,
    pub models_bucket: String,
    /// Where refused requests go, with their reason.
    pub dead_letter_queue: String,
    /// The trainer's container image (the job definition's on AWS; recorded for lineage).
    pub trainer_image: String,
    /// The command the job runs; empty keeps the job definition's.
    pub trainer_command: Vec<String>,
    pub gpus: u32,
    /// The share of train carved into val when a dataset has no val images (`CVOPS_VAL_FRACTION`).
    pub val_fraction: f64,
    /// More environment for every job (the table's name, endpoints).
    pub job_env: BTreeMap<String, String>,
}

impl DispatchConfig {
    /// The Lambda's configuration: `CVOPS_RAW_BUCKET`, `CVOPS_STORE_BUCKET`,
    /// `CVOPS_MODELS_BUCKET`, `CVOPS_DEAD_LETTER_QUEUE_URL`, `CVOPS_TRAINER_IMAGE` and
    /// `CVOPS_TABLE` (passed on to every job), and [`Self::with_settings`]. The job definition
    /// keeps its own command.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Self {
            raw_bucket: vars.required("CVOPS_RAW_BUCKET")?,
            store_bucket: vars.required("CVOPS_STORE_BUCKET")?,
            models_bucket: vars.required("CVOPS_MODELS_BUCKET")?,
            dead_letter_queue: vars.required("CVOPS_DEAD_LETTER_QUEUE_URL")?,
            trainer_image: vars.required("CVOPS_TRAINER_IMAGE")?,
            trainer_command: Vec::new(),
            gpus: 1,
            val_fraction: DEFAULT_VAL_FRACTION,
            job_env: BTreeMap::from([("CVOPS_TABLE".to_owned(), vars.required("CVOPS_TABLE")?)]),
        }
        .with_settings(vars)
    }

    /// The optional `CVOPS_TRAINING_GPUS` and `CVOPS_VAL_FRACTION` over these values.
    pub fn with_settings(mut self, vars: &Vars) -> Result<Self, ConfigError> {
        if let Some(gpus) = vars.parse("CVOPS_TRAINING_GPUS", "a whole number of GPUs per job, such as 1", |_: &u32| true)? {
            self.gpus = gpus;
        }
        let fraction = "a share of train between 0 and 0.5, such as 0.1 (0: never carve val from train)";
        if let Some(share) = vars.parse("CVOPS_VAL_FRACTION", fraction, |f: &f64| (0.0..=0.5).contains(f))? {
            self.val_fraction = share;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_is_required_and_gpus_default_to_one() {
        let mut pairs = vec![
            ("CVOPS_RAW_BUCKET", "raw"),
            ("CVOPS_STORE_BUCKET", "store"),
            ("CVOPS_MODELS_BUCKET", "models"),
            ("CVOPS_DEAD_LETTER_QUEUE_URL", "dlq"),
            ("CVOPS_TRAINER_IMAGE", "image"),
            ("CVOPS_TABLE", "table"),
        ];
        let config = DispatchConfig::from_vars(&Vars::from_pairs(&pairs)).unwrap();
        assert_eq!((config.gpus, config.job_env["CVOPS_TABLE"].as_str(), config.val_fraction), (1, "table", 0.1));
        let carve = DispatchConfig::from_vars(&Vars::from_pairs(&[pairs.as_slice(), &[("CVOPS_VAL_FRACTION", "0.2")]].concat()));
        assert_eq!(carve.unwrap().val_fraction, 0.2);
        let too_much =
            DispatchConfig::from_vars(&Vars::from_pairs(&[pairs.as_slice(), &[("CVOPS_VAL_FRACTION", "0.9")]].concat()));
        assert_eq!(too_much.unwrap_err().variable, "CVOPS_VAL_FRACTION");
        pairs.push(("CVOPS_TRAINING_GPUS", "two"));
        assert_eq!(DispatchConfig::from_vars(&Vars::from_pairs(&pairs)).unwrap_err().variable, "CVOPS_TRAINING_GPUS");
        pairs.retain(|(name, _)| *name != "CVOPS_TRAINER_IMAGE");
        assert_eq!(DispatchConfig::from_vars(&Vars::from_pairs(&pairs)).unwrap_err().variable, "CVOPS_TRAINER_IMAGE");
    }
}
