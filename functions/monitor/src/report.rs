//! The report records: one per model version and run (`MODEL#<model>` /
//! `MONREPORT#<generated_at>#v<version>`, kept 90 days), and the latest run per model
//! (`MONITOR` / `LATEST#<model>`), which `cvops monitor` and `cvops report` read.

use cvops_core::drift::{Assessment, Status};
use cvops_core::monitoring::RETENTION_SECONDS;
use cvops_core::ports::{Item, Table, TableError, TableExt};
use serde::{Deserialize, Serialize};

use crate::retrain::RetrainDecision;

pub use cvops_core::schema::LATEST_REPORTS_PK as LATEST_PK;
use cvops_core::schema::{latest_report_sk, model_pk, report_sk, LATEST_REPORT_SK_PREFIX};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionReport {
    pub model: String,
    /// `version` is the table's own attribute.
    pub model_version: u32,
    pub production: bool,
    pub dataset: String,
    pub snapshot: String,
    /// The hours (`YYYY-MM-DDTHH`, UTC) the window and the previous window cover.
    pub window: Vec<String>,
    pub previous_window: Vec<String>,
    pub assessment: Assessment,
}

/// One monitor run over one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub model: String,
    pub generated_at: String,
    pub status: Status,
    pub versions: Vec<VersionReport>,
    pub retraining: Option<RetrainDecision>,
}

pub async fn store(table: &dyn Table, report: &ModelReport, now_secs: i64) -> Result<(), TableError> {
    for version in &report.versions {
        let sk = report_sk(&report.generated_at, version.model_version);
        let item = Item::from_record(model_pk(&report.model), sk, version)?.expiring_at(now_secs + RETENTION_SECONDS);
        table.put(item).await?;
    }
    table.put(Item::from_record(LATEST_PK, latest_report_sk(&report.model), report)?).await?;
    Ok(())
}

/// The latest run of every model (or of `model`), by model name.
pub async fn latest(table: &dyn Table, model: Option<&str>) -> Result<Vec<ModelReport>, TableError> {
    let prefix = model.map_or_else(|| LATEST_REPORT_SK_PREFIX.to_owned(), latest_report_sk);
    table
        .query_all(LATEST_PK, &prefix)
        .await?
        .iter()
        .filter(|item| model.is_none_or(|m| item.sk == latest_report_sk(m)))
        .map(|item| item.to_record())
        .collect()
}
