//! The register-model handler: a model card's ObjectCreated event in, a registered (or rejected)
//! version out, promoted to `production` when it passes the gate.
//!
//! Only a card of a dispatched run is registered: the run record must exist and match the card
//! (model, dataset, snapshot, point), and the artifact must lie under the run's own prefix; a card
//! put under `models/` by hand is rejected as `unknown_run`. A model trained elsewhere comes in
//! through `cvops models import`: its card (`source: import`) sits under
//! `models/<model>/imports/<id>/`, names the dataset it is evaluated on, and must list exactly that
//! dataset's classes (`labels_mismatch`); from there it meets the same checks, evaluation and gate.
//!
//! Order, for safety under retries: everything that can fail for good (card, run, checksum,
//! loading, evaluation) is decided before anything is written; the version number is claimed with a
//! conditional write keyed by the card, so a redelivered event reuses it; the version record is
//! written before the alias moves; the alias moves by a conditional write, re-deciding the gate
//! if another promotion got there first.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use cvops_core::clock::Clock;
use cvops_core::failure::Retryable;
use cvops_core::key::decode_event_key;
use cvops_core::model_card::{import_prefix, parse_card_key, CardSource, ModelCard, IMPORT_ID_PREFIX, MAX_CARD_BYTES};
use cvops_core::ports::{ObjectStore, ObjectStoreError, ObjectStoreExt, Ports, Table, TableError};
use cvops_core::registry::{
    self, Alias, GateDecision, GatePolicy, Lineage, ModelVersion, ProductionScore, Score, TaskSignature, VersionStatus,
};
use cvops_core::runs::{run_pk, run_sk, RunRecord};
use cvops_core::snapshot::{descriptor_key, Snapshot};
use cvops_core::task::{DetectionSettings, Task};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};

use crate::config::RegisterConfig;
use crate::evaluate::{evaluate_on_test_split, EvaluateError, Runner, TaskEvaluation};

/// The largest model artifact read.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;
/// Attempts at moving the alias when other promotions race this one.
const PROMOTION_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("table: {0}")]
    Table(#[from] TableError),
    #[error("object store: {0}")]
    Objects(#[from] ObjectStoreError),
    #[error("evaluation: {0}")]
    Evaluate(#[from] EvaluateError),
}

/// Every error that reaches the caller is transient (a rejected model is an outcome, not an
/// error), except a table conflict that persisted.
impl Retryable for RegisterError {
    fn is_retryable(&self) -> bool {
        match self {
            RegisterError::Table(e) => e.is_retryable() || e.is_conflict(),
            RegisterError::Objects(e) => e.is_retryable(),
            RegisterError::Evaluate(EvaluateError::Objects(e)) => e.is_retryable(),
            RegisterError::Evaluate(_) => false,
        }
    }
}

/// What became of one event record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Registered {
        version: Box<ModelVersion>,
        promoted: bool,
    },
    Rejected {
        version: Box<ModelVersion>,
    },
    /// The card was registered before: a redelivered event.
    AlreadyRegistered {
        model: String,
        version: u32,
    },
    /// Not a card key, or the card is gone.
    Ignored {
        key: String,
        why: String,
    },
}

/// Why a candidate is refused, with its stable code.
struct Refusal {
    code: &'static str,
    reason: String,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { code, reason: reason.into() }
}

/// A candidate that passed verification and evaluation, not yet written anywhere.
struct Verified {
    card: ModelCard,
    snapshot: Snapshot,
    evaluation: TaskEvaluation,
}

/// An import's card must sit at its import's key and name an artifact under the same prefix.
fn check_import(card: &ModelCard) -> Result<(), Refusal> {
    let prefix = import_prefix(&card.model, &card.run_id);
    if !card.run_id.starts_with(IMPORT_ID_PREFIX) || !card.artifact.key.starts_with(&prefix) || card.artifact.key.contains("..") {
        return Err(refuse(
            "unknown_run",
            format!("an imported model's artifact must lie under {prefix}; import it with `cvops models import`"),
        ));
    }
    Ok(())
}

/// The snapshot must hold what the model predicts: classes for a classifier, boxes for a
/// detector.
fn same_task(card: &ModelCard, snapshot: &Snapshot) -> Result<(), Refusal> {
    let holds = if snapshot.is_detection() { Task::Detection } else { Task::Classification };
    if holds != card.task {
        return Err(refuse(
            "task_mismatch",
            format!(
                "the model is a {} model but dataset {} holds {}; import it with --task {holds} or evaluate it on a dataset of its task",
                card.task,
                card.dataset,
                if snapshot.is_detection() { "boxes" } else { "classified images" }
            ),
        ));
    }
    Ok(())
}

/// An imported model must name the classes of the dataset it is evaluated on (in any order: the
/// card's order is the model's output order).
fn same_labels(card: &ModelCard, snapshot: &Snapshot) -> Result<(), Refusal> {
    let ours: std::collections::BTreeSet<&String> = card.labels.iter().collect();
    let theirs: std::collections::BTreeSet<&String> = snapshot.labels.iter().collect();
    if ours.len() != card.labels.len() {
        return Err(refuse("labels_mismatch", "the labels file names a class twice"));
    }
    if ours != theirs {
        let missing: Vec<&&String> = theirs.difference(&ours).take(5).collect();
        let extra: Vec<&&String> = ours.difference(&theirs).take(5).collect();
        return Err(refuse(
            "labels_mismatch",
            format!(
                "the model's {} labels are not dataset {}'s {} (missing {missing:?}, not in the dataset {extra:?}); pass the labels file in the model's output order",
                card.labels.len(),
                card.dataset,
                snapshot.labels.len()
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Register {
    table: Arc<dyn Table>,
    objects: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    config: RegisterConfig,
}

impl Register {
    pub fn new(ports: &Ports, config: RegisterConfig) -> Self {
        Self { table: ports.table.clone(), objects: ports.objects.clone(), clock: ports.clock.clone(), config }
    }

    pub async fn handle(&self, event: &S3Event) -> Result<Vec<Outcome>, RegisterError> {
        let mut outcomes = Vec::new();
        for record in &event.records {
            let (Some(bucket), Some(key)) = (record.s3.bucket.name.as_deref(), record.s3.object.key.as_deref()) else {
                continue;
            };
            let key = decode_event_key(key).unwrap_or_else(|| key.to_owned());
            let created = record.event_name.as_deref().is_some_and(|name| name.starts_with("ObjectCreated:"));
            if !created {
                outcomes.push(Outcome::Ignored { key, why: "not an ObjectCreated event".into() });
                continue;
            }
            outcomes.push(self.register_card(bucket, &key).await?);
        }
        Ok(outcomes)
    }

    #[instrument(skip(self), fields(bucket, key))]
    pub async fn register_card(&self, bucket: &str, key: &str) -> Result<Outcome, RegisterError> {
        let Some((model, run_id, point)) = parse_card_key(key) else {
            return Ok(Outcome::Ignored {
                key: key.into(),
                why:
                    "not a model card key (models/<model>/runs/<run>/<point>/card.json or models/<model>/imports/<id>/card.json)"
                        .into(),
            });
        };
        if let Some(version) = registry::version_of_card(self.table.as_ref(), &model, &run_id, point).await? {
            if let Some(record) = registry::get_version(self.table.as_ref(), &model, version).await? {
                info!(%model, version, "card already registered: a redelivered event");
                self.finish_promotion(record).await?;
                return Ok(Outcome::AlreadyRegistered { model, version });
            }
        }
        let card_bytes = match self.objects.get(bucket, key, MAX_CARD_BYTES).await {
            Ok(bytes) => Some(bytes),
            Err(ObjectStoreError::NotFound { .. }) => {
                return Ok(Outcome::Ignored { key: key.into(), why: "the card no longer exists".into() });
            }
            Err(ObjectStoreError::TooLarge { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let now = self.clock.now().to_rfc3339();
        registry::remember_model(self.table.as_ref(), &model, &now).await?;
        let verified = match &card_bytes {
            None => Err(refuse("malformed_card", format!("the card is over the {MAX_CARD_BYTES} byte limit"))),
            Some(bytes) => self.verify(bucket, &model, bytes).await?,
        };
        let version = registry::claim_version(self.table.as_ref(), &model, &run_id, point).await?;
        match verified {
            Err(refusal) => {
                // A refused card still says what it was, when it can be read.
                let refused_task =
                    card_bytes.as_deref().and_then(|b| ModelCard::parse(b).ok()).map_or_else(Task::default, |c| c.task);
                warn!(%model, version, code = refusal.code, reason = %refusal.reason, "model rejected; production untouched");
                let record = ModelVersion {
                    model,
                    version,
                    status: VersionStatus::Rejected,
                    reason_code: Some(refusal.code.into()),
                    reason: Some(refusal.reason),
                    card_key: key.into(),
                    task: refused_task,
                    artifact: None,
                    labels: Vec::new(),
                    input: None,
                    output_layout: Default::default(),
                    detection_settings: None,
                    lineage: None,
                    evaluation: None,
                    evaluation_key: None,
                    detection: None,
                    gate: None,
                    registered_at: now,
                };
                registry::put_version(self.table.as_ref(), &record).await?;
                Ok(Outcome::Rejected { version: Box::new(record) })
            }
            Ok(candidate) => self.register_and_promote(key, version, candidate, now).await,
        }
    }

    /// Checks the card, the artifact's checksum, that tract loads it, and evaluates it.
    async fn verify(&self, bucket: &str, model: &str, card_bytes: &[u8]) -> Result<Result<Verified, Refusal>, RegisterError> {
        let card = match ModelCard::parse(card_bytes) {
            Ok(card) if card.model == model => card,
            Ok(card) => {
                return Ok(Err(refuse("malformed_card", format!("the card names model {:?} under {model:?}'s key", card.model))))
            }
            Err(reason) => return Ok(Err(refuse("malformed_card", reason))),
        };
        let origin = match card.source {
            CardSource::Run => self.check_run(&card).await?,
            CardSource::Import => check_import(&card),
        };
        if let Err(refusal) = origin {
            return Ok(Err(refusal));
        }
        let version_id = card.artifact.version_id.as_deref();
        let artifact = match self.objects.get_recorded(bucket, &card.artifact.key, version_id, MAX_MODEL_BYTES).await {
            Ok(bytes) => bytes,
            Err(ObjectStoreError::NotFound { .. }) => {
                return Ok(Err(refuse(
                    "missing_artifact",
                    format!("{} does not exist; the trainer did not finish", card.artifact.key),
                )))
            }
            Err(ObjectStoreError::TooLarge { size, .. }) => {
                return Ok(Err(refuse("missing_artifact", format!("the artifact is {size} bytes, over {MAX_MODEL_BYTES}"))))
            }
            Err(e) => return Err(e.into()),
        };
        let sha256 = hex::encode(Sha256::digest(&artifact));
        if sha256 != card.artifact.sha256 {
            return Ok(Err(refuse(
                "checksum_mismatch",
                format!(
                    "{} has sha256 {sha256}, the card says {}; the artifact was changed or corrupted",
                    card.artifact.key, card.artifact.sha256
                ),
            )));
        }
        if let Some(why) = card.signature_mismatch() {
            return Ok(Err(refuse("missing_signature", why)));
        }
        let loaded = match Runner::load(&artifact, card.task, &card.input, card.labels.len(), card.output_layout) {
            Ok(loaded) => loaded,
            Err(e) => return Ok(Err(refuse(e.code(), e.to_string()))),
        };
        let snapshot = match self.snapshot(&card.dataset, &card.snapshot).await? {
            Some(snapshot) => snapshot,
            None => {
                return Ok(Err(refuse(
                    "unknown_snapshot",
                    format!("snapshot {} of {} does not exist", card.snapshot, card.dataset),
                )))
            }
        };
        if let Err(refusal) = same_task(&card, &snapshot) {
            return Ok(Err(refusal));
        }
        if card.source == CardSource::Import {
            if let Err(refusal) = same_labels(&card, &snapshot) {
                return Ok(Err(refusal));
            }
        }
        // Too few test images is a gate decision (`not_evaluated`), not a rejection: the version
        // is sound, it just cannot be judged by its score.
        let evaluation = self.evaluate(&loaded, &card.labels, &card.detection_settings(), &snapshot).await?;
        Ok(Ok(Verified { card, snapshot, evaluation }))
    }

    /// The card must come from a run dispatch-training recorded, and say what that run is.
    async fn check_run(&self, card: &ModelCard) -> Result<Result<(), Refusal>, RegisterError> {
        let unknown = |why: String| {
            Ok(Err(refuse("unknown_run", format!("{why}; models trained elsewhere come in with `cvops models import`"))))
        };
        let Some(item) = self.table.get(&run_pk(&card.model), &run_sk(&card.run_id)).await? else {
            return unknown(format!("no run {} of model {} was dispatched", card.run_id, card.model));
        };
        let run: RunRecord = item.to_record()?;
        if run.dataset != card.dataset || run.snapshot != card.snapshot {
            return unknown(format!(
                "run {} trained on {}/{}, the card says {}/{}",
                run.run_id, run.dataset, run.snapshot, card.dataset, card.snapshot
            ));
        }
        if card.point >= run.point_count() {
            return unknown(format!("run {} has {} points, the card names point {}", run.run_id, run.point_count(), card.point));
        }
        let prefix = run.output_prefix(card.point);
        if !card.artifact.key.starts_with(&prefix) || card.artifact.key.contains("..") {
            return unknown(format!("the artifact {} is not under the run's prefix {prefix}", card.artifact.key));
        }
        Ok(Ok(()))
    }

    async fn snapshot(&self, dataset: &str, id: &str) -> Result<Option<Snapshot>, RegisterError> {
        match self.objects.get(&self.config.store_bucket, &descriptor_key(dataset, id), 64 << 20).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(ObjectStoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn evaluate(
        &self,
        model: &Runner,
        labels: &[String],
        settings: &DetectionSettings,
        snapshot: &Snapshot,
    ) -> Result<TaskEvaluation, RegisterError> {
        let (raw, store) = (&self.config.raw_bucket, &self.config.store_bucket);
        Ok(evaluate_on_test_split(model, labels, settings, self.objects.as_ref(), raw, store, snapshot).await?)
    }

    /// Production as the gate sees it for a candidate of `signature` on `snapshot`: its task,
    /// and (only when the task is the same) its score on the candidate's test split, from its
    /// recorded evaluation when that was on the same snapshot, else evaluated afresh.
    async fn production_score(
        &self,
        model: &str,
        alias: &Alias,
        signature: &TaskSignature,
        policy: &GatePolicy,
        snapshot: &Snapshot,
    ) -> Result<Option<ProductionScore>, RegisterError> {
        let Some(current) = registry::get_version(self.table.as_ref(), model, alias.version).await? else { return Ok(None) };
        let theirs = TaskSignature::of(&current);
        let mut score = ProductionScore { version: current.version, signature: theirs.clone(), score: None };
        if !theirs.as_ref().is_some_and(|theirs| signature.same_task(theirs)) {
            // Another task: the gate refuses it by its signature; scoring production on a split
            // of labels it never learned would only say 0.0.
            return Ok(Some(score));
        }
        if let (Some(lineage), Some(evaluation)) = (&current.lineage, current.evaluation_score()) {
            if lineage.snapshot == snapshot.id {
                score.score = policy.score(&evaluation);
                return Ok(Some(score));
            }
        }
        let (Some(artifact), Some(input)) = (&current.artifact, &current.input) else { return Ok(Some(score)) };
        let models = &self.config.models_bucket;
        let bytes = self.objects.get_recorded(models, &artifact.key, artifact.version_id.as_deref(), MAX_MODEL_BYTES).await?;
        if let Ok(loaded) = Runner::load(&bytes, current.task, input, current.labels.len(), current.output_layout) {
            let evaluation = self.evaluate(&loaded, &current.labels, &current.detection_settings(), snapshot).await?;
            score.score = policy.score(&evaluation.score());
        }
        Ok(Some(score))
    }

    async fn decide(
        &self,
        model: &str,
        version: u32,
        score: &Score,
        signature: &TaskSignature,
        snapshot: &Snapshot,
    ) -> Result<(GateDecision, Option<(Alias, u64)>), RegisterError> {
        let policy = registry::gate_policy(self.table.as_ref(), model, self.config.default_gate(signature.task)).await?;
        let current = registry::production(self.table.as_ref(), model).await?;
        let production = match &current {
            Some((alias, _)) => self.production_score(model, alias, signature, &policy, snapshot).await?,
            None => None,
        };
        Ok((registry::gate(model, version, score, signature, &policy, production.as_ref()), current))
    }

    /// A redelivered card whose version passed the gate but whose promotion did not happen (the
    /// alias write failed): judge it again against production as it is now, and promote it.
    async fn finish_promotion(&self, record: ModelVersion) -> Result<(), RegisterError> {
        let passed = record.gate.as_ref().is_some_and(|g| g.passed);
        if record.status != VersionStatus::Registered || !passed {
            return Ok(());
        }
        if let Some((alias, _)) = registry::production(self.table.as_ref(), &record.model).await? {
            if alias.version == record.version || alias.previous.contains(&record.version) {
                return Ok(());
            }
        }
        // The whole evaluation, not the summary a large one leaves on the record: the record is
        // written again, and must keep pointing at (or holding) all of it.
        let evaluation = match record.task {
            Task::Classification => registry::full_evaluation(self.objects.as_ref(), &self.config.store_bucket, &record)
                .await?
                .map(TaskEvaluation::Classification),
            Task::Detection => record.detection.clone().map(TaskEvaluation::Detection),
        };
        let (Some(lineage), Some(evaluation)) = (record.lineage.clone(), evaluation) else { return Ok(()) };
        let Some(snapshot) = self.snapshot(&lineage.dataset, &lineage.snapshot).await? else { return Ok(()) };
        info!(model = %record.model, version = record.version, "finishing the promotion a failed attempt left undone");
        let now = self.clock.now().to_rfc3339();
        self.promote_if_it_passes(record, evaluation, &snapshot, now).await?;
        Ok(())
    }

    async fn register_and_promote(
        &self,
        key: &str,
        version: u32,
        candidate: Verified,
        now: String,
    ) -> Result<Outcome, RegisterError> {
        let Verified { card, snapshot, evaluation } = candidate;
        let record = ModelVersion {
            model: card.model.clone(),
            version,
            status: VersionStatus::Registered,
            reason_code: None,
            reason: None,
            card_key: key.into(),
            task: card.task,
            artifact: Some(card.artifact.clone()),
            labels: card.labels.clone(),
            input: Some(card.input.clone()),
            output_layout: card.output_layout,
            detection_settings: card.detection,
            lineage: Some(Lineage {
                run_id: card.run_id.clone(),
                point: card.point,
                dataset: card.dataset.clone(),
                snapshot: card.snapshot.clone(),
                trainer_version: card.trainer.version.clone(),
                hyperparameters: card.hyperparameters.clone(),
            }),
            evaluation: None,
            evaluation_key: None,
            detection: None,
            gate: None,
            registered_at: now.clone(),
        };
        let (record, promoted) = self.promote_if_it_passes(record, evaluation, &snapshot, now).await?;
        Ok(Outcome::Registered { version: Box::new(record), promoted })
    }

    /// Decides the gate, writes the version (its evaluation beside it when large), then moves
    /// the alias by a conditional write, deciding again if another promotion got there first.
    async fn promote_if_it_passes(
        &self,
        mut record: ModelVersion,
        evaluation: TaskEvaluation,
        snapshot: &Snapshot,
        now: String,
    ) -> Result<(ModelVersion, bool), RegisterError> {
        let model = record.model.clone();
        let version = record.version;
        let signature = TaskSignature::of(&record).expect("a registered version has lineage");
        let score = evaluation.score();
        let (mut gate, mut current) = self.decide(&model, version, &score, &signature, snapshot).await?;
        record.gate = Some(gate.clone());
        match evaluation {
            TaskEvaluation::Classification(evaluation) => {
                registry::attach_evaluation(self.objects.as_ref(), &self.config.store_bucket, &mut record, evaluation).await?
            }
            // AP per class is four numbers and a name a class: 1,000 classes take about 150 KB,
            // inside a table item's 400 KB.
            TaskEvaluation::Detection(evaluation) => record.detection = Some(evaluation),
        }
        registry::put_version(self.table.as_ref(), &record).await?;
        let mut promoted = false;
        for _ in 0..PROMOTION_ATTEMPTS {
            if !gate.passed {
                break;
            }
            let previous = current.as_ref().map(|(alias, _)| {
                let mut previous = alias.previous.clone();
                previous.push(alias.version);
                previous
            });
            let alias = Alias {
                version,
                previous: previous.unwrap_or_default(),
                updated_at: now.clone(),
                reason: gate.explanation.clone(),
            };
            match registry::swap_production(self.table.as_ref(), &model, current.as_ref().map(|(_, v)| *v), &alias).await {
                Ok(()) => {
                    promoted = true;
                    break;
                }
                Err(TableError::Conflict { .. }) => {
                    // Another version was promoted meanwhile: judge against it instead.
                    (gate, current) = self.decide(&model, version, &score, &signature, snapshot).await?;
                    record.gate = Some(gate.clone());
                    registry::put_version(self.table.as_ref(), &record).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        info!(%model, version, promoted, code = ?gate.code, gate = %gate.explanation, "model registered");
        Ok((record, promoted))
    }
}
