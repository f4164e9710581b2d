//! What register-model is configured with, read once at start-up (see `cvops_core::config`).

pub use cvops_core::config::ConfigError;
use cvops_core::config::Vars;
use cvops_core::task::Task;

/// The accuracy a classifier needs, at the least, to be promoted when no floor is configured.
pub const DEFAULT_PROMOTION_FLOOR: f64 = 0.9;
/// The mAP@0.5 a detector needs when no floor is configured. Lower than a classifier's accuracy
/// floor because the figure runs lower: the best detectors score about 0.7 on COCO.
pub const DEFAULT_DETECTION_PROMOTION_FLOOR: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterConfig {
    /// Where the images of the test split are.
    pub raw_bucket: String,
    /// Where snapshots are.
    pub store_bucket: String,
    pub models_bucket: String,
    /// The least test accuracy a classifier needs to be promoted (`CVOPS_PROMOTION_FLOOR`).
    pub promotion_floor: f64,
    /// The least test mAP@0.5 a detector needs (`CVOPS_DETECTION_PROMOTION_FLOOR`).
    pub detection_promotion_floor: f64,
}

impl RegisterConfig {
    /// The defaults over these buckets.
    pub fn new(raw_bucket: impl Into<String>, store_bucket: impl Into<String>, models_bucket: impl Into<String>) -> Self {
        Self {
            raw_bucket: raw_bucket.into(),
            store_bucket: store_bucket.into(),
            models_bucket: models_bucket.into(),
            promotion_floor: DEFAULT_PROMOTION_FLOOR,
            detection_promotion_floor: DEFAULT_DETECTION_PROMOTION_FLOOR,
        }
    }

    /// The gate of a model of `task` that has none of its own (`cvops gate` sets one).
    pub fn default_gate(&self, task: Task) -> cvops_core::registry::GatePolicy {
        cvops_core::registry::GatePolicy::with_floor(match task {
            Task::Classification => self.promotion_floor,
            Task::Detection => self.detection_promotion_floor,
        })
    }

    /// The Lambda's configuration: `CVOPS_RAW_BUCKET`, `CVOPS_STORE_BUCKET`,
    /// `CVOPS_MODELS_BUCKET` and [`Self::with_settings`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Self::new(vars.required("CVOPS_RAW_BUCKET")?, vars.required("CVOPS_STORE_BUCKET")?, vars.required("CVOPS_MODELS_BUCKET")?)
            .with_settings(vars)
    }

    /// The optional `CVOPS_PROMOTION_FLOOR` and `CVOPS_DETECTION_PROMOTION_FLOOR` over these
    /// values.
    pub fn with_settings(mut self, vars: &Vars) -> Result<Self, ConfigError> {
        let accuracy = "an accuracy between 0 and 1, such as 0.9";
        if let Some(floor) = vars.parse("CVOPS_PROMOTION_FLOOR", accuracy, |f: &f64| (0.0..=1.0).contains(f))? {
            self.promotion_floor = floor;
        }
        let map50 = "an mAP@0.5 between 0 and 1, such as 0.5";
        if let Some(floor) = vars.parse("CVOPS_DETECTION_PROMOTION_FLOOR", map50, |f: &f64| (0.0..=1.0).contains(f))? {
            self.detection_promotion_floor = floor;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_must_be_an_accuracy() {
        let vars = |floor: &str| {
            Vars::from_pairs(&[
                ("CVOPS_PROMOTION_FLOOR", floor),
                ("CVOPS_RAW_BUCKET", "bucket"),
                ("CVOPS_STORE_BUCKET", "bucket"),
                ("CVOPS_MODELS_BUCKET", "bucket"),
            ])
        };
        assert_eq!(RegisterConfig::from_vars(&vars("0.95")).unwrap().promotion_floor, 0.95);
        let refused = RegisterConfig::from_vars(&vars("95")).unwrap_err();
        assert_eq!(refused.to_string(), "CVOPS_PROMOTION_FLOOR is \"95\"; give an accuracy between 0 and 1, such as 0.9");
    }
}
