//! S3's `sequencer`: the order of events for one key.
//!
//! AWS documents the comparison: right-pad the shorter hexadecimal string with zeros, then compare
//! as strings. Only events for the same key are comparable.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sequencer(String);

impl Sequencer {
    /// Trailing zeros are dropped, so that equal positions compare equal (`0A` == `0A00`).
    pub fn new(hex: impl Into<String>) -> Self {
        let upper = hex.into().to_ascii_uppercase();
        Self(upper.trim_end_matches('0').to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for Sequencer {
    fn cmp(&self, other: &Self) -> Ordering {
        let width = self.0.len().max(other.0.len());
        let pad = |s: &str| format!("{s:0<width$}");
        pad(&self.0).cmp(&pad(&other.0))
    }
}

impl PartialOrd for Sequencer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_sequencers_are_right_padded_before_comparing() {
        assert!(Sequencer::new("0A") > Sequencer::new("09FF"));
        assert!(Sequencer::new("0055B39E53A4A2A3D9") < Sequencer::new("0055B39E53A4A2A3DA"));
        assert_eq!(Sequencer::new("0a"), Sequencer::new("0A00"));
    }
}
