//! What register-model is configured with, read once at start-up.

/// The accuracy a model needs, at the least, to be promoted when no floor is configured.
pub const DEFAULT_PROMOTION_FLOOR: f64 = 0.9;

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterConfig {
    /// Where the images of the test split are.
    pub raw_bucket: String,
    /// Where snapshots are.
    pub store_bucket: String,
    pub models_bucket: String,
    /// The least test accuracy a version needs to be promoted (`CVOPS_PROMOTION_FLOOR`).
    pub promotion_floor: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("CVOPS_PROMOTION_FLOOR is {0:?}; give an accuracy between 0 and 1, such as 0.9")]
    BadFloor(String),
}

impl RegisterConfig {
    /// The gate of a model that has none of its own (`cvops gate` sets one).
    pub fn default_gate(&self) -> cvops_core::registry::GatePolicy {
        cvops_core::registry::GatePolicy::with_floor(self.promotion_floor)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| lookup(name).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name));
        let promotion_floor = match lookup("CVOPS_PROMOTION_FLOOR") {
            Some(text) => text.parse::<f64>().ok().filter(|f| (0.0..=1.0).contains(f)).ok_or(ConfigError::BadFloor(text))?,
            None => DEFAULT_PROMOTION_FLOOR,
        };
        Ok(Self {
            raw_bucket: required("CVOPS_RAW_BUCKET")?,
            store_bucket: required("CVOPS_STORE_BUCKET")?,
            models_bucket: required("CVOPS_MODELS_BUCKET")?,
            promotion_floor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_must_be_an_accuracy() {
        let lookup = |floor: &'static str| {
            move |name: &str| match name {
                "CVOPS_PROMOTION_FLOOR" => Some(floor.to_owned()),
                _ => Some("bucket".to_owned()),
            }
        };
        assert_eq!(RegisterConfig::from_lookup(lookup("0.95")).unwrap().promotion_floor, 0.95);
        assert!(RegisterConfig::from_lookup(lookup("95")).is_err());
    }
}
