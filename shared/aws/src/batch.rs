//! The job-runner port on AWS Batch.

use async_trait::async_trait;
use aws_sdk_batch::error::SdkError;
use aws_sdk_batch::types::{
    ArrayProperties, ContainerOverrides, EvaluateOnExit, JobStatus as BatchStatus, KeyValuePair, ResourceRequirement,
    ResourceType, RetryAction, RetryStrategy,
};
use cvops_core::ports::{JobRunner, JobSpec, JobState, JobStatus, JobsError};

use crate::errors::{describe, is_retryable};

/// Attempts in all when the host goes away (spot reclaim, instance failure).
const ATTEMPTS: i32 = 3;

#[derive(Debug, Clone)]
pub struct BatchJobRunner {
    client: aws_sdk_batch::Client,
    job_queue: String,
    job_definition: String,
}

impl BatchJobRunner {
    /// Jobs go to `job_queue` with `job_definition` (name, name:revision or ARN); the definition
    /// holds the image, the spec's `image` is recorded for lineage only.
    pub fn new(client: aws_sdk_batch::Client, job_queue: impl Into<String>, job_definition: impl Into<String>) -> Self {
        Self { client, job_queue: job_queue.into(), job_definition: job_definition.into() }
    }

    /// Retry only when the host went away ("Host EC2 (instance i-...) terminated." is the status
    /// reason Batch gives for spot reclaims and instance failures); a job that fails on its own
    /// (bad data, a bug) exits at once instead of burning GPU hours three times.
    pub fn retry_strategy() -> RetryStrategy {
        RetryStrategy::builder()
            .attempts(ATTEMPTS)
            .evaluate_on_exit(EvaluateOnExit::builder().on_status_reason("Host EC2*").action(RetryAction::Retry).build())
            .evaluate_on_exit(EvaluateOnExit::builder().on_reason("*").action(RetryAction::Exit).build())
            .build()
    }
}

fn backend<E, R>(operation: &str, error: SdkError<E, R>) -> JobsError
where
    E: aws_sdk_batch::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    JobsError::Backend { message: describe(operation, &error), retryable: is_retryable(&error), source: Some(Box::new(error)) }
}

/// Batch's job name rules: up to 128 letters, digits, hyphens and underscores.
fn job_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(128).collect()
}

#[async_trait]
impl JobRunner for BatchJobRunner {
    async fn submit(&self, spec: &JobSpec) -> Result<String, JobsError> {
        if self.job_queue.is_empty() || self.job_definition.is_empty() {
            return Err(JobsError::Invalid(
                "this function has no job queue: CVOPS_JOB_QUEUE and CVOPS_JOB_DEFINITION are not set".into(),
            ));
        }
        if spec.array_size == 0 || spec.array_size > 10_000 {
            return Err(JobsError::Invalid(format!("array size {} is outside 1..=10000", spec.array_size)));
        }
        let mut overrides = ContainerOverrides::builder()
            .set_environment(Some(spec.env.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect()));
        if !spec.command.is_empty() {
            overrides = overrides.set_command(Some(spec.command.clone()));
        }
        if spec.gpus > 0 {
            overrides = overrides.resource_requirements(
                ResourceRequirement::builder().r#type(ResourceType::Gpu).value(spec.gpus.to_string()).build(),
            );
        }
        let mut request = self
            .client
            .submit_job()
            .job_name(job_name(&spec.name))
            .job_queue(&self.job_queue)
            .job_definition(&self.job_definition)
            .container_overrides(overrides.build())
            .retry_strategy(Self::retry_strategy())
            .tags("cvops:image", &spec.image);
        if spec.array_size > 1 {
            request = request.array_properties(ArrayProperties::builder().size(spec.array_size as i32).build());
        }
        let out = request.send().await.map_err(|e| backend("SubmitJob", e))?;
        out.job_id().map(str::to_owned).ok_or_else(|| JobsError::Backend {
            message: "SubmitJob returned no job id".into(),
            retryable: false,
            source: None,
        })
    }

    /// ListJobs with a JOB_NAME filter sees jobs of every status (Batch keeps finished ones for
    /// at least a week), newest first; run ids are unique, so any match is the run's job.
    async fn find(&self, name: &str) -> Result<Option<String>, JobsError> {
        let filter = aws_sdk_batch::types::KeyValuesPair::builder().name("JOB_NAME").values(job_name(name)).build();
        let out = self
            .client
            .list_jobs()
            .job_queue(&self.job_queue)
            .filters(filter)
            .send()
            .await
            .map_err(|e| backend("ListJobs", e))?;
        // An array child's id is `<parent>:<index>`; the run's job is the parent.
        let mut jobs: Vec<_> =
            out.job_summary_list().iter().filter(|job| job.job_id().is_some_and(|id| !id.contains(':'))).collect();
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_at()));
        Ok(jobs.first().and_then(|job| job.job_id()).map(str::to_owned))
    }

    async fn describe(&self, id: &str) -> Result<JobStatus, JobsError> {
        let out = self.client.describe_jobs().jobs(id).send().await.map_err(|e| backend("DescribeJobs", e))?;
        let job = out.jobs().first().ok_or_else(|| JobsError::NotFound(id.to_owned()))?;
        let state = match job.status() {
            Some(BatchStatus::Running) => JobState::Running,
            Some(BatchStatus::Succeeded) => JobState::Succeeded,
            Some(BatchStatus::Failed) => JobState::Failed,
            _ => JobState::Submitted,
        };
        Ok(JobStatus {
            id: id.to_owned(),
            state,
            reason: job.status_reason().map(str::to_owned).filter(|_| state == JobState::Failed),
        })
    }
}
