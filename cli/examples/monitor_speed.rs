//! How long one monitor run takes to turn a model-hour's aggregates into a report: 100,000
//! requests recorded through the endpoint's feed (flushed every 1,000, so spread over the 8
//! shards as a busy container's would be), then the monitor timed over the local table.
//! There is no Python peer for this (../shared/peers has none); the figure stands alone.
//!
//!     cargo run --release -p cvops --example monitor_speed [REQUESTS]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cvops_core::key::Split;
use cvops_core::monitoring::{InputFeatures, Observation};
use cvops_core::ports::ObjectStore;
use cvops_core::registry::{self, Lineage, ModelVersion, VersionStatus};
use cvops_core::snapshot::{descriptor_key, Baseline, Snapshot};
use cvops_infer::Feed;
use cvops_platform::{LocalPlatform, STORE_BUCKET};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests: usize = std::env::args().nth(1).map_or(Ok(100_000), |n| n.parse())?;
    let dir = tempfile::tempdir()?;
    let platform = LocalPlatform::open(dir.path())?;
    let now = platform.clock.now().to_rfc3339();
    let labels: Vec<String> = (0..10).map(|i| i.to_string()).collect();

    // A snapshot whose baseline looks like the traffic, and a production version trained on it.
    let mut baseline = Baseline::default();
    let feature = |i: usize| InputFeatures {
        brightness: 20.0 + (i * 7919 % 400) as f64 / 10.0,
        contrast: 60.0 + (i * 104_729 % 300) as f64 / 10.0,
        sharpness: 2000.0 + (i * 1299 % 5000) as f64,
        width: 28,
        height: 28,
    };
    for i in 0..50_000 {
        baseline.add_features(&feature(i));
    }
    let counts = labels.iter().map(|l| (l.clone(), BTreeMap::from([(Split::Train, 5000u64)]))).collect();
    let snapshot = Snapshot {
        id: "bench".into(),
        dataset: "bench".into(),
        samples: 50_000,
        labels: labels.clone(),
        counts,
        parts: Vec::new(),
        baseline,
        created_at: now.clone(),
        arrivals: Some(50_000),
        val_from_train: None,
        boxes: None,
        split_images: None,
    };
    platform.objects.put(STORE_BUCKET, &descriptor_key("bench", "bench"), Bytes::from(serde_json::to_vec(&snapshot)?)).await?;
    registry::remember_model(platform.table.as_ref(), "bench", &now).await?;
    registry::put_version(
        platform.table.as_ref(),
        &ModelVersion {
            model: "bench".into(),
            version: 1,
            status: VersionStatus::Registered,
            reason_code: None,
            reason: None,
            card_key: "models/bench/card.json".into(),
            artifact: None,
            labels: labels.clone(),
            input: None,
            lineage: Some(Lineage {
                run_id: "bench".into(),
                point: 0,
                dataset: "bench".into(),
                snapshot: "bench".into(),
                trainer_version: "bench".into(),
                hyperparameters: BTreeMap::new(),
            }),
            task: Default::default(),
            output_layout: Default::default(),
            detection_settings: None,
            evaluation: None,
            evaluation_key: None,
            detection: None,
            gate: None,
            registered_at: now.clone(),
        },
    )
    .await?;
    registry::promote(platform.table.as_ref(), "bench", 1, "benchmark", &now).await?;

    let feed = Arc::new(Feed::new(&platform.ports, None, 10));
    let started = Instant::now();
    for i in 0..requests {
        feed.record(
            "bench",
            1,
            &Observation {
                latency_ms: 0.3 + (i % 97) as f64 / 50.0,
                error: i % 500 == 0,
                prediction: Some((i % 10, 0.5 + (i % 50) as f64 / 100.0)),
                boxes: None,
                features: Some(feature(i + 7)),
            },
        );
        if i % 1000 == 999 {
            feed.flush().await?;
        }
    }
    feed.flush().await?;
    let feeding = started.elapsed();

    let started = Instant::now();
    let reports = platform.monitor.run(Some("bench")).await?;
    let report_time = started.elapsed();
    let version = &reports[0].versions[0];
    println!(
        "{requests} requests: recording and flushing {:.0} ms ({:.2} us a request); one monitor run over the model-hour {:.1} ms; status {}, {} requests in the window",
        feeding.as_secs_f64() * 1e3,
        feeding.as_secs_f64() * 1e6 / requests as f64,
        report_time.as_secs_f64() * 1e3,
        version.assessment.status.as_str(),
        version.assessment.service.requests
    );
    Ok(())
}
