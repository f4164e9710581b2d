//! [`Endpoint`]: the router with its model cache and monitoring feed, built one way for the infer
//! Lambda, `cvops serve` and the tests.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use cvops_core::ports::Ports;

use crate::{router, Feed, InferConfig, Models};

/// What serves predictions: the router, and the feed whose counters must be flushed on a timer
/// and once more at shutdown.
pub struct Endpoint {
    pub router: Router,
    pub feed: Arc<Feed>,
    /// How often the feed's counters are written (`InferConfig::monitor_flush`).
    pub flush_every: Duration,
}

impl Endpoint {
    /// The models cache over the registry and models bucket, the feed into the table (fed by the
    /// router only when `config.monitoring` is on), and the router over both.
    pub fn build(ports: &Ports, config: InferConfig) -> Self {
        let models = Arc::new(Models::new(ports, config.models_bucket.clone(), config.alias_check));
        let feed = Arc::new(Feed::new(ports, config.review_bucket.clone(), config.review_sample_every));
        let flush_every = config.monitor_flush;
        let fed = config.monitoring.then(|| feed.clone());
        Self { router: router(models, config, fed), feed, flush_every }
    }
}
