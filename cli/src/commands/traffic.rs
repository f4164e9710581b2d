//! Sending a folder of labelled images (`<label>/<file>`) through the endpoint over HTTP, as a
//! client would: what the demo uses to show accuracy and latency as the caller sees them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::Value;

use crate::http::{HttpClient, Percentiles};

/// Labelled images under `dir`: `(label, path)`, in path order.
pub fn labelled_images(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut images = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(2).max_depth(2).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.file_type().is_file() {
            let label = entry.path().parent().and_then(Path::file_name).map(|l| l.to_string_lossy().into_owned());
            images.push((label.unwrap_or_default(), entry.path().to_path_buf()));
        }
    }
    Ok(images)
}

/// What a run of requests gave.
#[derive(Debug)]
pub struct TrafficReport {
    pub sent: usize,
    pub answered: usize,
    pub correct: usize,
    pub latency: Option<Percentiles>,
    pub seconds: f64,
}

impl TrafficReport {
    pub fn print(&self, what: &str) {
        let accuracy = 100.0 * self.correct as f64 / self.answered.max(1) as f64;
        println!(
            "  {what}: {} requests, {} answered, accuracy {accuracy:.2}% ({} of {}), {:.0} requests/s",
            self.sent,
            self.answered,
            self.correct,
            self.answered,
            self.sent as f64 / self.seconds.max(1e-9)
        );
        if let Some(l) = self.latency {
            println!(
                "  latency as the client sees it: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                l.p50, l.p95, l.p99, l.max
            );
        }
    }
}

/// Posts each image (after `transform`, which may alter its bytes) to `model`'s predict route
/// (production, or `version` when pinned), one at a time, and compares the top label with the
/// folder's.
pub async fn send(
    client: &HttpClient,
    model: &str,
    version: Option<u32>,
    images: &[(String, PathBuf)],
    transform: impl Fn(Bytes) -> anyhow::Result<Bytes>,
) -> anyhow::Result<TrafficReport> {
    let pin = version.map(|v| format!("&version={v}")).unwrap_or_default();
    let path = format!("/v1/models/{model}/predict?top_k=1{pin}");
    let started = Instant::now();
    let (mut answered, mut correct, mut millis) = (0, 0, Vec::with_capacity(images.len()));
    for (label, file) in images {
        let bytes = transform(Bytes::from(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?))?;
        let answer = client.post(&path, "image/png", bytes).await?;
        millis.push(answer.elapsed.as_secs_f64() * 1e3);
        if answer.status != 200 {
            bail!("the endpoint answered {} for {}: {}", answer.status, file.display(), String::from_utf8_lossy(&answer.body));
        }
        let body: Value = serde_json::from_slice(&answer.body).context("the endpoint's answer is not JSON")?;
        answered += 1;
        correct += usize::from(body["predictions"][0]["label"].as_str() == Some(label.as_str()));
    }
    Ok(TrafficReport {
        sent: images.len(),
        answered,
        correct,
        latency: Percentiles::of(millis),
        seconds: started.elapsed().as_secs_f64(),
    })
}
