//! The monitor function: on a schedule (EventBridge Scheduler on AWS, a timer in `cvops up`,
//! `cvops monitor` on demand), for each model version that served traffic in the window, compare
//! the window's aggregates (written by the endpoint's monitoring feed) with the baseline of the
//! snapshot the version was trained on, write a report with OK / WARN / DRIFT per metric, and
//! apply the continuous-training rule.
//!
//! - [`handler`]: the run; [`report`]: the records; [`retrain`]: the rule and the cooldown;
//!   [`emf`]: the metrics in CloudWatch Embedded Metric Format; [`config`].

pub mod config;
pub mod emf;
pub mod handler;
pub mod report;
pub mod retrain;

pub use config::MonitorConfig;
pub use handler::Monitor;
pub use report::{ModelReport, VersionReport};
pub use retrain::{RetrainDecision, RetrainRule};

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("table: {0}")]
    Table(#[from] cvops_core::ports::TableError),
    #[error("object store: {0}")]
    Objects(#[from] cvops_core::ports::ObjectStoreError),
    #[error("queue: {0}")]
    Queue(#[from] cvops_core::ports::QueueError),
    #[error("snapshot {key} is unreadable: {why}")]
    Snapshot { key: String, why: String },
}

impl cvops_core::failure::Retryable for MonitorError {
    fn is_retryable(&self) -> bool {
        match self {
            MonitorError::Table(e) => e.is_retryable(),
            MonitorError::Objects(e) => e.is_retryable(),
            MonitorError::Queue(_) => true,
            MonitorError::Snapshot { .. } => false,
        }
    }
}
