//! What ingest is configured with, read once at start-up (see `cvops_core::config`).

use cvops_core::catalog::MAX_NEAR_DUPLICATE_THRESHOLD;
pub use cvops_core::config::ConfigError;
use cvops_core::config::Vars;
use cvops_core::validate::ValidationLimits;

/// Typed configuration, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Where quarantined objects and their sidecars go (never the raw bucket, so ingest is never
    /// triggered by its own writes).
    pub store_bucket: String,
    pub limits: ValidationLimits,
    /// Largest pHash Hamming distance flagged as a near duplicate (0 to 4).
    pub near_duplicate_threshold: u32,
}

impl IngestConfig {
    /// The defaults, writing quarantine to `store_bucket`.
    pub fn new(store_bucket: impl Into<String>) -> Self {
        Self { store_bucket: store_bucket.into(), limits: ValidationLimits::default(), near_duplicate_threshold: 4 }
    }

    /// The Lambda's configuration: `CVOPS_STORE_BUCKET` and [`Self::with_settings`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::env())
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Self::new(vars.required("CVOPS_STORE_BUCKET")?).with_settings(vars)
    }

    /// The optional `CVOPS_MAX_BYTES`, `CVOPS_MAX_PIXELS`, `CVOPS_MAX_DECODED_BYTES`,
    /// `CVOPS_MAX_SIDE`, `CVOPS_MIN_SIDE` and `CVOPS_NEAR_DUPLICATE_THRESHOLD` over these values.
    pub fn with_settings(mut self, vars: &Vars) -> Result<Self, ConfigError> {
        let limits = &mut self.limits;
        let bytes = "a number of bytes, such as 52428800";
        if let Some(v) = vars.parse("CVOPS_MAX_BYTES", bytes, |_| true)? {
            limits.max_bytes = v;
        }
        if let Some(v) = vars.parse("CVOPS_MAX_PIXELS", "a number of pixels, such as 80000000", |_| true)? {
            limits.max_pixels = v;
        }
        if let Some(v) = vars.parse("CVOPS_MAX_DECODED_BYTES", bytes, |_| true)? {
            limits.max_decoded_bytes = v;
        }
        if let Some(v) = vars.parse("CVOPS_MAX_SIDE", "a number of pixels, such as 30000", |_| true)? {
            limits.max_side = v;
        }
        if let Some(v) = vars.parse("CVOPS_MIN_SIDE", "a number of pixels, such as 8", |_| true)? {
            limits.min_side = v;
        }
        let threshold =
            format!("a Hamming distance of at most {MAX_NEAR_DUPLICATE_THRESHOLD}, the farthest the band index finds");
        if let Some(v) = vars.parse("CVOPS_NEAR_DUPLICATE_THRESHOLD", &threshold, |t| *t <= MAX_NEAR_DUPLICATE_THRESHOLD)? {
            self.near_duplicate_threshold = v;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bucket_is_named_in_the_error() {
        let err = IngestConfig::from_vars(&Vars::from_pairs(&[])).unwrap_err();
        assert!(err.to_string().contains("CVOPS_STORE_BUCKET"), "{err}");
    }

    #[test]
    fn limits_and_threshold_come_from_the_environment() {
        let config = IngestConfig::from_vars(&Vars::from_pairs(&[
            ("CVOPS_STORE_BUCKET", "store"),
            ("CVOPS_MIN_SIDE", "32"),
            ("CVOPS_MAX_DECODED_BYTES", "1000000"),
            ("CVOPS_NEAR_DUPLICATE_THRESHOLD", "2"),
        ]))
        .unwrap();
        assert_eq!((config.limits.min_side, config.near_duplicate_threshold, config.limits.max_side), (32, 2, 30_000));
        assert_eq!(config.limits.max_decoded_bytes, 1_000_000);
        let too_far = IngestConfig::from_vars(&Vars::from_pairs(&[
            ("CVOPS_STORE_BUCKET", "store"),
            ("CVOPS_NEAR_DUPLICATE_THRESHOLD", "9"),
        ]));
        assert!(too_far.unwrap_err().to_string().contains("at most 4"));
    }

    #[test]
    fn settings_apply_over_given_resources_without_an_environment_for_them() {
        let local = IngestConfig::new("local-store").with_settings(&Vars::from_pairs(&[("CVOPS_MIN_SIDE", "16")])).unwrap();
        assert_eq!((local.store_bucket.as_str(), local.limits.min_side), ("local-store", 16));
        let bad = IngestConfig::new("s").with_settings(&Vars::from_pairs(&[("CVOPS_MAX_SIDE", "-3")])).unwrap_err();
        assert_eq!(bad.variable, "CVOPS_MAX_SIDE");
    }
}
