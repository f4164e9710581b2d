//! What the endpoint is configured with, read once at start-up.

use std::time::Duration;

pub use cvops_core::config::ConfigError;
use cvops_core::config::Vars;

/// Lambda's synchronous payload limit, and the default here.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6_000_000;
pub const DEFAULT_ALIAS_CHECK: Duration = Duration::from_secs(10);
pub const DEFAULT_MONITOR_FLUSH: Duration = Duration::from_secs(10);
/// One low-confidence input in this many is kept for review.
pub const DEFAULT_REVIEW_SAMPLE_EVERY: u64 = 10;
/// The endpoint's own image limits, far under ingest's: a request is one image for one model
/// input, and the infer Lambda has 1 GB for everything.
pub const DEFAULT_MAX_PIXELS: u64 = 16_000_000;
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 64 << 20;
/// Requests in flight at once; more get 503 with `Retry-After`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// A request body must have arrived within this.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct InferConfig {
    pub models_bucket: String,
    /// Bodies over this many bytes get 413 (`CVOPS_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Images over this many pixels get 413 before they are decoded (`CVOPS_INFER_MAX_PIXELS`).
    pub max_pixels: u64,
    /// The decode budget: images whose decoded pixels would take more bytes than this (width x
    /// height x channels x bytes per sample, from the header) get 413 before they are decoded
    /// (`CVOPS_INFER_MAX_DECODED_BYTES`).
    pub max_decoded_bytes: u64,
    /// Requests in flight at once under `/v1`; more get 503 `overloaded` with `Retry-After`
    /// (`CVOPS_MAX_CONCURRENCY`). `/healthz` is never refused.
    pub max_concurrency: usize,
    /// A request body not complete within this gets 408 (`CVOPS_BODY_READ_TIMEOUT_SECONDS`).
    pub body_read_timeout: Duration,
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
    /// What an image may be at the endpoint: the body limit, its pixel limit and decode budget.
    pub fn limits(&self) -> cvops_core::validate::ValidationLimits {
        cvops_core::validate::ValidationLimits {
            max_bytes: self.max_body_bytes as u64,
            max_pixels: self.max_pixels,
            max_decoded_bytes: self.max_decoded_bytes,
            ..cvops_core::validate::ValidationLimits::default()
        }
    }

    pub fn new(models_bucket: impl Into<String>) -> Self {
        Self {
            models_bucket: models_bucket.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            alias_check: DEFAULT_ALIAS_CHECK,
            api_key: None,
            monitor_flush: DEFAULT_MONITOR_FLUSH,
            review_bucket: None,
            review_sample_every: DEFAULT_REVIEW_SAMPLE_EVERY,
            monitoring: true,
        }
    }

    /// The Lambda's configuration: `CVOPS_MODELS_BUCKET`, the optional `CVOPS_STORE_BUCKET` (where
    /// low-confidence inputs are sampled for review) and [`Self::with_settings`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config = Self::new(vars.required("CVOPS_MODELS_BUCKET")?);
        config.review_bucket = vars.text("CVOPS_STORE_BUCKET");
        config.with_settings(vars)
    }

    /// The optional `CVOPS_MAX_BODY_BYTES`, `CVOPS_INFER_MAX_PIXELS`,
    /// `CVOPS_INFER_MAX_DECODED_BYTES`, `CVOPS_MAX_CONCURRENCY`, `CVOPS_BODY_READ_TIMEOUT_SECONDS`,
    /// `CVOPS_ALIAS_CHECK_SECONDS`, `CVOPS_MONITOR_FLUSH_SECONDS`, `CVOPS_REVIEW_SAMPLE_EVERY`
    /// and `CVOPS_MONITORING` over these values.
    pub fn with_settings(mut self, vars: &Vars) -> Result<Self, ConfigError> {
        let positive = |n: &u64| *n > 0;
        if let Some(bytes) = vars.parse("CVOPS_MAX_BODY_BYTES", "a number of bytes, such as 6000000", |_: &usize| true)? {
            self.max_body_bytes = bytes;
        }
        if let Some(pixels) = vars.parse("CVOPS_INFER_MAX_PIXELS", "a positive number of pixels", positive)? {
            self.max_pixels = pixels;
        }
        if let Some(bytes) = vars.parse("CVOPS_INFER_MAX_DECODED_BYTES", "a positive number of bytes", positive)? {
            self.max_decoded_bytes = bytes;
        }
        if let Some(requests) = vars.parse("CVOPS_MAX_CONCURRENCY", "a positive number of requests", |n: &usize| *n > 0)? {
            self.max_concurrency = requests;
        }
        let seconds = "a positive number of seconds";
        if let Some(timeout) = vars.seconds("CVOPS_BODY_READ_TIMEOUT_SECONDS", seconds, |s| s > 0.0)? {
            self.body_read_timeout = timeout;
        }
        // A negative interval is 0: check on every request.
        let alias_check = "a number of seconds, 0 to check on every request";
        if let Some(every) = vars.parse("CVOPS_ALIAS_CHECK_SECONDS", alias_check, |s: &f64| s.is_finite())? {
            self.alias_check = Duration::from_secs_f64(every.max(0.0));
        }
        if let Some(every) = vars.seconds("CVOPS_MONITOR_FLUSH_SECONDS", seconds, |s| s > 0.0)? {
            self.monitor_flush = every;
        }
        if let Some(every) = vars.parse("CVOPS_REVIEW_SAMPLE_EVERY", "a positive whole number", positive)? {
            self.review_sample_every = every;
        }
        if let Some(on) = vars.switch("CVOPS_MONITORING")? {
            self.monitoring = on;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_limits_and_the_concurrency_come_from_the_environment() {
        let config = InferConfig::from_vars(&Vars::from_pairs(&[
            ("CVOPS_MODELS_BUCKET", "models"),
            ("CVOPS_INFER_MAX_PIXELS", "1000000"),
            ("CVOPS_INFER_MAX_DECODED_BYTES", "4000000"),
            ("CVOPS_MAX_CONCURRENCY", "3"),
            ("CVOPS_BODY_READ_TIMEOUT_SECONDS", "0.5"),
        ]))
        .unwrap();
        assert_eq!((config.max_pixels, config.max_decoded_bytes, config.max_concurrency), (1_000_000, 4_000_000, 3));
        assert_eq!(config.body_read_timeout, Duration::from_millis(500));
        let defaults = InferConfig::new("models");
        assert_eq!((defaults.max_pixels, defaults.max_decoded_bytes), (16_000_000, 64 << 20));
        for (name, value) in
            [("CVOPS_MAX_CONCURRENCY", "0"), ("CVOPS_INFER_MAX_PIXELS", "many"), ("CVOPS_BODY_READ_TIMEOUT_SECONDS", "-1")]
        {
            let refused = InferConfig::from_vars(&Vars::from_pairs(&[("CVOPS_MODELS_BUCKET", "models"), (name, value)]));
            assert_eq!(refused.unwrap_err().variable, name, "{name}={value}");
        }
    }
}
