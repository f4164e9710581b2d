use cvops_core::catalog::MAX_NEAR_DUPLICATE_THRESHOLD;
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} = {value:?} is invalid: {why}")]
    Invalid { name: &'static str, value: String, why: String },
}

impl IngestConfig {
    pub fn new(store_bucket: impl Into<String>) -> Self {
        Self { store_bucket: store_bucket.into(), limits: ValidationLimits::default(), near_duplicate_threshold: 4 }
    }

    /// Reads `CVOPS_STORE_BUCKET` (required) and the optional `CVOPS_MAX_BYTES`,
    /// `CVOPS_MAX_PIXELS`, `CVOPS_MAX_DECODED_BYTES`, `CVOPS_MAX_SIDE`, `CVOPS_MIN_SIDE` and `CVOPS_NEAR_DUPLICATE_THRESHOLD`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let store_bucket = lookup("CVOPS_STORE_BUCKET").ok_or(ConfigError::Missing("CVOPS_STORE_BUCKET"))?;
        let mut config = Self::new(store_bucket);
        let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
            lookup(name)
                .map(|value| value.parse::<u64>().map_err(|e| ConfigError::Invalid { name, value, why: e.to_string() }))
                .transpose()
        };
        let narrow = |name: &'static str, v: u64| -> Result<u32, ConfigError> {
            u32::try_from(v).map_err(|e| ConfigError::Invalid { name, value: v.to_string(), why: e.to_string() })
        };
        if let Some(v) = number("CVOPS_MAX_BYTES")? {
            config.limits.max_bytes = v;
        }
        if let Some(v) = number("CVOPS_MAX_PIXELS")? {
            config.limits.max_pixels = v;
        }
        if let Some(v) = number("CVOPS_MAX_DECODED_BYTES")? {
            config.limits.max_decoded_bytes = v;
        }
        if let Some(v) = number("CVOPS_MAX_SIDE")? {
            config.limits.max_side = narrow("CVOPS_MAX_SIDE", v)?;
        }
        if let Some(v) = number("CVOPS_MIN_SIDE")? {
            config.limits.min_side = narrow("CVOPS_MIN_SIDE", v)?;
        }
        if let Some(v) = number("CVOPS_NEAR_DUPLICATE_THRESHOLD")? {
            let threshold = narrow("CVOPS_NEAR_DUPLICATE_THRESHOLD", v)?;
            if threshold > MAX_NEAR_DUPLICATE_THRESHOLD {
                return Err(ConfigError::Invalid {
                    name: "CVOPS_NEAR_DUPLICATE_THRESHOLD",
                    value: v.to_string(),
                    why: format!("at most {MAX_NEAR_DUPLICATE_THRESHOLD}: the band index finds every pair up to that distance"),
                });
            }
            config.near_duplicate_threshold = threshold;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bucket_is_named_in_the_error() {
        let err = IngestConfig::from_lookup(|_| None).unwrap_err();
        assert!(err.to_string().contains("CVOPS_STORE_BUCKET"), "{err}");
    }

    #[test]
    fn limits_and_threshold_come_from_the_environment() {
        let config = IngestConfig::from_lookup(|name| match name {
            "CVOPS_STORE_BUCKET" => Some("store".into()),
            "CVOPS_MIN_SIDE" => Some("32".into()),
            "CVOPS_MAX_DECODED_BYTES" => Some("1000000".into()),
            "CVOPS_NEAR_DUPLICATE_THRESHOLD" => Some("2".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((config.limits.min_side, config.near_duplicate_threshold, config.limits.max_side), (32, 2, 30_000));
        assert_eq!(config.limits.max_decoded_bytes, 1_000_000);
        let too_far = IngestConfig::from_lookup(|name| match name {
            "CVOPS_STORE_BUCKET" => Some("store".into()),
            "CVOPS_NEAR_DUPLICATE_THRESHOLD" => Some("9".into()),
            _ => None,
        });
        assert!(too_far.unwrap_err().to_string().contains("at most 4"));
    }
}
