//! The model registry: versions, their lineage and evaluation, and the `production` alias.
//!
//! Items, all under `MODEL#<model>` (with `MODELS / <model>` as the list of models):
//! - `LATEST`: the last version number handed out, advanced only by a conditional write, so two
//!   registrations racing never get the same number;
//! - `CARD#<run>/<point>`: which version a model card became, so a redelivered card event
//!   registers nothing twice;
//! - `VER#<000042>`: one [`ModelVersion`], registered or rejected;
//! - `ALIAS#production`: the [`Alias`], changed only by a conditional write on its item version,
//!   so promotion and rollback are atomic and a racing promotion is detected, never lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::Evaluation;
use crate::model_card::Artifact;
use crate::ports::{Item, Table, TableError, TableExt};
use crate::preprocess::InputSpec;

pub const MODELS_PK: &str = "MODELS";
pub const PRODUCTION: &str = "production";
const VERSION_PREFIX: &str = "VER#";
/// Conditional writes retried this many times before a conflict is reported.
const ATTEMPTS: usize = 8;

pub fn model_pk(model: &str) -> String {
    format!("MODEL#{model}")
}

pub fn version_sk(version: u32) -> String {
    format!("{VERSION_PREFIX}{version:06}")
}

fn card_sk(run_id: &str, point: u32) -> String {
    format!("CARD#{run_id}/{point}")
}

fn alias_sk(alias: &str) -> String {
    format!("ALIAS#{alias}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Verified and evaluated; may be promoted.
    Registered,
    /// Failed verification; never served.
    Rejected,
}

/// Where a version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub run_id: String,
    pub point: u32,
    pub dataset: String,
    pub snapshot: String,
    pub trainer_version: String,
    pub hyperparameters: BTreeMap<String, f64>,
}

/// Why a version was or was not promoted when it was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub passed: bool,
    pub accuracy: f64,
    pub floor: f64,
    /// The production version at the time, and its accuracy on the same test split.
    pub production_version: Option<u32>,
    pub production_accuracy: Option<f64>,
    pub explanation: String,
}

/// The promotion gate: at least the floor, and at least production on the same test split.
pub fn gate(accuracy: f64, floor: f64, production: Option<(u32, f64)>) -> GateDecision {
    let (passed, explanation) = if accuracy < floor {
        (false, format!("accuracy {accuracy:.4} is below the floor {floor:.4}"))
    } else {
        match production {
            Some((version, theirs)) if accuracy < theirs => {
                (false, format!("accuracy {accuracy:.4} is below production v{version}'s {theirs:.4} on the same test split"))
            }
            Some((version, theirs)) => (true, format!("accuracy {accuracy:.4} >= production v{version}'s {theirs:.4}")),
            None => (true, format!("accuracy {accuracy:.4} >= floor {floor:.4}; no production version yet")),
        }
    };
    GateDecision {
        passed,
        accuracy,
        floor,
        production_version: production.map(|p| p.0),
        production_accuracy: production.map(|p| p.1),
        explanation,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub model: String,
    /// Stored as `version_number`: `version` is the table's own attribute.
    #[serde(rename = "version_number")]
    pub version: u32,
    pub status: VersionStatus,
    /// For a rejected version: a stable code (`malformed_card`, `missing_artifact`,
    /// `checksum_mismatch`, `unloadable_model`, `no_test_images`) and what to do.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub card_key: String,
    pub artifact: Option<Artifact>,
    pub labels: Vec<String>,
    pub input: Option<InputSpec>,
    pub lineage: Option<Lineage>,
    /// register-model's own evaluation on the snapshot's test split.
    pub evaluation: Option<Evaluation>,
    pub gate: Option<GateDecision>,
    pub registered_at: String,
}

/// The alias item: the version it names, and the versions it named before (for rollback).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    #[serde(rename = "version_number")]
    pub version: u32,
    pub previous: Vec<u32>,
    pub updated_at: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model {model} has no version {version}; see `cvops models`")]
    NoSuchVersion { model: String, version: u32 },
    #[error("model {model} version {version} was rejected ({reason}); it cannot be promoted")]
    Rejected { model: String, version: u32, reason: String },
    #[error("model {0} has no earlier production version to roll back to")]
    NothingToRollBack(String),
    #[error("model {0} has no production version")]
    NoProduction(String),
    #[error("table: {0}")]
    Table(#[from] TableError),
}

/// Adds `model` to the list of models (idempotent).
pub async fn remember_model(table: &dyn Table, model: &str, now: &str) -> Result<(), TableError> {
    match table.put_if_absent(Item::new(MODELS_PK, model).with("created_at", now.to_owned())).await {
        Ok(_) | Err(TableError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn models(table: &dyn Table) -> Result<Vec<String>, TableError> {
    Ok(table.query_all(MODELS_PK, "").await?.into_iter().map(|item| item.sk).collect())
}

/// The version a card already became, if it was registered before.
pub async fn version_of_card(table: &dyn Table, model: &str, run_id: &str, point: u32) -> Result<Option<u32>, TableError> {
    let item = table.get(&model_pk(model), &card_sk(run_id, point)).await?;
    Ok(item.and_then(|item| item.i64_attr("registered_version")).map(|v| v as u32))
}

/// Hands out the card's version number: the existing one on a redelivery, else the next free
/// one (a conditional write on `LATEST`).
pub async fn claim_version(table: &dyn Table, model: &str, run_id: &str, point: u32) -> Result<u32, TableError> {
    if let Some(version) = version_of_card(table, model, run_id, point).await? {
        return Ok(version);
    }
    let pk = model_pk(model);
    let mut claimed = None;
    for _ in 0..ATTEMPTS {
        let latest = table.get(&pk, "LATEST").await?;
        let next = latest.as_ref().and_then(|item| item.i64_attr("latest")).unwrap_or(0) as u32 + 1;
        let item = Item::new(pk.clone(), "LATEST").with("latest", i64::from(next));
        let written = match &latest {
            Some(latest) => table.put_if_version(item, latest.version).await,
            None => table.put_if_absent(item).await,
        };
        match written {
            Ok(_) => {
                claimed = Some(next);
                break;
            }
            Err(TableError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let version = claimed.ok_or_else(|| TableError::Conflict { pk: pk.clone(), sk: "LATEST".into() })?;
    let marker = Item::new(pk.clone(), card_sk(run_id, point)).with("registered_version", i64::from(version));
    match table.put_if_absent(marker).await {
        Ok(_) => Ok(version),
        // A concurrent delivery of the same card won; its number stands (ours is left unused).
        Err(TableError::Conflict { .. }) => {
            version_of_card(table, model, run_id, point).await?.ok_or(TableError::Conflict { pk, sk: card_sk(run_id, point) })
        }
        Err(e) => Err(e),
    }
}

pub async fn put_version(table: &dyn Table, version: &ModelVersion) -> Result<(), TableError> {
    table.put(Item::from_record(model_pk(&version.model), version_sk(version.version), version)?).await?;
    Ok(())
}

pub async fn get_version(table: &dyn Table, model: &str, version: u32) -> Result<Option<ModelVersion>, TableError> {
    table.get(&model_pk(model), &version_sk(version)).await?.map(|item| item.to_record()).transpose()
}

pub async fn versions(table: &dyn Table, model: &str) -> Result<Vec<ModelVersion>, TableError> {
    table.query_all(&model_pk(model), VERSION_PREFIX).await?.iter().map(Item::to_record).collect()
}

/// The production alias and its item version (for a conditional update).
pub async fn production(table: &dyn Table, model: &str) -> Result<Option<(Alias, u64)>, TableError> {
    match table.get(&model_pk(model), &alias_sk(PRODUCTION)).await? {
        Some(item) => Ok(Some((item.to_record()?, item.version))),
        None => Ok(None),
    }
}

/// Moves `production` from the state read as `expected` (`None`: no alias yet) to `alias`.
/// Fails with a conflict if anyone changed it in between: the caller re-reads and decides again.
pub async fn swap_production(table: &dyn Table, model: &str, expected: Option<u64>, alias: &Alias) -> Result<(), TableError> {
    let item = Item::from_record(model_pk(model), alias_sk(PRODUCTION), alias)?;
    match expected {
        Some(version) => table.put_if_version(item, version).await?,
        None => table.put_if_absent(item).await?,
    };
    Ok(())
}

/// Points `production` at `version` (which must be registered), keeping the history.
pub async fn promote(table: &dyn Table, model: &str, version: u32, reason: &str, now: &str) -> Result<Alias, RegistryError> {
    let record = get_version(table, model, version)
        .await?
        .ok_or_else(|| RegistryError::NoSuchVersion { model: model.to_owned(), version })?;
    if record.status == VersionStatus::Rejected {
        let reason = record.reason_code.unwrap_or_default();
        return Err(RegistryError::Rejected { model: model.to_owned(), version, reason });
    }
    for _ in 0..ATTEMPTS {
        let current = production(table, model).await?;
        let mut previous = current.as_ref().map(|(alias, _)| alias.previous.clone()).unwrap_or_default();
        match &current {
            Some((alias, _)) if alias.version == version => return Ok(alias.clone()),
            Some((alias, _)) => previous.push(alias.version),
            None => {}
        }
        let alias = Alias { version, previous, updated_at: now.to_owned(), reason: reason.to_owned() };
        match swap_production(table, model, current.map(|(_, v)| v), &alias).await {
            Ok(()) => return Ok(alias),
            Err(TableError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TableError::Conflict { pk: model_pk(model), sk: alias_sk(PRODUCTION) }.into())
}

/// Points `production` back at the version it named before the current one.
pub async fn rollback(table: &dyn Table, model: &str, now: &str) -> Result<Alias, RegistryError> {
    for _ in 0..ATTEMPTS {
        let (current, item_version) =
            production(table, model).await?.ok_or_else(|| RegistryError::NoProduction(model.to_owned()))?;
        let mut previous = current.previous.clone();
        let version = previous.pop().ok_or_else(|| RegistryError::NothingToRollBack(model.to_owned()))?;
        let reason = format!("rollback from v{}", current.version);
        let alias = Alias { version, previous, updated_at: now.to_owned(), reason };
        match swap_production(table, model, Some(item_version), &alias).await {
            Ok(()) => return Ok(alias),
            Err(TableError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TableError::Conflict { pk: model_pk(model), sk: alias_sk(PRODUCTION) }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_needs_the_floor_and_production() {
        assert!(gate(0.95, 0.9, None).passed);
        assert!(!gate(0.85, 0.9, None).passed);
        assert!(gate(0.95, 0.9, Some((1, 0.95))).passed);
        let refused = gate(0.95, 0.9, Some((3, 0.97)));
        assert!(!refused.passed && refused.explanation.contains("v3"));
    }

    #[test]
    fn version_keys_sort_in_number_order() {
        assert!(version_sk(9) < version_sk(10));
    }
}
