//! Continuous training: the rule that turns a report into a training request, and the cooldown
//! that keeps a drifting stream from starting a retraining storm.
//!
//! Per model, an item `MODEL#<model>` / `RETRAIN#RULE` may override the configured rule; the last
//! request sits at `MODEL#<model>` / `RETRAIN#LAST`, claimed with a conditional write before the
//! request is sent, so two monitors running at once send one request between them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cvops_core::clock::Clock;
use cvops_core::ports::{Item, Queue, Table, TableError, TableExt};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::MonitorError;

use cvops_core::schema::model_pk;
pub use cvops_core::schema::{RETRAIN_LAST_SK as LAST_SK, RETRAIN_RULE_SK as RULE_SK};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrainRule {
    /// Retrain when the production version's report says DRIFT.
    pub on_drift: bool,
    /// Retrain when at least this many images were accepted since the production version's
    /// snapshot; `None` turns the trigger off.
    pub min_new_images: Option<u64>,
    /// No second request within this many hours of the last.
    pub cooldown_hours: f64,
}

impl Default for RetrainRule {
    fn default() -> Self {
        Self { on_drift: true, min_new_images: Some(1000), cooldown_hours: 24.0 }
    }
}

/// The model's own rule, or `default`.
pub async fn rule_for(table: &dyn Table, model: &str, default: RetrainRule) -> Result<RetrainRule, TableError> {
    match table.get(&model_pk(model), RULE_SK).await? {
        Some(item) => item.to_record(),
        None => Ok(default),
    }
}

pub async fn set_rule(table: &dyn Table, model: &str, rule: &RetrainRule) -> Result<(), TableError> {
    table.put(Item::from_record(model_pk(model), RULE_SK, rule)?).await.map(|_| ())
}

/// What the rule decided for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainDecision {
    pub model: String,
    pub dataset: String,
    /// `drift` or `new_data`; `None` when nothing triggered.
    pub trigger: Option<String>,
    /// Why, in words: what drifted or how many images arrived.
    pub detail: String,
    pub requested: bool,
    /// Set when a trigger fired inside the cooldown.
    pub suppressed_until: Option<String>,
    pub request_id: Option<String>,
}

/// What the rule looks at.
#[derive(Debug, Clone)]
pub struct Signals {
    pub model: String,
    pub dataset: String,
    /// The production version drifted, and what drifted.
    pub drift: Option<String>,
    pub new_images: u64,
}

/// Applies `rule` to `signals`; sends a training request to `queue` when a trigger fires outside
/// the cooldown.
pub async fn decide(
    table: &dyn Table,
    queue: &dyn Queue,
    queue_name: &str,
    clock: &dyn Clock,
    rule: &RetrainRule,
    signals: Signals,
) -> Result<RetrainDecision, MonitorError> {
    let Signals { model, dataset, drift, new_images } = signals;
    let (trigger, detail) = match (&drift, rule.min_new_images) {
        (Some(what), _) if rule.on_drift => ("drift", what.clone()),
        (_, Some(n)) if new_images >= n => ("new_data", format!("{new_images} images accepted since the snapshot (rule: {n})")),
        _ => {
            return Ok(RetrainDecision {
                model,
                dataset,
                trigger: None,
                detail: format!("no trigger: {} drift, {new_images} new images", if drift.is_some() { "" } else { "no" }),
                requested: false,
                suppressed_until: None,
                request_id: None,
            })
        }
    };
    let mut decision = RetrainDecision {
        model: model.clone(),
        dataset: dataset.clone(),
        trigger: Some(trigger.to_owned()),
        detail: detail.clone(),
        requested: false,
        suppressed_until: None,
        request_id: None,
    };
    let now = clock.now();
    let last = table.get(&model_pk(&model), LAST_SK).await?;
    if let Some(last) = &last {
        let at = last.str_attr("requested_at").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
        let until = at.map(|at| at + Duration::milliseconds((rule.cooldown_hours * 3_600_000.0) as i64));
        if let Some(until) = until.filter(|until| now < *until) {
            decision.suppressed_until = Some(until.to_rfc3339());
            return Ok(decision);
        }
    }
    let request_id = format!("retrain-{model}-{}", now.timestamp_millis());
    let claim = Item::new(model_pk(&model), LAST_SK)
        .with("requested_at", now.to_rfc3339())
        .with("request_id", request_id.clone())
        .with("trigger", trigger)
        .with("detail", detail.clone());
    match table.put_if_unchanged(claim, last.map(|last| last.version)).await {
        Ok(_) => {}
        // Another monitor claimed it between our read and our write: it sends the request.
        Err(TableError::Conflict { .. }) => {
            decision.suppressed_until = Some(now.to_rfc3339());
            return Ok(decision);
        }
        Err(e) => return Err(e.into()),
    }
    let body = json!({
        "dataset": dataset,
        "model": model,
        "request_id": request_id,
        "reason": format!("{trigger}: {detail}"),
    });
    if let Err(e) = queue.send(queue_name, &body.to_string(), &BTreeMap::new()).await {
        // Give the cooldown back, so the next run tries again.
        let _ = table.delete(&model_pk(&model), LAST_SK).await;
        return Err(e.into());
    }
    decision.requested = true;
    decision.request_id = Some(request_id);
    Ok(decision)
}
