//! The monitoring feed of the endpoint: each answered request is added to an in-memory
//! aggregate per (model, version, hour), and a flush writes each aggregate with one atomic
//! multi-counter update to a shard of its hour (see `cvops_core::monitoring`). A request pays for
//! a mutex and a few increments, never for a table write; the flush runs on a timer (every
//! `CVOPS_MONITOR_FLUSH_SECONDS`) and at shutdown.
//!
//! Low-confidence inputs are sampled (one in `sample_every`, at most `MAX_SAMPLES_PER_HOUR` per
//! container and hour) into the store bucket under `review/<model>/v<version>/<hour>/`, with a
//! JSON sidecar of the scores, written off the request path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cvops_core::clock::Clock;
use cvops_core::monitoring::{self, Aggregate, Observation, RETENTION_SECONDS};
use cvops_core::ports::{ObjectStore, Ports, Table, TableError};
use cvops_core::validate::Format;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Per container and hour: enough to review, bounded if a model goes badly wrong.
const MAX_SAMPLES_PER_HOUR: u64 = 200;

type WindowKey = (String, u32, String);

#[derive(Debug)]
pub struct Feed {
    table: Arc<dyn Table>,
    objects: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    /// Where low-confidence inputs go; `None` keeps none.
    review_bucket: Option<String>,
    sample_every: u64,
    pending: Mutex<HashMap<WindowKey, Aggregate>>,
    low_confidence_seen: AtomicU64,
    samples_this_hour: Mutex<(String, u64)>,
    /// Rotates over the shards, starting from a per-container offset.
    next_shard: AtomicU32,
}

impl Feed {
    pub fn new(ports: &Ports, review_bucket: Option<String>, sample_every: u64) -> Self {
        // Containers start at different times: their nanoseconds spread the first shards.
        let offset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        Self {
            table: ports.table.clone(),
            objects: ports.objects.clone(),
            clock: ports.clock.clone(),
            review_bucket,
            sample_every: sample_every.max(1),
            pending: Mutex::default(),
            low_confidence_seen: AtomicU64::new(0),
            samples_this_hour: Mutex::new((String::new(), 0)),
            next_shard: AtomicU32::new(offset),
        }
    }

    fn hour(&self) -> String {
        monitoring::hour_of(&self.clock.now().to_rfc3339())
    }

    /// Adds one request to its window. Cheap: no I/O.
    pub fn record(&self, model: &str, version: u32, observation: &Observation) {
        let key = (model.to_owned(), version, self.hour());
        self.pending.lock().expect("feed poisoned").entry(key).or_default().observe(observation);
    }

    /// Keeps the input for review if its top score is low and the sampler picks it. Returns at
    /// once; the write happens on a task of its own.
    pub fn maybe_sample(self: &Arc<Self>, model: &str, version: u32, image: &Bytes, scores: &[(String, f32)]) {
        let Some(bucket) = self.review_bucket.clone() else { return };
        let top = scores.first().map(|(_, s)| f64::from(*s)).unwrap_or(0.0);
        if top >= monitoring::LOW_CONFIDENCE {
            return;
        }
        if !self.low_confidence_seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.sample_every) {
            return;
        }
        let hour = self.hour();
        {
            let mut quota = self.samples_this_hour.lock().expect("feed poisoned");
            if quota.0 != hour {
                *quota = (hour.clone(), 0);
            }
            if quota.1 >= MAX_SAMPLES_PER_HOUR {
                return;
            }
            quota.1 += 1;
        }
        let sha = hex::encode(Sha256::digest(image));
        let key = format!("review/{model}/v{version}/{hour}/{sha}");
        let sidecar = json!({
            "model": model,
            "version": version,
            "received_at": self.clock.now().to_rfc3339(),
            "predictions": scores.iter().map(|(label, score)| json!({"label": label, "score": score})).collect::<Vec<_>>(),
        });
        let (objects, image) = (self.objects.clone(), image.clone());
        tokio::spawn(async move {
            let sidecar = Bytes::from(serde_json::to_vec_pretty(&sidecar).unwrap_or_default());
            let extension = Format::detect(&image).map_or("bin", Format::as_str);
            // The image first: a sidecar always has its image beside it.
            let written = match objects.put(&bucket, &format!("{key}.{extension}"), image).await {
                Ok(_) => objects.put(&bucket, &format!("{key}.json"), sidecar).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::warn!(%key, error = %e, "a low-confidence sample was not kept");
            }
        });
    }

    /// Writes every pending aggregate; what fails to write is put back for the next flush.
    pub async fn flush(&self) -> Result<usize, TableError> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("feed poisoned"));
        let expires_at = self.clock.now_millis() / 1000 + RETENTION_SECONDS;
        let mut written = 0;
        let mut first_error = None;
        for ((model, version, hour), aggregate) in pending {
            let shard = self.next_shard.fetch_add(1, Ordering::Relaxed);
            match monitoring::flush(self.table.as_ref(), &model, version, &hour, shard, &aggregate, expires_at).await {
                Ok(()) => written += 1,
                Err(failed) => {
                    // What the flush did not add waits for the next one; what it added is not
                    // in `unwritten`, so nothing counts twice.
                    let key = (model, version, hour);
                    self.pending.lock().expect("feed poisoned").entry(key).or_default().merge(&failed.unwritten);
                    first_error.get_or_insert(failed.error);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Flushes every `period` until the process ends.
    pub fn spawn_flusher(self: &Arc<Self>, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = feed.flush().await {
                    tracing::warn!(error = %e, "monitoring aggregates not written yet; retrying at the next flush");
                }
            }
        })
    }
}
