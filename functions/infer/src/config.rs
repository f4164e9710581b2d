//! What the endpoint is configured with, read once at start-up.

use std::time::Duration;

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

    /// `CVOPS_MODELS_BUCKET`, and the optional `CVOPS_MAX_BODY_BYTES`, `CVOPS_INFER_MAX_PIXELS`,
    /// `CVOPS_INFER_MAX_DECODED_BYTES`, `CVOPS_MAX_CONCURRENCY`, `CVOPS_BODY_READ_TIMEOUT_SECONDS`,
    /// `CVOPS_ALIAS_CHECK_SECONDS`, `CVOPS_MONITOR_FLUSH_SECONDS`, `CVOPS_STORE_BUCKET`,
    /// `CVOPS_REVIEW_SAMPLE_EVERY` and `CVOPS_MONITORING`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let bucket = lookup("CVOPS_MODELS_BUCKET").filter(|b| !b.is_empty()).ok_or("CVOPS_MODELS_BUCKET is not set")?;
        let mut config = Self::new(bucket);
        if let Some(text) = lookup("CVOPS_MAX_BODY_BYTES") {
            config.max_body_bytes =
                text.parse().map_err(|_| format!("CVOPS_MAX_BODY_BYTES is {text:?}; give a number of bytes"))?;
        }
        let positive = |name: &str, text: Option<String>, what: &str| -> Result<Option<u64>, String> {
            text.map(|text| {
                text.parse::<u64>().ok().filter(|n| *n > 0).ok_or(format!("{name} is {text:?}; give a positive number of {what}"))
            })
            .transpose()
        };
        if let Some(pixels) = positive("CVOPS_INFER_MAX_PIXELS", lookup("CVOPS_INFER_MAX_PIXELS"), "pixels")? {
            config.max_pixels = pixels;
        }
        if let Some(bytes) = positive("CVOPS_INFER_MAX_DECODED_BYTES", lookup("CVOPS_INFER_MAX_DECODED_BYTES"), "bytes")? {
            config.max_decoded_bytes = bytes;
        }
        if let Some(requests) = positive("CVOPS_MAX_CONCURRENCY", lookup("CVOPS_MAX_CONCURRENCY"), "requests")? {
            config.max_concurrency = usize::try_from(requests).unwrap_or(usize::MAX);
        }
        if let Some(text) = lookup("CVOPS_BODY_READ_TIMEOUT_SECONDS") {
            let seconds: f64 = text
                .parse()
                .ok()
                .filter(|s: &f64| *s > 0.0 && s.is_finite())
                .ok_or_else(|| format!("CVOPS_BODY_READ_TIMEOUT_SECONDS is {text:?}; give a positive number of seconds"))?;
            config.body_read_timeout = Duration::from_secs_f64(seconds);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_limits_and_the_concurrency_come_from_the_environment() {
        let config = InferConfig::from_lookup(|name| match name {
            "CVOPS_MODELS_BUCKET" => Some("models".into()),
            "CVOPS_INFER_MAX_PIXELS" => Some("1000000".into()),
            "CVOPS_INFER_MAX_DECODED_BYTES" => Some("4000000".into()),
            "CVOPS_MAX_CONCURRENCY" => Some("3".into()),
            "CVOPS_BODY_READ_TIMEOUT_SECONDS" => Some("0.5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((config.max_pixels, config.max_decoded_bytes, config.max_concurrency), (1_000_000, 4_000_000, 3));
        assert_eq!(config.body_read_timeout, Duration::from_millis(500));
        let defaults = InferConfig::new("models");
        assert_eq!((defaults.max_pixels, defaults.max_decoded_bytes), (16_000_000, 64 << 20));
        for (name, value) in
            [("CVOPS_MAX_CONCURRENCY", "0"), ("CVOPS_INFER_MAX_PIXELS", "many"), ("CVOPS_BODY_READ_TIMEOUT_SECONDS", "-1")]
        {
            let refused = InferConfig::from_lookup(|n| match n {
                "CVOPS_MODELS_BUCKET" => Some("models".into()),
                n if n == name => Some(value.into()),
                _ => None,
            });
            assert!(refused.unwrap_err().contains(name), "{name}={value}");
        }
    }
}
