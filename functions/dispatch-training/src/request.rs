//! Training requests: the JSON body of a message on the training queue.
//!
//! ```json
//! {"dataset": "digits", "model": "digits-cnn", "snapshot": null,
//!  "hyperparameters": {"epochs": 12, "learning_rate": 0.002},
//!  "sweep": {"learning_rate": [0.001, 0.002, 0.004]},
//!  "request_id": "3f6c...", "reason": "manual"}
//! ```

use std::collections::BTreeMap;

use cvops_core::key::DatasetName;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hyperparameters the reference trainer understands, with their allowed ranges.
pub const HYPERPARAMETERS: [(&str, f64, f64); 10] = [
    ("epochs", 1.0, 1000.0),
    ("batch_size", 1.0, 4096.0),
    ("learning_rate", 1e-7, 1.0),
    ("weight_decay", 0.0, 1.0),
    ("patience", 1.0, 100.0),
    ("image_size", 8.0, 1024.0),
    ("width", 4.0, 256.0),
    ("shift", 0.0, 16.0),
    ("flip", 0.0, 1.0),
    ("seed", 0.0, 4294967295.0),
];
/// The most points one sweep may expand to (one Batch array job).
pub const MAX_SWEEP_POINTS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRequest {
    pub dataset: String,
    pub model: String,
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, f64>,
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<f64>>,
    /// Makes a deliberate repeat a new run; redeliveries of one message share it.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Why the run was asked for: "manual", "drift", "new_data", ...
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a request is refused. Each code is stable; the message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed_request: {0}")]
    Malformed(String),
    #[error("bad_hyperparameter: {0}")]
    BadHyperparameter(String),
    #[error("unknown_dataset: no dataset {0:?}; upload images first (cvops upload, or aws s3 cp to the raw bucket)")]
    UnknownDataset(String),
    #[error("empty_dataset: dataset {0:?} has no accepted images; see `cvops images --dataset {0} --status rejected`")]
    EmptyDataset(String),
    #[error("unknown_snapshot: dataset {dataset:?} has no snapshot {snapshot:?}; omit it to snapshot the dataset now")]
    UnknownSnapshot { dataset: String, snapshot: String },
    #[error(
        "missing_split: dataset {dataset:?} has no {split} images ({counts}), and a model needs train and val images; \
         upload some under datasets/{dataset}/{split}/<label>/, or upload the images without split folders to have each \
         split by its content hash (80/10/10)"
    )]
    MissingSplit { dataset: String, split: &'static str, counts: String },
    #[error("no_class_names: dataset {0:?} has label files but no data.yaml; upload one with `names: [a, b, ...]` to datasets/{0}/data.yaml")]
    NoClassNames(String),
}

impl RequestError {
    /// The stable code, for the dead-letter message's attributes.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "malformed_request",
            RequestError::BadHyperparameter(_) => "bad_hyperparameter",
            RequestError::UnknownDataset(_) => "unknown_dataset",
            RequestError::EmptyDataset(_) => "empty_dataset",
            RequestError::UnknownSnapshot { .. } => "unknown_snapshot",
            RequestError::MissingSplit { .. } => "missing_split",
            RequestError::NoClassNames(_) => "no_class_names",
        }
    }
}

fn check_value(name: &str, value: f64) -> Result<(), RequestError> {
    let (_, low, high) = HYPERPARAMETERS.iter().find(|(known, _, _)| *known == name).ok_or_else(|| {
        let known: Vec<&str> = HYPERPARAMETERS.iter().map(|(n, _, _)| *n).collect();
        RequestError::BadHyperparameter(format!("{name:?} is not a hyperparameter of the trainer; use one of {known:?}"))
    })?;
    if !value.is_finite() || value < *low || value > *high {
        return Err(RequestError::BadHyperparameter(format!("{name} = {value} is outside [{low}, {high}]")));
    }
    Ok(())
}

impl TrainingRequest {
    /// Parses and validates a message body.
    pub fn parse(body: &str) -> Result<Self, RequestError> {
        let request: Self =
            serde_json::from_str(body).map_err(|e| RequestError::Malformed(format!("{e}; see events/training-request.json")))?;
        request.validate()?;
        Ok(request)
    }

    pub fn validate(&self) -> Result<(), RequestError> {
        DatasetName::parse(&self.dataset).map_err(RequestError::Malformed)?;
        DatasetName::parse(&self.model).map_err(|e| RequestError::Malformed(format!("model: {e}")))?;
        for (name, value) in &self.hyperparameters {
            check_value(name, *value)?;
        }
        for (name, values) in &self.sweep {
            if values.is_empty() {
                return Err(RequestError::BadHyperparameter(format!("sweep over {name} lists no values")));
            }
            for value in values {
                check_value(name, *value)?;
            }
        }
        let points: usize = self.sweep.values().map(Vec::len).product();
        if points > MAX_SWEEP_POINTS {
            return Err(RequestError::BadHyperparameter(format!(
                "the sweep has {points} points, over the {MAX_SWEEP_POINTS} one array job may have"
            )));
        }
        Ok(())
    }

    /// Every point of the sweep (the cartesian product, in a stable order), each the base
    /// hyperparameters with the swept values laid over them. One point when there is no sweep.
    pub fn points(&self) -> Vec<BTreeMap<String, f64>> {
        let mut points = vec![self.hyperparameters.clone()];
        for (name, values) in &self.sweep {
            points = points
                .into_iter()
                .flat_map(|point| {
                    values.iter().map(move |v| {
                        let mut p = point.clone();
                        p.insert(name.clone(), *v);
                        p
                    })
                })
                .collect();
        }
        points
    }

    /// A stable id from the request's content: fields serialise in declaration order and the
    /// maps are sorted, so the same request always gives the same bytes.
    pub fn run_id(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a request serialises");
        format!("run-{}", &hex::encode(Sha256::digest(canonical))[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_expands_to_its_cartesian_product_over_the_base_values() {
        let request = TrainingRequest::parse(
            r#"{"dataset": "digits", "model": "cnn", "hyperparameters": {"epochs": 5, "learning_rate": 0.01},
                "sweep": {"learning_rate": [0.001, 0.002], "batch_size": [32, 64, 128]}}"#,
        )
        .unwrap();
        let points = request.points();
        assert_eq!(points.len(), 6);
        assert!(points.iter().all(|p| p["epochs"] == 5.0));
        assert_eq!((points[0]["batch_size"], points[0]["learning_rate"]), (32.0, 0.001));
        assert_eq!((points[5]["batch_size"], points[5]["learning_rate"]), (128.0, 0.002));
    }

    #[test]
    fn bad_requests_are_refused_with_a_code_that_says_why() {
        for (body, code) in [
            ("not json", "malformed_request"),
            (r#"{"dataset": "digits"}"#, "malformed_request"),
            (r#"{"dataset": "Bad Name", "model": "m"}"#, "malformed_request"),
            (r#"{"dataset": "d", "model": "m", "surprise": 1}"#, "malformed_request"),
            (r#"{"dataset": "d", "model": "m", "hyperparameters": {"epochs": 0}}"#, "bad_hyperparameter"),
            (r#"{"dataset": "d", "model": "m", "hyperparameters": {"learning_rate": 5}}"#, "bad_hyperparameter"),
            (r#"{"dataset": "d", "model": "m", "hyperparameters": {"dropout_rate": 0.1}}"#, "bad_hyperparameter"),
            (r#"{"dataset": "d", "model": "m", "sweep": {"epochs": []}}"#, "bad_hyperparameter"),
        ] {
            assert_eq!(TrainingRequest::parse(body).unwrap_err().code(), code, "{body}");
        }
    }

    #[test]
    fn the_run_id_follows_the_content_and_the_request_id() {
        let a = TrainingRequest::parse(r#"{"dataset": "d", "model": "m", "hyperparameters": {"epochs": 3, "batch_size": 8}}"#)
            .unwrap();
        let b = TrainingRequest::parse(r#"{"model": "m", "hyperparameters": {"batch_size": 8, "epochs": 3}, "dataset": "d"}"#)
            .unwrap();
        let c = TrainingRequest::parse(
            r#"{"dataset": "d", "model": "m", "hyperparameters": {"epochs": 3, "batch_size": 8}, "request_id": "x"}"#,
        )
        .unwrap();
        assert_eq!(a.run_id(), b.run_id(), "field order does not matter");
        assert_ne!(a.run_id(), c.run_id(), "a request id makes a deliberate repeat a new run");
    }
}
