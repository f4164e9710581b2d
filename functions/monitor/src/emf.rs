//! CloudWatch Embedded Metric Format: one JSON line per version report, printed to stdout by the
//! Lambda, turned into metrics by CloudWatch Logs with no API call. Alarms are set on them in the
//! template (`DriftStatus` >= 2 over every model: hence the empty dimension set).

use cvops_core::drift::Status;
use serde_json::{json, Map, Value};

use crate::report::VersionReport;

pub const NAMESPACE: &str = "cvops";

/// 0 OK, 1 WARN, 2 DRIFT, -1 insufficient data: what the drift alarm compares.
pub fn status_value(status: Status) -> i32 {
    match status {
        Status::InsufficientData => -1,
        Status::Ok => 0,
        Status::Warn => 1,
        Status::Drift => 2,
    }
}

pub fn emf_line(report: &VersionReport, timestamp_millis: i64) -> Value {
    let a = &report.assessment;
    let mut values: Vec<(String, f64, &str)> = vec![
        ("DriftStatus".into(), f64::from(status_value(a.status)), "None"),
        ("Requests".into(), a.service.requests as f64, "Count"),
        ("ErrorRate".into(), a.service.error_rate, "None"),
        ("PredictionPSI".into(), a.prediction.psi, "None"),
        ("PredictionJS".into(), a.prediction.js_distance, "None"),
    ];
    for (name, value) in [("LatencyP50", a.service.p50_ms), ("LatencyP95", a.service.p95_ms), ("LatencyP99", a.service.p99_ms)] {
        if let Some(v) = value {
            values.push((name.into(), v, "Milliseconds"));
        }
    }
    if let Some(mean) = a.confidence.mean {
        values.push(("ConfidenceMean".into(), mean, "None"));
    }
    if let Some(share) = a.confidence.share_low {
        values.push(("LowConfidenceShare".into(), share, "None"));
    }
    for feature in &a.features {
        let name = format!("{}{}", feature.feature[..1].to_uppercase(), &feature.feature[1..]);
        values.push((format!("{name}PSI"), feature.psi, "None"));
        values.push((format!("{name}Wasserstein"), feature.wasserstein_over_std, "None"));
    }
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[], ["Model"], ["Model", "Version"]],
                "Metrics": values.iter().map(|(name, _, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert("Model".into(), json!(report.model));
    line.insert("Version".into(), json!(report.model_version.to_string()));
    for (name, value, _) in values {
        line.insert(name, json!(value));
    }
    Value::Object(line)
}
