//! What the monitor is configured with, read once at start-up.

pub use cvops_core::config::ConfigError;
use cvops_core::config::Vars;
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

    /// The Lambda's configuration: `CVOPS_STORE_BUCKET`, `CVOPS_TRAINING_QUEUE_URL` and
    /// [`Self::with_settings`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Self::new(vars.required("CVOPS_STORE_BUCKET")?, vars.required("CVOPS_TRAINING_QUEUE_URL")?).with_settings(vars)
    }

    /// The optional `CVOPS_MONITOR_WINDOW_HOURS`, `CVOPS_MONITOR_MIN_REQUESTS`,
    /// `CVOPS_RETRAIN_ON_DRIFT`, `CVOPS_RETRAIN_MIN_NEW_IMAGES` (0 turns the trigger off) and
    /// `CVOPS_RETRAIN_COOLDOWN_HOURS` over these values.
    pub fn with_settings(mut self, vars: &Vars) -> Result<Self, ConfigError> {
        // Counts and hours are read as numbers (`1e3` is 1000); a fraction is dropped.
        let number = |v: &f64| *v >= 0.0;
        if let Some(hours) = vars.parse("CVOPS_MONITOR_WINDOW_HOURS", "a number of hours, such as 1", number)? {
            self.window_hours = (hours as u32).max(1);
        }
        if let Some(n) = vars.parse("CVOPS_MONITOR_MIN_REQUESTS", "a number of requests, such as 1000", number)? {
            self.thresholds.min_requests = n as u64;
        }
        if let Some(on) = vars.parse("CVOPS_RETRAIN_ON_DRIFT", "true or false", |_: &bool| true)? {
            self.default_rule.on_drift = on;
        }
        if let Some(n) = vars.parse("CVOPS_RETRAIN_MIN_NEW_IMAGES", "a number of images, 0 for never", number)? {
            self.default_rule.min_new_images = (n > 0.0).then_some(n as u64);
        }
        if let Some(hours) = vars.parse("CVOPS_RETRAIN_COOLDOWN_HOURS", "a number of hours, such as 24", number)? {
            self.default_rule.cooldown_hours = hours;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_and_the_rule_come_from_the_environment() {
        let vars = Vars::from_pairs(&[
            ("CVOPS_STORE_BUCKET", "store"),
            ("CVOPS_TRAINING_QUEUE_URL", "training"),
            ("CVOPS_MONITOR_WINDOW_HOURS", "3"),
            ("CVOPS_RETRAIN_MIN_NEW_IMAGES", "0"),
            ("CVOPS_RETRAIN_ON_DRIFT", "false"),
        ]);
        let config = MonitorConfig::from_vars(&vars).unwrap();
        assert_eq!((config.window_hours, config.default_rule.min_new_images, config.default_rule.on_drift), (3, None, false));
        let at_least_one = MonitorConfig::new("s", "q").with_settings(&Vars::from_pairs(&[("CVOPS_MONITOR_WINDOW_HOURS", "0")]));
        assert_eq!(at_least_one.unwrap().window_hours, 1);
        let counts = Vars::from_pairs(&[("CVOPS_MONITOR_MIN_REQUESTS", "1e3"), ("CVOPS_RETRAIN_MIN_NEW_IMAGES", "2e3")]);
        let counts = MonitorConfig::new("s", "q").with_settings(&counts).unwrap();
        assert_eq!((counts.thresholds.min_requests, counts.default_rule.min_new_images), (1000, Some(2000)));
        let refused = MonitorConfig::new("s", "q").with_settings(&Vars::from_pairs(&[("CVOPS_MONITOR_WINDOW_HOURS", "-1")]));
        assert_eq!(refused.unwrap_err().variable, "CVOPS_MONITOR_WINDOW_HOURS");
        let missing = MonitorConfig::from_vars(&Vars::from_pairs(&[("CVOPS_STORE_BUCKET", "store")])).unwrap_err();
        assert_eq!(missing.variable, "CVOPS_TRAINING_QUEUE_URL");
    }
}
