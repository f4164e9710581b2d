//! What the monitor is configured with, read once at start-up.

use cvops_core::drift::Thresholds;

use crate::retrain::RetrainRule;

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Where snapshot descriptors (and their baselines) are (`CVOPS_STORE_BUCKET`).
    pub store_bucket: String,
    /// Where retraining requests go (`CVOPS_TRAINING_QUEUE_URL`).
    pub training_queue: String,
    /// Hours in a window (`CVOPS_MONITOR_WINDOW_HOURS`, default 1).
    pub window_hours: u32,
    pub thresholds: Thresholds,
    /// The rule for models without one of their own (`CVOPS_RETRAIN_ON_DRIFT`,
    /// `CVOPS_RETRAIN_MIN_NEW_IMAGES`, `CVOPS_RETRAIN_COOLDOWN_HOURS`).
    pub default_rule: RetrainRule,
}

impl MonitorConfig {
    pub fn new(store_bucket: impl Into<String>, training_queue: impl Into<String>) -> Self {
        Self {
            store_bucket: store_bucket.into(),
            training_queue: training_queue.into(),
            window_hours: 1,
            thresholds: Thresholds::default(),
            default_rule: RetrainRule::default(),
        }
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let required = |name: &str| lookup(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("{name} is not set"));
        let mut config = Self::new(required("CVOPS_STORE_BUCKET")?, required("CVOPS_TRAINING_QUEUE_URL")?);
        let number = |name: &str| -> Result<Option<f64>, String> {
            lookup(name)
                .map(|text| text.parse::<f64>().ok().filter(|v| *v >= 0.0).ok_or(format!("{name} is {text:?}; give a number")))
                .transpose()
        };
        if let Some(hours) = number("CVOPS_MONITOR_WINDOW_HOURS")? {
            config.window_hours = (hours as u32).max(1);
        }
        if let Some(n) = number("CVOPS_MONITOR_MIN_REQUESTS")? {
            config.thresholds.min_requests = n as u64;
        }
        if let Some(text) = lookup("CVOPS_RETRAIN_ON_DRIFT") {
            config.default_rule.on_drift =
                text.parse().map_err(|_| format!("CVOPS_RETRAIN_ON_DRIFT is {text:?}; give true or false"))?;
        }
        if let Some(n) = number("CVOPS_RETRAIN_MIN_NEW_IMAGES")? {
            config.default_rule.min_new_images = (n > 0.0).then_some(n as u64);
        }
        if let Some(hours) = number("CVOPS_RETRAIN_COOLDOWN_HOURS")? {
            config.default_rule.cooldown_hours = hours;
        }
        Ok(config)
    }
}
