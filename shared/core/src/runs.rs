//! Training runs: one [`RunRecord`] per dispatched request, under the model's partition
//! (`MODEL#<model>` / `RUN#<run>`), and a `JOB#<job id>` / `RUN` index from a Batch job back to
//! its run. dispatch-training writes them; register-model reads them to check that a model card
//! belongs to a run that was really dispatched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model_card::run_prefix;
pub use crate::schema::{job_pk, run_pk, run_sk, JOB_RUN_SK, RUN_SK_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Recorded, job not yet submitted.
    Pending,
    /// Claimed by one delivery of the request, which is submitting its job.
    Submitting,
    Submitted,
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    /// The run status a Batch job status means.
    pub fn from_batch(status: &str) -> Option<Self> {
        match status {
            "SUBMITTED" | "PENDING" | "RUNNABLE" | "STARTING" => Some(RunStatus::Submitted),
            "RUNNING" => Some(RunStatus::Running),
            "SUCCEEDED" => Some(RunStatus::Succeeded),
            "FAILED" => Some(RunStatus::Failed),
            _ => None,
        }
    }
}

/// One training run: pk `MODEL#<model>`, sk `RUN#<run id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub model: String,
    pub dataset: String,
    pub snapshot: String,
    /// One hyperparameter point per array child, in index order.
    pub points: Vec<BTreeMap<String, f64>>,
    pub reason: Option<String>,
    pub status: RunStatus,
    pub job_id: Option<String>,
    pub status_reason: Option<String>,
    /// Who claimed the submission (`Submitting`), so that only that delivery submits.
    #[serde(default)]
    pub claimed_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl RunRecord {
    /// The job's name: the same for every delivery of the request, so a job submitted by a
    /// delivery whose bookkeeping failed is found again by the next one.
    pub fn job_name(&self) -> String {
        format!("{}-{}", self.model, self.run_id)
    }

    /// Where point `point`'s model and card must lie in the models bucket.
    pub fn output_prefix(&self, point: u32) -> String {
        run_prefix(&self.model, &self.run_id, point)
    }

    /// Array children: one per hyperparameter point, at least one.
    pub fn point_count(&self) -> u32 {
        self.points.len().max(1) as u32
    }
}
