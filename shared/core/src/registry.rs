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

use crate::metrics::detection::DetectionEvaluation;
use crate::metrics::Evaluation;
use crate::model_card::Artifact;
use crate::ports::{Item, ObjectStore, ObjectStoreError, Table, TableError, TableExt, Update};
use crate::preprocess::InputSpec;
use crate::schema::{alias_sk, card_sk, LATEST_VERSION_SK, VERSION_SK_PREFIX};
pub use crate::schema::{evaluation_key, model_pk, version_sk, GATE_SK, MODELS_PK};
use crate::task::{DetectionSettings, Metric, OutputLayout, Task};

/// An evaluation larger than this goes to the store bucket, not into the version item: a
/// DynamoDB item holds 400 KB, and a confusion matrix of 400 labels alone is 160,000 counts.
pub const MAX_INLINE_EVALUATION_BYTES: usize = 64 * 1024;
pub const PRODUCTION: &str = "production";

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

/// A model's promotion gate, stored per model (`GATE` under `MODEL#<model>`); `cvops gate`
/// shows and sets it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GatePolicy {
    /// The score a version needs on its test split to be promoted by itself: accuracy for a
    /// classifier, mAP@0.5 for a detector.
    pub floor: f64,
    /// Fewer test images than this is no evaluation: the version is `not_evaluated`, and its
    /// score neither promotes it nor blocks another.
    pub min_test_images: u64,
}

/// 20 test images: below that one image moves accuracy by more than 5 points.
pub const DEFAULT_MIN_TEST_IMAGES: u64 = 20;

impl GatePolicy {
    pub fn with_floor(floor: f64) -> Self {
        Self { floor, min_test_images: DEFAULT_MIN_TEST_IMAGES }
    }

    /// The score's value, or `None` when it rests on too few test images to count.
    pub fn score(&self, score: &Score) -> Option<f64> {
        (score.images >= self.min_test_images).then_some(score.value)
    }
}

/// What the gate judges a version by: its task's metric on its test split, and how many test
/// images that rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub metric: Metric,
    pub value: f64,
    pub images: u64,
}

impl Score {
    pub fn of_classification(evaluation: &Evaluation) -> Self {
        Self { metric: Metric::Accuracy, value: evaluation.accuracy, images: evaluation.images }
    }

    pub fn of_detection(evaluation: &DetectionEvaluation) -> Self {
        Self { metric: Metric::Map50, value: evaluation.map50, images: evaluation.images }
    }
}

/// The model's gate as set with `cvops gate`, else `default`.
pub async fn gate_policy(table: &dyn Table, model: &str, default: GatePolicy) -> Result<GatePolicy, TableError> {
    match table.get(&model_pk(model), GATE_SK).await? {
        Some(item) => item.to_record(),
        None => Ok(default),
    }
}

pub async fn set_gate_policy(table: &dyn Table, model: &str, policy: &GatePolicy) -> Result<(), TableError> {
    table.put(Item::from_record(model_pk(model), GATE_SK, policy)?).await?;
    Ok(())
}

/// What a version is for: its task, the labels it predicts and the dataset it learned them
/// from. Nothing is promoted by itself over a version of another task; a person does it with
/// `cvops promote`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSignature {
    pub task: Task,
    pub labels: Vec<String>,
    pub dataset: String,
}

impl TaskSignature {
    pub fn of(version: &ModelVersion) -> Option<Self> {
        let dataset = version.lineage.as_ref()?.dataset.clone();
        Some(Self { task: version.task, labels: version.labels.clone(), dataset })
    }

    /// Same task, same labels (as a set: each version serves with its own order) and the same dataset.
    pub fn same_task(&self, other: &TaskSignature) -> bool {
        self.mismatch(other, 0).is_none()
    }

    /// The stable code and explanation of why `self` cannot replace `production` by itself.
    fn mismatch(&self, production: &TaskSignature, version: u32) -> Option<(&'static str, String)> {
        let set = |labels: &[String]| labels.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        if self.task != production.task {
            return Some((
                "different_task",
                format!("it is a {} model, production v{version} a {} one", self.task, production.task),
            ));
        }
        if set(&self.labels) != set(&production.labels) {
            let (ours, theirs) = (self.labels.len(), production.labels.len());
            return Some(("different_labels", format!("its {ours} labels are not production v{version}'s {theirs}")));
        }
        if self.dataset != production.dataset {
            return Some((
                "different_dataset",
                format!("it was trained on {:?}, production v{version} on {:?}", self.dataset, production.dataset),
            ));
        }
        None
    }
}

/// The production version the gate compares with: its task, and its score on the candidate's
/// own test split (`None` when it could not be evaluated there; that blocks nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionScore {
    pub version: u32,
    pub signature: Option<TaskSignature>,
    pub score: Option<f64>,
}

/// Why a version was or was not promoted when it was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateDecision {
    pub passed: bool,
    /// When it did not pass: `not_evaluated`, `below_floor`, `different_task`,
    /// `different_labels`, `different_dataset` or `below_production`.
    #[serde(default)]
    pub code: Option<String>,
    /// What `score`, `floor` and `production_score` measure: `accuracy` or `map50`.
    #[serde(default)]
    pub metric: Metric,
    /// `None` when the version was not evaluated (too few test images): never a 0.0.
    #[serde(alias = "accuracy")]
    pub score: Option<f64>,
    pub floor: f64,
    #[serde(default)]
    pub min_test_images: u64,
    #[serde(default)]
    pub test_images: u64,
    /// The production version at the time, and its score on the same test split.
    pub production_version: Option<u32>,
    #[serde(alias = "production_accuracy")]
    pub production_score: Option<f64>,
    pub explanation: String,
}

/// The promotion gate, in order: enough test images to mean anything, at least the floor, the
/// same task as production (task, labels and dataset), and at least production's score on the
/// same test split.
pub fn gate(
    model: &str,
    version: u32,
    score: &Score,
    signature: &TaskSignature,
    policy: &GatePolicy,
    production: Option<&ProductionScore>,
) -> GateDecision {
    let counted = policy.score(score);
    let (metric, value) = (score.metric, score.value);
    let manual = format!("`cvops promote {model} {version}` promotes it by hand");
    let verdict: Result<String, (&str, String)> = if counted.is_none() {
        Err((
            "not_evaluated",
            format!(
                "{} test images, fewer than the {} this model's gate needs; add test images or lower it with `cvops gate {model} --min-test-images N`",
                score.images, policy.min_test_images
            ),
        ))
    } else if value < policy.floor {
        Err(("below_floor", format!("{metric} {value:.4} is below the floor {:.4}", policy.floor)))
    } else {
        match production {
            None => Ok(format!("{metric} {value:.4} >= floor {:.4}; no production version yet", policy.floor)),
            Some(current) => match current.signature.as_ref().and_then(|theirs| signature.mismatch(theirs, current.version)) {
                Some((code, why)) => Err((code, format!("not promoted by itself: {why}; {manual}"))),
                None => match current.score {
                    Some(theirs) if value < theirs => Err((
                        "below_production",
                        format!(
                            "{metric} {value:.4} is below production v{}'s {theirs:.4} on the same test split",
                            current.version
                        ),
                    )),
                    Some(theirs) => Ok(format!("{metric} {value:.4} >= production v{}'s {theirs:.4}", current.version)),
                    None => Ok(format!(
                        "{metric} {value:.4} >= floor {:.4}; production v{} could not be evaluated on this test split",
                        policy.floor, current.version
                    )),
                },
            },
        }
    };
    let (passed, code, explanation) = match verdict {
        Ok(explanation) => (true, None, explanation),
        Err((code, explanation)) => (false, Some(code.to_owned()), explanation),
    };
    GateDecision {
        passed,
        code,
        metric,
        score: counted,
        floor: policy.floor,
        min_test_images: policy.min_test_images,
        test_images: score.images,
        production_version: production.map(|p| p.version),
        production_score: production.and_then(|p| p.score),
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
    /// For a rejected version: a stable code (`malformed_card`, `unknown_run`, `missing_artifact`,
    /// `checksum_mismatch`, `unloadable_model`, `unknown_snapshot`) and what to do.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub card_key: String,
    /// What the version does (absent in records written before tasks existed: a classifier).
    #[serde(default)]
    pub task: Task,
    pub artifact: Option<Artifact>,
    pub labels: Vec<String>,
    pub input: Option<InputSpec>,
    /// How its output is read.
    #[serde(default)]
    pub output_layout: OutputLayout,
    /// A detector's serving defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_settings: Option<DetectionSettings>,
    pub lineage: Option<Lineage>,
    /// register-model's own evaluation on the snapshot's test split; only its summary (no
    /// per-class metrics, no confusion matrix) when the whole is in the store bucket at
    /// `evaluation_key`, as it is for label sets whose matrix would not fit a table item.
    pub evaluation: Option<Evaluation>,
    #[serde(default)]
    pub evaluation_key: Option<String>,
    /// A detector's evaluation (COCO mAP, AP per class, precision and recall at the served
    /// threshold); `evaluation` is a classifier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<DetectionEvaluation>,
    pub gate: Option<GateDecision>,
    pub registered_at: String,
}

impl ModelVersion {
    /// Its task's score on its test split (accuracy, or mAP@0.5 for a detector), `None` when
    /// it was not evaluated (or rejected).
    pub fn score(&self) -> Option<f64> {
        match &self.gate {
            Some(gate) => gate.score,
            None => self.evaluation_score().map(|s| s.value),
        }
    }

    /// The gate's view of its evaluation, whichever the task.
    pub fn evaluation_score(&self) -> Option<Score> {
        match self.task {
            Task::Classification => self.evaluation.as_ref().map(Score::of_classification),
            Task::Detection => self.detection.as_ref().map(Score::of_detection),
        }
    }

    /// The detector's serving settings (the defaults when the card gave none).
    pub fn detection_settings(&self) -> DetectionSettings {
        self.detection_settings.unwrap_or_default()
    }
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
    let version = table
        .update(&pk, LATEST_VERSION_SK, |latest| {
            let next = latest.and_then(|item| item.i64_attr("latest")).unwrap_or(0) as u32 + 1;
            Ok::<_, TableError>(Update::Write(Item::new(pk.clone(), LATEST_VERSION_SK).with("latest", i64::from(next)), next))
        })
        .await?;
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

/// Puts `evaluation` on the record, or, when its per-class metrics and confusion matrix would
/// take the item near DynamoDB's 400 KB limit, into the store bucket at [`evaluation_key`]
/// (written before the record, under a key of its own version, so a retry rewrites the same
/// bytes) with only its summary on the record.
pub async fn attach_evaluation(
    objects: &dyn ObjectStore,
    store_bucket: &str,
    record: &mut ModelVersion,
    evaluation: Evaluation,
) -> Result<(), ObjectStoreError> {
    let full = serde_json::to_vec(&evaluation).expect("an evaluation serialises");
    if full.len() <= MAX_INLINE_EVALUATION_BYTES {
        record.evaluation = Some(evaluation);
        record.evaluation_key = None;
        return Ok(());
    }
    let key = evaluation_key(&record.model, record.version);
    objects.put(store_bucket, &key, full.into()).await?;
    record.evaluation = Some(evaluation.summary());
    record.evaluation_key = Some(key);
    Ok(())
}

/// The version's whole evaluation: from the record, or from the store bucket when it is there.
pub async fn full_evaluation(
    objects: &dyn ObjectStore,
    store_bucket: &str,
    record: &ModelVersion,
) -> Result<Option<Evaluation>, ObjectStoreError> {
    match &record.evaluation_key {
        None => Ok(record.evaluation.clone()),
        Some(key) => {
            let bytes = objects.get(store_bucket, key, 256 << 20).await?;
            Ok(serde_json::from_slice(&bytes).ok())
        }
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
    table.query_all(&model_pk(model), VERSION_SK_PREFIX).await?.iter().map(Item::to_record).collect()
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
    table.put_if_unchanged(Item::from_record(model_pk(model), alias_sk(PRODUCTION), alias)?, expected).await?;
    Ok(())
}

/// Moves `production` where `next` decides from the alias it reads (`None`: no alias yet;
/// deciding `None` leaves it as it is), with [`TableExt::update`]: a concurrent move makes it
/// read and decide again.
async fn move_production(
    table: &dyn Table,
    model: &str,
    mut next: impl FnMut(Option<&Alias>) -> Result<Option<Alias>, RegistryError> + Send,
) -> Result<Alias, RegistryError> {
    let (pk, sk) = (model_pk(model), alias_sk(PRODUCTION));
    table
        .update(&pk, &sk, |read| {
            let current: Option<Alias> = read.map(Item::to_record).transpose()?;
            match (next(current.as_ref())?, current) {
                (Some(alias), _) => Ok(Update::Write(Item::from_record(&pk, &sk, &alias)?, alias)),
                (None, Some(current)) => Ok(Update::Keep(current)),
                (None, None) => Err(RegistryError::NoProduction(model.to_owned())),
            }
        })
        .await
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
    move_production(table, model, |current| {
        let mut previous = current.map(|alias| alias.previous.clone()).unwrap_or_default();
        match current {
            Some(alias) if alias.version == version => return Ok(None),
            Some(alias) => previous.push(alias.version),
            None => {}
        }
        Ok(Some(Alias { version, previous, updated_at: now.to_owned(), reason: reason.to_owned() }))
    })
    .await
}

/// Points `production` back at the version it named before the current one.
pub async fn rollback(table: &dyn Table, model: &str, now: &str) -> Result<Alias, RegistryError> {
    move_production(table, model, |current| {
        let current = current.ok_or_else(|| RegistryError::NoProduction(model.to_owned()))?;
        let mut previous = current.previous.clone();
        let version = previous.pop().ok_or_else(|| RegistryError::NothingToRollBack(model.to_owned()))?;
        let reason = format!("rollback from v{}", current.version);
        Ok(Some(Alias { version, previous, updated_at: now.to_owned(), reason }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(images: u64, accuracy: f64) -> Score {
        Score { metric: Metric::Accuracy, value: accuracy, images }
    }

    fn digits() -> TaskSignature {
        TaskSignature { task: Task::Classification, labels: vec!["0".into(), "1".into()], dataset: "digits".into() }
    }

    fn production(version: u32, score: Option<f64>, signature: TaskSignature) -> ProductionScore {
        ProductionScore { version, signature: Some(signature), score }
    }

    #[test]
    fn the_gate_needs_the_floor_and_production() {
        let policy = GatePolicy::with_floor(0.9);
        let g = |e: Score, p: Option<&ProductionScore>| gate("m", 2, &e, &digits(), &policy, p);
        assert!(g(evaluation(100, 0.95), None).passed);
        assert_eq!(g(evaluation(100, 0.85), None).code.as_deref(), Some("below_floor"));
        assert!(g(evaluation(100, 0.95), Some(&production(1, Some(0.95), digits()))).passed);
        let refused = g(evaluation(100, 0.95), Some(&production(3, Some(0.97), digits())));
        assert!(!refused.passed && refused.explanation.contains("v3"));
        assert_eq!(refused.code.as_deref(), Some("below_production"));
        // Production that could not be evaluated on this split blocks nothing.
        assert!(g(evaluation(100, 0.95), Some(&production(1, None, digits()))).passed);
    }

    #[test]
    fn too_few_test_images_is_not_evaluated_never_a_score() {
        let policy = GatePolicy::with_floor(0.9);
        let decision = gate("m", 1, &evaluation(19, 1.0), &digits(), &policy, None);
        assert!(!decision.passed);
        assert_eq!((decision.code.as_deref(), decision.score), (Some("not_evaluated"), None));
        assert!(gate("m", 1, &evaluation(20, 1.0), &digits(), &policy, None).passed);
    }

    #[test]
    fn another_task_is_never_promoted_by_itself() {
        let policy = GatePolicy::with_floor(0.5);
        let other_labels = TaskSignature { labels: vec!["cat".into(), "dog".into()], ..digits() };
        let decision =
            gate("digits", 2, &evaluation(100, 0.99), &other_labels, &policy, Some(&production(1, Some(0.0), digits())));
        assert_eq!(decision.code.as_deref(), Some("different_labels"));
        assert!(decision.explanation.contains("cvops promote digits 2"), "{}", decision.explanation);
        let other_dataset = TaskSignature { labels: vec!["1".into(), "0".into()], dataset: "other".into(), ..digits() };
        let decision =
            gate("digits", 2, &evaluation(100, 0.99), &other_dataset, &policy, Some(&production(1, Some(0.0), digits())));
        assert_eq!(decision.code.as_deref(), Some("different_dataset"));
        let detector = TaskSignature { task: Task::Detection, ..digits() };
        let map50 = Score { metric: Metric::Map50, value: 0.9, images: 100 };
        let decision = gate("digits", 2, &map50, &detector, &policy, Some(&production(1, Some(0.0), digits())));
        assert_eq!(decision.code.as_deref(), Some("different_task"));
        assert!(decision.explanation.contains("detection"), "{}", decision.explanation);
    }

    #[test]
    fn a_detector_is_gated_on_map50_and_says_so() {
        let policy = GatePolicy::with_floor(0.5);
        let detector = TaskSignature { task: Task::Detection, ..digits() };
        let decision = gate("boxes", 1, &Score { metric: Metric::Map50, value: 0.42, images: 80 }, &detector, &policy, None);
        assert_eq!((decision.code.as_deref(), decision.metric), (Some("below_floor"), Metric::Map50));
        assert!(decision.explanation.starts_with("mAP@0.5 0.4200"), "{}", decision.explanation);
        // Records written before tasks existed read as accuracy.
        let old: GateDecision = serde_json::from_value(serde_json::json!({
            "passed": true, "accuracy": 0.97, "floor": 0.9, "production_version": null,
            "production_accuracy": null, "explanation": "ok"
        }))
        .unwrap();
        assert_eq!((old.metric, old.score), (Metric::Accuracy, Some(0.97)));
    }
}
