//! Configuration from the environment: one reader for every function, the job and the local
//! platform, and one error that names the variable and the form it wants.
//!
//! A configuration is built in two parts. The names of the deployed resources (buckets, queues)
//! are required variables on AWS and plain struct values on the local platform, which knows its
//! own. The settings (limits, floors, windows) are optional variables with defaults, read the same
//! way everywhere, so `CVOPS_PROMOTION_FLOOR=0.95` means the same on Lambda and under `cvops`.

use std::str::FromStr;
use std::time::Duration;

/// A variable that is missing or malformed, and what it should hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} {}; give {expected}", describe(found))]
pub struct ConfigError {
    pub variable: String,
    /// What it holds, when it is set.
    pub found: Option<String>,
    pub expected: String,
}

fn describe(found: &Option<String>) -> String {
    match found {
        Some(text) => format!("is {text:?}"),
        None => "is not set".into(),
    }
}

/// What a missing required variable should hold.
const REQUIRED: &str = "the value the deployment sets (the template for a function, dispatch-training for a job)";

/// A variable's value by its name.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the variables come from: the process environment, or given pairs (in tests).
pub struct Vars {
    lookup: Lookup,
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vars")
    }
}

impl Vars {
    /// The process environment.
    pub fn env() -> Self {
        Self { lookup: Box::new(|name| std::env::var(name).ok()) }
    }

    /// Exactly these variables.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self { lookup: Box::new(move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())) }
    }

    /// The variable's text; an empty one counts as unset (templates write `""` for "none").
    pub fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// A variable that must be set, such as a bucket's name: the template sets it for a function,
    /// dispatch-training for a training job.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.text(name).ok_or_else(|| error(name, None, REQUIRED))
    }

    /// An optional variable parsed as `T` and accepted by `valid`; `expected` says what it
    /// should hold, for the error ("an accuracy between 0 and 1, such as 0.9").
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str, valid: impl Fn(&T) -> bool) -> Result<Option<T>, ConfigError> {
        let Some(text) = self.text(name) else { return Ok(None) };
        match text.trim().parse::<T>() {
            Ok(value) if valid(&value) => Ok(Some(value)),
            _ => Err(error(name, Some(text), expected)),
        }
    }

    /// An optional number of seconds, a fraction allowed, accepted by `valid`.
    pub fn seconds(&self, name: &str, expected: &str, valid: impl Fn(f64) -> bool) -> Result<Option<Duration>, ConfigError> {
        Ok(self.parse::<f64>(name, expected, |s| s.is_finite() && *s >= 0.0 && valid(*s))?.map(Duration::from_secs_f64))
    }

    /// An optional switch: `on` or `off`.
    pub fn switch(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.text(name).as_deref() {
            None => Ok(None),
            Some("on") => Ok(Some(true)),
            Some("off") => Ok(Some(false)),
            Some(other) => Err(error(name, Some(other.to_owned()), "on or off")),
        }
    }
}

/// The error for `name`, holding `found`, wanting `expected`.
pub fn error(name: &str, found: Option<String>, expected: &str) -> ConfigError {
    ConfigError { variable: name.to_owned(), found, expected: expected.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable_what_it_holds_and_what_it_should() {
        let vars = Vars::from_pairs(&[("CVOPS_X", "ten"), ("CVOPS_EMPTY", "")]);
        let bad = vars.parse::<u64>("CVOPS_X", "a number of bytes", |_| true).unwrap_err();
        assert_eq!(bad.to_string(), "CVOPS_X is \"ten\"; give a number of bytes");
        let missing = vars.required("CVOPS_EMPTY").unwrap_err();
        assert_eq!(missing.to_string(), format!("CVOPS_EMPTY is not set; give {REQUIRED}"));
        assert_eq!(vars.parse::<u64>("CVOPS_UNSET", "a number", |_| true), Ok(None));
        assert!(vars.parse::<u64>("CVOPS_X", "a number", |_| true).is_err());
        let range = Vars::from_pairs(&[("CVOPS_F", "1.5")]).parse::<f64>("CVOPS_F", "0 to 1", |f| (0.0..=1.0).contains(f));
        assert_eq!(range.unwrap_err().found.as_deref(), Some("1.5"));
        assert_eq!(Vars::from_pairs(&[("CVOPS_S", "off")]).switch("CVOPS_S"), Ok(Some(false)));
        assert_eq!(
            Vars::from_pairs(&[("CVOPS_S", "0.5")]).seconds("CVOPS_S", "seconds", |_| true),
            Ok(Some(Duration::from_millis(500)))
        );
    }
}
