//! The HTTP API: one axum router, served by `lambda_http` on AWS and by `cvops serve` locally.
//!
//! - `POST /v1/models/{name}/predict`: a raw image body (`Content-Type: image/...`) or JSON
//!   `{"image_base64": ...}`; `?version=` to pin a version; a classifier's `?top_k=` (default 5),
//!   a detector's `?score_threshold=`, `?iou_threshold=`, `?max_detections=` (see [`predict`]).
//! - `GET /v1/models`, `GET /v1/models/{name}`, `GET /healthz`.
//!
//! Bounded on hostile input: at most `max_concurrency` requests in flight under `/v1` (more get
//! 503 `overloaded` with `Retry-After`, not a queue), the body read within `body_read_timeout`
//! (408) and capped at `max_body_bytes` (413), and the image's header checked against the
//! endpoint's own pixel limit and decode budget before a pixel is decoded (413 `image_too_large`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use cvops_core::monitoring::Observation;
use cvops_core::registry::{self, VersionStatus};
use cvops_core::task::Task;
use cvops_core::validate::{inspect_header, ValidationLimits};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::config::InferConfig;
use crate::error::ApiError;
use crate::feed::Feed;
use crate::models::Models;
use crate::predict::{self, PredictQuery};

#[derive(Debug, Clone)]
struct AppState {
    models: Arc<Models>,
    config: Arc<InferConfig>,
    feed: Option<Arc<Feed>>,
    /// One permit per request in flight under `/v1`.
    in_flight: Arc<Semaphore>,
    /// What an image may be here: the body limit, the endpoint's pixel limit and decode budget.
    limits: ValidationLimits,
}

/// The endpoint's router over `models`, feeding `feed` (monitoring) when given.
pub fn router(models: Arc<Models>, config: InferConfig, feed: Option<Arc<Feed>>) -> Router {
    let limits = config.limits();
    let in_flight = Arc::new(Semaphore::new(config.max_concurrency.clamp(1, Semaphore::MAX_PERMITS)));
    let state = AppState { models, config: Arc::new(config), feed, in_flight, limits };
    // The last layer added runs first: the key is checked before a request takes a permit.
    let api = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(describe_model))
        .route("/v1/models/{name}/predict", post(predict))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_concurrency))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorise));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(api)
        .fallback(|| async {
            ApiError::not_found("not_found", "no such route; see GET /v1/models and POST /v1/models/{name}/predict")
        })
        .with_state(state)
}

/// Equal-time comparison, so the key cannot be guessed byte by byte from response times.
fn same_key(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn authorise(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_key(given, key)) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// A permit for the request's whole life, or 503 at once: excess load is refused, not queued.
async fn limit_concurrency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::overloaded(state.config.max_concurrency).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct JsonImage {
    image_base64: String,
}

/// The image bytes of a request: the raw body for `image/*`, the decoded field for JSON.
fn image_bytes(headers: &HeaderMap, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence.starts_with("image/") {
        return Ok(body);
    }
    if essence == "application/json" {
        let parsed: JsonImage = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not the expected JSON ({e}); send {{\"image_base64\": \"...\"}}"),
            )
        })?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(parsed.image_base64.trim())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("image_base64 is not base64: {e}")))?;
        return Ok(decoded.into());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("content type {content_type:?} is not accepted; send the image with an image/* type (image/png, image/jpeg, ...) or JSON with image_base64"),
    ))
}

async fn predict(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let received = Instant::now();
    let body = read_body(body, state.config.max_body_bytes, state.config.body_read_timeout).await?;
    let query = PredictQuery::parse(&query)?;
    let image = image_bytes(&headers, body)?;
    let served = state.models.resolve(&name, query.version).await?;
    let limits = state.limits;
    let monitored = state.feed.is_some();
    // From the header alone: an image over the endpoint's limits (or no image at all) is refused
    // before a pixel is decoded; it still counts as an error of the version it was sent to.
    let result = match inspect_header(&image, &limits) {
        Err(rejection) => Err(ApiError::rejected_image(&rejection)),
        Ok(_) => {
            let (for_worker, image_for_worker) = (served.clone(), image.clone());
            tokio::task::spawn_blocking(move || predict::predict(&for_worker, &image_for_worker, &query, &limits, monitored))
                .await
                .map_err(|e| ApiError::internal(format!("the prediction did not finish: {e}")))
                .and_then(|r| r)
        }
    };
    if let Some(feed) = &state.feed {
        let (model, version) = (&served.record.model, served.record.version);
        let observation = Observation {
            latency_ms: received.elapsed().as_secs_f64() * 1e3,
            error: result.is_err(),
            prediction: result.as_ref().ok().and_then(|p| p.top()),
            boxes: result.as_ref().ok().and_then(|p| p.boxes.clone()),
            features: result.as_ref().ok().and_then(|p| p.features),
        };
        feed.record(model, version, &observation);
        if let Ok(predicted) = &result {
            let label = |i: usize| served.record.labels.get(i).cloned().unwrap_or_else(|| format!("class {i}"));
            let scores: Vec<(String, f32)> = predicted.ranked.iter().map(|&(i, s)| (label(i), s)).collect();
            feed.maybe_sample(model, version, &image, &scores);
        }
    }
    Ok(Json(result?.answer))
}

/// The whole body, at most `limit` bytes (413), within `timeout` (408).
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {limit} bytes; resize the image or send a smaller one"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {:.0} s; send it again", timeout.as_secs_f64()),
        )),
    }
}

async fn list_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let table = state.models.table();
    let mut models = Vec::new();
    for name in registry::models(table).await? {
        let production = registry::production(table, &name).await?.map(|(alias, _)| alias.version);
        models.push(json!({"name": name, "production_version": production}));
    }
    Ok(Json(json!({ "models": models })))
}

async fn describe_model(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let table = state.models.table();
    if !registry::models(table).await?.contains(&name) {
        return Err(ApiError::not_found("unknown_model", format!("there is no model {name}; GET /v1/models lists them")));
    }
    let production = registry::production(table, &name).await?.map(|(alias, _)| alias.version);
    let versions: Vec<Value> = registry::versions(table, &name)
        .await?
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "status": v.status,
                "production": production == Some(v.version),
                "task": v.task,
                "score": v.score(),
                "metric": v.task.metric(),
                // Kept for clients written before detectors: the score, for a classifier.
                "accuracy": v.score().filter(|_| v.task == Task::Classification),
                "labels": if v.status == VersionStatus::Registered { json!(v.labels) } else { Value::Null },
                "input": v.input,
                "registered_at": v.registered_at,
            })
        })
        .collect();
    Ok(Json(json!({"name": name, "production_version": production, "versions": versions})))
}
