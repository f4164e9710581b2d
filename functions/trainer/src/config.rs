//! What the job is told, read once from the environment dispatch-training gives it (the same on
//! AWS Batch and in a local child process), and the typed hyperparameters.

use std::collections::BTreeMap;

pub use cvops_core::config::ConfigError;
use cvops_core::config::{self, Vars};
use cvops_core::task::Task;

/// Everything the job needs to know, from `CVOPS_*` and `AWS_BATCH_JOB_ARRAY_INDEX`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerConfig {
    pub run_id: String,
    pub model: String,
    pub dataset: String,
    pub snapshot: String,
    /// The snapshot descriptor's key in the store bucket.
    pub snapshot_descriptor: String,
    pub store_bucket: String,
    /// Where the accepted images are (the manifest's keys).
    pub raw_bucket: String,
    pub models_bucket: String,
    /// This child's sweep point (0 for a single job).
    pub point: u32,
    pub hyperparameters: Hyperparameters,
    /// The raw values of the point, recorded in the card.
    pub hyperparameter_values: BTreeMap<String, f64>,
}

impl TrainerConfig {
    /// The point's hyperparameters over the task's defaults (a detection snapshot trains the
    /// reference detector, whose defaults differ).
    pub fn hyperparameters_for(&self, task: Task) -> Hyperparameters {
        match task {
            Task::Classification => self.hyperparameters.clone(),
            // The values were checked when the config was read.
            Task::Detection => Hyperparameters::from_values_over(Hyperparameters::detection(), &self.hyperparameter_values)
                .unwrap_or_else(|_| Hyperparameters::detection()),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let point =
            vars.parse("AWS_BATCH_JOB_ARRAY_INDEX", "the array child's index, a whole number", |_: &u32| true)?.unwrap_or(0);
        let points_form = "a JSON list of points, such as [{\"epochs\": 5}]";
        let points: Vec<BTreeMap<String, f64>> = match vars.text("CVOPS_HYPERPARAMETER_POINTS") {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| config::error("CVOPS_HYPERPARAMETER_POINTS", Some(json.clone()), &format!("{points_form} ({e})")))?,
            None => Vec::new(),
        };
        let values = match points.get(point as usize) {
            Some(values) => values.clone(),
            None if points.is_empty() => BTreeMap::new(),
            None => {
                let expected = format!("an index under {}, the number of hyperparameter points", points.len());
                return Err(config::error("AWS_BATCH_JOB_ARRAY_INDEX", Some(point.to_string()), &expected));
            }
        };
        let hyperparameters = Hyperparameters::from_values(&values).map_err(|reason| {
            config::error(
                "CVOPS_HYPERPARAMETER_POINTS",
                vars.text("CVOPS_HYPERPARAMETER_POINTS"),
                &format!("known hyperparameters ({reason})"),
            )
        })?;
        Ok(Self {
            run_id: vars.required("CVOPS_RUN_ID")?,
            model: vars.required("CVOPS_MODEL")?,
            dataset: vars.required("CVOPS_DATASET")?,
            snapshot: vars.required("CVOPS_SNAPSHOT")?,
            snapshot_descriptor: vars.required("CVOPS_SNAPSHOT_DESCRIPTOR")?,
            store_bucket: vars.required("CVOPS_STORE_BUCKET")?,
            raw_bucket: vars.required("CVOPS_RAW_BUCKET")?,
            models_bucket: vars.required("CVOPS_MODELS_BUCKET")?,
            point,
            hyperparameters,
            hyperparameter_values: values,
        })
    }
}

/// The reference detector's default epochs.
pub const DETECTION_EPOCHS: u32 = 30;

/// The trainer's knobs. Names and ranges are dispatch-training's `HYPERPARAMETERS`; requests are
/// checked there, so values here are already in range. The defaults depend on the task
/// ([`TrainerConfig::hyperparameters_for`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Hyperparameters {
    pub epochs: u32,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation accuracy before stopping early.
    pub patience: u32,
    /// Square input side; `None` picks it from the data (the typical short side, 16..=64).
    pub image_size: Option<u32>,
    /// Channels of the first block (then 2x and 4x).
    pub width: usize,
    /// The largest random shift, in pixels, of the training augmentation.
    pub shift: u32,
    /// 1 to also flip training images left-right (not for digits or text).
    pub flip: bool,
    pub seed: u64,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            learning_rate: 1e-2,
            weight_decay: 1e-4,
            patience: 8,
            image_size: None,
            width: 16,
            shift: 2,
            flip: false,
            seed: 0,
        }
    }
}

impl Hyperparameters {
    /// The reference detector's defaults, where they differ from the classifier's: more epochs
    /// and small batches (a detection set has fewer images: on detect-digits batches of 8 at a
    /// rate of 0.002 beat batches of 32 at 0.004 by 0.09 val mAP@0.5 in the same 30 epochs), and
    /// more patience, as val mAP moves in steps on a small val split.
    pub fn detection() -> Self {
        Self { epochs: DETECTION_EPOCHS, batch_size: 8, learning_rate: 2e-3, weight_decay: 5e-4, patience: 12, ..Self::default() }
    }

    /// The classifier's defaults with `values` over them.
    pub fn from_values(values: &BTreeMap<String, f64>) -> Result<Self, String> {
        Self::from_values_over(Self::default(), values)
    }

    /// `base` with `values` over it.
    pub fn from_values_over(base: Self, values: &BTreeMap<String, f64>) -> Result<Self, String> {
        let mut h = base;
        for (name, &value) in values {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{name} = {value} must be a finite, non-negative number"));
            }
            match name.as_str() {
                "epochs" => h.epochs = value as u32,
                "batch_size" => h.batch_size = (value as usize).max(1),
                "learning_rate" => h.learning_rate = value,
                "weight_decay" => h.weight_decay = value,
                "patience" => h.patience = (value as u32).max(1),
                "image_size" => h.image_size = Some(value as u32),
                "width" => h.width = (value as usize).max(1),
                "shift" => h.shift = value as u32,
                "flip" => h.flip = value >= 0.5,
                "seed" => h.seed = value as u64,
                other => return Err(format!("{other} is not a hyperparameter of the trainer")),
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_pairs(pairs)
    }

    const BASE: [(&str, &str); 8] = [
        ("CVOPS_RUN_ID", "r1"),
        ("CVOPS_MODEL", "digits"),
        ("CVOPS_DATASET", "digits"),
        ("CVOPS_SNAPSHOT", "s1"),
        ("CVOPS_SNAPSHOT_DESCRIPTOR", "snapshots/digits/s1.json"),
        ("CVOPS_STORE_BUCKET", "store"),
        ("CVOPS_RAW_BUCKET", "raw"),
        ("CVOPS_MODELS_BUCKET", "models"),
    ];

    #[test]
    fn an_array_child_takes_its_point() {
        let mut pairs = BASE.to_vec();
        pairs.push(("CVOPS_HYPERPARAMETER_POINTS", r#"[{"epochs":2},{"epochs":5,"width":8}]"#));
        pairs.push(("AWS_BATCH_JOB_ARRAY_INDEX", "1"));
        let config = TrainerConfig::from_vars(&env(&pairs)).unwrap();
        assert_eq!((config.point, config.hyperparameters.epochs, config.hyperparameters.width), (1, 5, 8));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let pairs: Vec<_> = BASE.iter().filter(|(k, _)| *k != "CVOPS_RAW_BUCKET").copied().collect();
        assert_eq!(TrainerConfig::from_vars(&env(&pairs)).unwrap_err().variable, "CVOPS_RAW_BUCKET");
    }

    #[test]
    fn unknown_hyperparameters_are_refused() {
        assert!(Hyperparameters::from_values(&BTreeMap::from([("dropout".to_string(), 0.1)])).is_err());
    }
}
