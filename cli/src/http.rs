//! A small HTTP/1 client (hyper, keep-alive where the server allows it) for what the CLI sends to
//! an endpoint itself: the demo's test images and the load benchmark.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    api_key: Option<String>,
}

/// One answer: status, body, and how long the round trip took.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl HttpClient {
    /// `base` is `http://host:port`.
    pub fn new(base: impl Into<String>, api_key: Option<String>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { client, base: base.into().trim_end_matches('/').to_owned(), api_key }
    }

    pub async fn post(&self, path: &str, content_type: &str, body: Bytes) -> anyhow::Result<Answer> {
        let mut request = hyper::Request::post(format!("{}{path}", self.base)).header("content-type", content_type);
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(Full::new(body)).context("building the request")?;
        let started = Instant::now();
        let response = self.client.request(request).await.with_context(|| format!("POST {}{path}", self.base))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
        Ok(Answer { status, body, elapsed: started.elapsed() })
    }
}

/// Latency percentiles of a set of round trips, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut millis: Vec<f64>) -> Option<Self> {
        if millis.is_empty() {
            return None;
        }
        millis.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least q of the samples at or below it.
        let at = |q: f64| millis[((q * millis.len() as f64).ceil() as usize).clamp(1, millis.len()) - 1];
        Some(Self { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: millis[millis.len() - 1] })
    }
}
