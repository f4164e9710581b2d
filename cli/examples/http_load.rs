//! A bounded HTTP load: a fixed number of POSTs of image files to one URL path, `concurrency`
//! at a time, over loopback. Prints one JSON line: latency percentiles (ms), throughput, errors.
//! The same client measures `cvops serve` and the Python peer (bench/http_latency.py runs both).
//!
//!     cargo run --release -p cvops --example http_load -- URL IMAGE_DIR [REQUESTS] [CONCURRENCY]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use cvops::http::{HttpClient, Percentiles};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(dir)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: http_load URL IMAGE_DIR [REQUESTS] [CONCURRENCY]");
    };
    let requests: usize = args.get(2).map_or(Ok(2000), |n| n.parse()).context("REQUESTS")?;
    let concurrency: usize = args.get(3).map_or(Ok(1), |n| n.parse()).context("CONCURRENCY")?;
    let (base, path) = match url.find("://").and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j)) {
        Some(split) => (url[..split].to_owned(), url[split..].to_owned()),
        None => (url.clone(), "/".to_owned()),
    };
    let mut images = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "png") {
            images.push(Bytes::from(std::fs::read(entry.path())?));
        }
    }
    anyhow::ensure!(!images.is_empty(), "no .png files under {dir}");
    let images = Arc::new(images);
    let client = HttpClient::new(base, std::env::var("CVOPS_API_KEY").ok());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, images, next, path) = (client.clone(), images.clone(), next.clone(), path.clone());
            tokio::spawn(async move {
                let (mut millis, mut errors) = (Vec::new(), 0usize);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return (millis, errors);
                    }
                    match client.post(&path, "image/png", images[i % images.len()].clone()).await {
                        Ok(answer) if answer.status == 200 => millis.push(answer.elapsed.as_secs_f64() * 1e3),
                        _ => errors += 1,
                    }
                }
            })
        })
        .collect();
    let (mut millis, mut errors) = (Vec::with_capacity(requests), 0);
    for worker in workers {
        let (m, e) = worker.await?;
        millis.extend(m);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    let p = Percentiles::of(millis).context("no request succeeded")?;
    println!(
        "{}",
        serde_json::json!({
            "requests": requests, "concurrency": concurrency, "errors": errors,
            "p50_ms": p.p50, "p95_ms": p.p95, "p99_ms": p.p99, "max_ms": p.max,
            "requests_per_s": requests as f64 / seconds,
        })
    );
    Ok(())
}
