//! The dispatch-training function: training requests in (SQS), runs and GPU jobs out.
//!
//! - [`request`]: the request a team (or the continuous-training rule) sends, validated, with its
//!   hyperparameter sweep expanded into points and its run id derived from its content.
//! - [`handler`]: [`Dispatch`], over the ports: snapshot the dataset if the request names no
//!   snapshot, record the run, submit one job (an array job for a sweep), and follow the job's
//!   state changes. A malformed or impossible request goes to the dead-letter queue with its
//!   reason and is not retried; a transient failure is reported as a batch item failure so SQS
//!   redelivers only that message.
//!
//! Idempotency: the run id is a hash of the request (its `request_id` included, so a team can ask
//! for the same training twice on purpose), and the run record is created with put-if-absent.
//! Before submitting, a delivery claims the run (`SUBMITTING`, a conditional write naming the SQS
//! message id); another message for the same run waits until the claim's lease runs out. The job
//! is named after the run and looked up by that name before any submit, so a redelivered
//! message whose first delivery submitted and then failed to record the job id finds that job
//! and submits nothing new.

pub mod config;
pub mod handler;
pub mod request;

pub use handler::{
    job_pk, run_pk, run_sk, BatchJobDetail, Dispatch, DispatchConfig, DispatchError, DispatchEvent, RunRecord, RunStatus,
};
pub use request::{RequestError, TrainingRequest};
