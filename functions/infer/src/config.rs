//! What the endpoint is configured with, read once at start-up.

use std::time::Duration;

/// Lambda's synchronous payload limit, and the default here.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6_000_000;
pub const DEFAULT_ALIAS_CHECK: Duration = Duration::from_secs(10);
pub const DEFAULT_MONITOR_FLUSH: Duration = Duration::from_secs(10);
/// One low-confidence input in this many is kept for review.
pub const DEFAULT_REVIEW_SAMPLE_EVERY: u64 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct InferConfig {
    pub models_bucket: String,
    /// Bodies over this many bytes get 413 (`CVOPS_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// How often, at most, the production alias is read again (`CVOPS_ALIAS_CHECK_SECONDS`).
    pub alias_check: Duration,
    /// Required as `Authorization: Bearer <key>` when set (local mode). On AWS the function URL
    /// checks IAM instead, and this is `None`.
    pub api_key: Option<String>,
    /// How often the monitoring aggregates are written (`CVOPS_MONITOR_FLUSH_SECONDS`).
    pub monitor_flush: Duration,
    /// The store bucket, where sampled low-confidence inputs go (`CVOPS_STORE_BUCKET`, optional).
    pub review_bucket: Option<String>,
    /// `CVOPS_REVIEW_SAMPLE_EVERY`.
    pub review_sample_every: u64,
    /// The monitoring feed (`CVOPS_MONITORING`, `on` or `off`; on by default). Off is for
    /// measuring what it costs.
    pub monitoring: bool,
}

impl InferConfig {
    pub fn new(models_bucket: impl Into<String>) -> Self {
        Self {
            models_bucket: models_bucket.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            alias_check: DEFAULT_ALIAS_CHECK,
            api_key: None,
            monitor_flush: DEFAULT_MONITOR_FLUSH,
            review_bucket: None,
            review_sample_every: DEFAULT_REVIEW_SAMPLE_EVERY,
            monitoring: true,
        }
    }

    /// `CVOPS_MODELS_BUCKET`, and the optional `CVOPS_MAX_BODY_BYTES`, `CVOPS_ALIAS_CHECK_SECONDS`,
    /// `CVOPS_MONITOR_FLUSH_SECONDS`, `CVOPS_STORE_BUCKET`, `CVOPS_REVIEW_SAMPLE_EVERY` and
    /// `CVOPS_MONITORING`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let bucket = lookup("CVOPS_MODELS_BUCKET").filter(|b| !b.is_empty()).ok_or("CVOPS_MODELS_BUCKET is not set")?;
        let mut config = Self::new(bucket);
        if let Some(text) = lookup("CVOPS_MAX_BODY_BYTES") {
            config.max_body_bytes =
                text.parse().map_err(|_| format!("CVOPS_MAX_BODY_BYTES is {text:?}; give a number of bytes"))?;
        }
        if let Some(text) = lookup("CVOPS_ALIAS_CHECK_SECONDS") {
            let seconds: f64 = text.parse().map_err(|_| format!("CVOPS_ALIAS_CHECK_SECONDS is {text:?}; give seconds"))?;
            config.alias_check = Duration::from_secs_f64(seconds.max(0.0));
        }
        if let Some(text) = lookup("CVOPS_MONITOR_FLUSH_SECONDS") {
            let seconds: f64 = text
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0)
                .ok_or_else(|| format!("CVOPS_MONITOR_FLUSH_SECONDS is {text:?}; give a positive number of seconds"))?;
            config.monitor_flush = Duration::from_secs_f64(seconds);
        }
        config.review_bucket = lookup("CVOPS_STORE_BUCKET").filter(|b| !b.is_empty());
        if let Some(text) = lookup("CVOPS_REVIEW_SAMPLE_EVERY") {
            config.review_sample_every = text
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("CVOPS_REVIEW_SAMPLE_EVERY is {text:?}; give a positive whole number"))?;
        }
        config.monitoring = match lookup("CVOPS_MONITORING").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(format!("CVOPS_MONITORING is {other:?}; give on or off")),
        };
        Ok(config)
    }
}
