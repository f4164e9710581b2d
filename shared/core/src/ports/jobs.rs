//! Batch jobs: AWS Batch on AWS, child processes locally.

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no job {0}")]
    NotFound(String),
    #[error("job spec rejected: {0}")]
    Invalid(String),
    #[error("job runner call failed: {message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// What to run. On AWS `image` and `gpus` shape the Batch job; locally `command` is executed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    /// Container image (AWS) - recorded locally, where `command` runs instead.
    pub image: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub gpus: u32,
    /// 1 for a single job; N > 1 for an array job whose children see
    /// `AWS_BATCH_JOB_ARRAY_INDEX` = 0..N-1.
    pub array_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Submitted,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub state: JobState,
    /// Why it failed, when it did.
    pub reason: Option<String>,
}

#[async_trait]
pub trait JobRunner: Send + Sync + Debug {
    async fn submit(&self, spec: &JobSpec) -> Result<String, JobsError>;
    /// The id of a job submitted earlier under `name` (as [`JobSpec::name`]), if there is one:
    /// what makes a redelivered submission safe when the first one's bookkeeping failed.
    async fn find(&self, name: &str) -> Result<Option<String>, JobsError>;
    async fn describe(&self, id: &str) -> Result<JobStatus, JobsError>;
}
