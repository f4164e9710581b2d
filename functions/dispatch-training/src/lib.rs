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
//! for the same training twice on purpose), and the run record is created with put-if-absent. A
//! redelivered request finds its run and submits nothing, unless the job was never submitted
//! (a failure between the two writes), in which case it submits it then.

pub mod handler;
pub mod request;

pub use handler::{run_pk, run_sk, BatchJobDetail, Dispatch, DispatchConfig, DispatchError, DispatchEvent, RunRecord, RunStatus};
pub use request::{RequestError, TrainingRequest};
