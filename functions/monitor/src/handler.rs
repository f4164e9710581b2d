//! One monitor run. Windows are whole UTC hours: the last `window_hours` hours back from now,
//! counted to the hour that contains `now - window_hours` (so a run at 15:05 with one hour looks
//! at 14:00-15:05), and the previous window is the same number of hours just before it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Duration;
use cvops_core::catalog::accepted_arrivals;
use cvops_core::clock::Clock;
use cvops_core::drift::{assess, Status};
use cvops_core::key::Split;
use cvops_core::monitoring::{self, hour_of};
use cvops_core::ports::{ObjectStore, Ports, Queue, Table};
use cvops_core::registry;
use cvops_core::snapshot::{descriptor_key, Snapshot};

use crate::config::MonitorConfig;
use crate::report::{self, ModelReport, VersionReport};
use crate::retrain::{self, Signals};
use crate::MonitorError;

const MAX_DESCRIPTOR_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Monitor {
    table: Arc<dyn Table>,
    objects: Arc<dyn ObjectStore>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    config: MonitorConfig,
}

impl Monitor {
    pub fn new(ports: &Ports, config: MonitorConfig) -> Self {
        let Ports { objects, table, queue, clock, .. } = ports.clone();
        Self { table, objects, queue, clock, config }
    }

    /// The same monitor over a window of `hours` hours (at least 1).
    pub fn set_window_hours(&mut self, hours: u32) {
        self.config.window_hours = hours.max(1);
    }

    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }

    /// Hours from `from_back` hours ago to `to_back` hours ago, oldest first.
    fn hours(&self, from_back: i64, to_back: i64) -> Vec<String> {
        let now = self.clock.now();
        (to_back..=from_back).rev().map(|back| hour_of(&(now - Duration::hours(back)).to_rfc3339())).collect()
    }

    /// Reports on every model (or `only`), stores them, and applies the retraining rule.
    pub async fn run(&self, only: Option<&str>) -> Result<Vec<ModelReport>, MonitorError> {
        let w = i64::from(self.config.window_hours);
        let (window, previous) = (self.hours(w, 0), self.hours(2 * w + 1, w + 1));
        let generated_at = self.clock.now().to_rfc3339();
        let mut snapshots: HashMap<(String, String), Snapshot> = HashMap::new();
        let mut reports = Vec::new();
        for model in registry::models(self.table.as_ref()).await? {
            if only.is_some_and(|m| m != model) {
                continue;
            }
            let production = registry::production(self.table.as_ref(), &model).await?.map(|(alias, _)| alias.version);
            let mut versions =
                monitoring::versions_served(self.table.as_ref(), &model, &window[0], &window[window.len() - 1]).await?;
            versions.extend(production);
            versions.sort_unstable();
            versions.dedup();
            let mut version_reports = Vec::new();
            for version in versions {
                let Some(record) = registry::get_version(self.table.as_ref(), &model, version).await? else { continue };
                let Some(lineage) = record.lineage.clone() else { continue };
                let key = (lineage.dataset.clone(), lineage.snapshot.clone());
                if !snapshots.contains_key(&key) {
                    match self.snapshot(&lineage.dataset, &lineage.snapshot).await {
                        Ok(snapshot) => {
                            snapshots.insert(key.clone(), snapshot);
                        }
                        // One version's lost baseline must not stop the report on every other.
                        Err(e) => {
                            tracing::error!(%model, version, error = %e, "no baseline to compare with; version skipped");
                            continue;
                        }
                    }
                }
                let snapshot = &snapshots[&key];
                let trained: BTreeMap<String, u64> = snapshot
                    .counts
                    .iter()
                    .map(|(label, splits)| (label.clone(), splits.get(&Split::Train).copied().unwrap_or(0)))
                    .collect();
                let current = monitoring::read_window(self.table.as_ref(), &model, version, &window).await?;
                let before = monitoring::read_window(self.table.as_ref(), &model, version, &previous).await?;
                let assessment = assess(
                    &snapshot.baseline,
                    snapshot.boxes.as_ref(),
                    &record.labels,
                    &trained,
                    &current,
                    Some(&before),
                    &self.config.thresholds,
                );
                version_reports.push(VersionReport {
                    model: model.clone(),
                    model_version: version,
                    production: production == Some(version),
                    dataset: lineage.dataset,
                    snapshot: lineage.snapshot,
                    window: window.clone(),
                    previous_window: previous.clone(),
                    assessment,
                });
            }
            let status = version_reports.iter().map(|r| r.assessment.status).max().unwrap_or(Status::InsufficientData);
            let retraining = match version_reports.iter().find(|r| r.production) {
                Some(serving) => {
                    Some(self.retrain(serving, &snapshots[&(serving.dataset.clone(), serving.snapshot.clone())]).await?)
                }
                None => None,
            };
            let report = ModelReport { model, generated_at: generated_at.clone(), status, versions: version_reports, retraining };
            report::store(self.table.as_ref(), &report, self.clock.now_millis() / 1000).await?;
            reports.push(report);
        }
        Ok(reports)
    }

    async fn snapshot(&self, dataset: &str, id: &str) -> Result<Snapshot, MonitorError> {
        let key = descriptor_key(dataset, id);
        let bytes = self.objects.get(&self.config.store_bucket, &key, MAX_DESCRIPTOR_BYTES).await?;
        serde_json::from_slice(&bytes).map_err(|e| MonitorError::Snapshot { key, why: e.to_string() })
    }

    async fn retrain(&self, serving: &VersionReport, snapshot: &Snapshot) -> Result<retrain::RetrainDecision, MonitorError> {
        let a = &serving.assessment;
        let drift = (a.status == Status::Drift).then(|| {
            let mut what: Vec<String> = a
                .features
                .iter()
                .filter(|f| f.status == Status::Drift)
                .map(|f| format!("{} PSI {:.2}, W/sd {:.2}", f.feature, f.psi, f.wasserstein_over_std))
                .collect();
            if a.prediction.status == Status::Drift {
                what.push(format!("predictions PSI {:.2}, JS {:.2}", a.prediction.psi, a.prediction.js_distance));
            }
            if a.confidence.status == Status::Drift {
                what.push(format!("mean confidence {:+.3}", a.confidence.change.unwrap_or(0.0)));
            }
            if a.service.status == Status::Drift {
                what.push(format!("error rate {:.1}%", 100.0 * a.service.error_rate));
            }
            format!("{} v{} drifted: {}", serving.model, serving.model_version, what.join("; "))
        });
        let arrivals = accepted_arrivals(self.table.as_ref(), &serving.dataset).await?;
        let new_images = arrivals.saturating_sub(snapshot.arrivals.unwrap_or(snapshot.samples));
        let rule = retrain::rule_for(self.table.as_ref(), &serving.model, self.config.default_rule).await?;
        let signals = Signals { model: serving.model.clone(), dataset: serving.dataset.clone(), drift, new_images };
        retrain::decide(
            self.table.as_ref(),
            self.queue.as_ref(),
            &self.config.training_queue,
            self.clock.as_ref(),
            &rule,
            signals,
        )
        .await
    }
}
