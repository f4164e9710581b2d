//! The inference router on the embedded adapters: every error status, the API key, scores equal
//! to register-model's evaluation, and a promotion picked up without a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use cvops_core::key::Split;
use cvops_core::model_card::{run_prefix, ModelCard, CARD_FILE};
use cvops_core::ports::ObjectStore;
use cvops_core::registry;
use cvops_core::snapshot::{self, Snapshot};
use cvops_infer::{InferConfig, Models};
use cvops_register_model::Register;
use cvops_tests::events::card_event;
use cvops_tests::local::{LocalStack, MODELS, RAW, STORE};
use cvops_tests::training::{values, Buckets, Quiet};
use cvops_trainer::job::device;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "s3cret-key";

/// A stack with model `digits`: v1 in production, v2 (the same network) a candidate.
async fn stack_with_model() -> (LocalStack, Snapshot) {
    let stack = LocalStack::new();
    stack.upload_digits("digits", [("train", 30), ("val", 5), ("test", 10)]).await;
    let snap = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits", "2026-11-27T00:00:00Z".into())
        .await
        .unwrap();
    let config = Buckets::local().trainer_config(&snap.id, "run-a", values(&[("epochs", 3.0), ("width", 4.0)]));
    let card = cvops_trainer::run(&config, stack.objects.as_ref(), &device(), &Quiet).await.unwrap();
    let register = |floor: f64| {
        Register::new(stack.table.clone(), stack.objects.clone(), stack.clock.clone(), Buckets::local().register_config(floor))
    };
    register(0.0).handle(&card_event(MODELS, &format!("{}{CARD_FILE}", run_prefix("digits", "run-a", 0)), "01")).await.unwrap();
    // v2: the same network under another run, kept out of production by a floor of 1.
    let mut copy: ModelCard = card.clone();
    copy.run_id = "run-b".into();
    copy.artifact.key = format!("{}model.onnx", run_prefix("digits", "run-b", 0));
    let artifact = stack.objects.get(MODELS, &card.artifact.key, 1 << 30).await.unwrap();
    stack.objects.put(MODELS, &copy.artifact.key, artifact).await.unwrap();
    let card_key = format!("{}{CARD_FILE}", run_prefix("digits", "run-b", 0));
    stack.objects.put(MODELS, &card_key, Bytes::from(serde_json::to_vec(&copy).unwrap())).await.unwrap();
    register(1.0).handle(&card_event(MODELS, &card_key, "02")).await.unwrap();
    // A model with a version but no production one.
    registry::remember_model(stack.table.as_ref(), "unpromoted", "2026-11-27T00:00:00Z").await.unwrap();
    (stack, snap)
}

fn app(stack: &LocalStack, api_key: Option<&str>, alias_check: Duration, max_body: usize) -> Router {
    let models = Arc::new(Models::new(stack.table.clone(), stack.objects.clone(), MODELS.into(), alias_check));
    let mut config = InferConfig::new(MODELS);
    config.api_key = api_key.map(str::to_owned);
    config.alias_check = alias_check;
    config.max_body_bytes = max_body;
    cvops_infer::router(models, config, None)
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    key: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = app.clone().oneshot(request.body(body.into()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn a_digit() -> Vec<u8> {
    std::fs::read(cvops_tests::local::digits_dir().join("test/7/0000.png")).unwrap_or_else(|_| {
        let dir = cvops_tests::local::digits_dir().join("test/7");
        let first = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        std::fs::read(first).unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_has_its_status_and_a_json_code() {
    let (stack, _) = stack_with_model().await;
    let app = app(&stack, Some(KEY), Duration::from_secs(60), 64 * 1024);
    let digit = a_digit();
    let predict = "/v1/models/digits/predict";

    let (status, body) = call(&app, "GET", "/healthz", None, None, Body::empty()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")), "health needs no key");
    for key in [None, Some("wrong")] {
        let (status, body) = call(&app, "POST", predict, Some("image/png"), key, digit.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
    let cases: Vec<(&str, Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        ("/v1/models/nope/predict", Some("image/png"), digit.clone(), StatusCode::NOT_FOUND, "unknown_model"),
        ("/v1/models/digits/predict?version=9", Some("image/png"), digit.clone(), StatusCode::NOT_FOUND, "unknown_version"),
        (
            "/v1/models/unpromoted/predict",
            Some("image/png"),
            digit.clone(),
            StatusCode::SERVICE_UNAVAILABLE,
            "no_production_model",
        ),
        (predict, Some("text/plain"), b"hello".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (predict, None, digit.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        (predict, Some("application/json"), b"{\"image_base64\": ".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        (predict, Some("application/json"), b"{\"image_base64\": \"%%%\"}".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        ("/v1/models/digits/predict?top_k=zero", Some("image/png"), digit.clone(), StatusCode::BAD_REQUEST, "malformed_request"),
        (predict, Some("image/png"), vec![0u8; 65 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        (predict, Some("image/png"), digit[..digit.len() / 2].to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "undecodable_image"),
        (
            predict,
            Some("image/png"),
            b"<html>not an image</html>".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable_image",
        ),
        ("/v2/nothing", None, Vec::new(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (uri, content_type, body, expected, code) in cases {
        let (status, answer) = call(&app, "POST", uri, content_type, Some(KEY), body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (expected, Some(code)), "{uri} {content_type:?}: {answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, truncated) = call(&app, "POST", predict, Some("image/png"), Some(KEY), digit[..digit.len() / 2].to_vec()).await;
    assert_eq!(truncated["error"]["reason"].as_str(), Some("truncated"), "the validation reason code: {truncated}");

    // The good paths: raw, JSON with base64, top_k, a pinned version, and the listings.
    let (status, raw) =
        call(&app, "POST", "/v1/models/digits/predict?top_k=3", Some("image/png"), Some(KEY), digit.clone()).await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    assert_eq!(
        (raw["model"].as_str(), raw["version"].as_u64(), raw["predictions"].as_array().unwrap().len()),
        (Some("digits"), Some(1), 3)
    );
    assert!(raw["timings_ms"]["total"].as_f64().unwrap() >= raw["timings_ms"]["infer"].as_f64().unwrap());
    let json_body = serde_json::json!({"image_base64": base64::engine::general_purpose::STANDARD.encode(&digit)}).to_string();
    let (status, via_json) =
        call(&app, "POST", "/v1/models/digits/predict?top_k=3&version=2", Some("application/json"), Some(KEY), json_body).await;
    assert_eq!(status, StatusCode::OK, "{via_json}");
    assert_eq!(via_json["version"].as_u64(), Some(2));
    assert_eq!(via_json["predictions"], raw["predictions"], "the same network gives the same scores");
    let (_, listing) = call(&app, "GET", "/v1/models", None, Some(KEY), Body::empty()).await;
    assert!(
        listing["models"].as_array().unwrap().iter().any(|m| m["name"] == "digits" && m["production_version"] == 1),
        "{listing}"
    );
    let (_, described) = call(&app, "GET", "/v1/models/digits", None, Some(KEY), Body::empty()).await;
    assert_eq!(described["versions"].as_array().unwrap().len(), 2, "{described}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_scores_equal_the_registered_evaluation_and_a_promotion_is_picked_up() {
    let (stack, snap) = stack_with_model().await;
    let app = app(&stack, None, Duration::ZERO, 6_000_000);
    let v1 = registry::get_version(stack.table.as_ref(), "digits", 1).await.unwrap().unwrap();
    let evaluation = v1.evaluation.unwrap();

    // Every test image through HTTP: the same accuracy register-model recorded, image for image.
    let mut lines = Vec::new();
    snapshot::for_each_line(stack.objects.as_ref(), STORE, &snap, |line| lines.push(line)).await.unwrap();
    let mut correct = 0;
    let mut tested = 0;
    for line in lines.iter().filter(|l| l.split == Split::Test) {
        let image = stack.objects.get(RAW, &line.key, 1 << 20).await.unwrap();
        let (status, answer) =
            call(&app, "POST", "/v1/models/digits/predict?top_k=1", Some("image/png"), None, image.to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        tested += 1;
        correct += usize::from(answer["predictions"][0]["label"].as_str() == Some(line.label.as_str()));
    }
    assert_eq!(tested as u64, evaluation.images);
    assert_eq!(correct as f64 / tested as f64, evaluation.accuracy, "HTTP answers are register-model's evaluation");

    // Promote v2: the next request is answered by it, without a restart.
    registry::promote(stack.table.as_ref(), "digits", 2, "test", "2026-11-27T12:00:00Z").await.unwrap();
    let (_, answer) = call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, a_digit()).await;
    assert_eq!(answer["version"].as_u64(), Some(2), "{answer}");
    registry::rollback(stack.table.as_ref(), "digits", "2026-11-27T12:01:00Z").await.unwrap();
    let (_, answer) = call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, a_digit()).await;
    assert_eq!(answer["version"].as_u64(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_feeds_its_versions_hourly_aggregate_and_low_confidence_inputs_are_kept() {
    use cvops_core::monitoring::{self, LOW_CONFIDENCE};
    use cvops_core::ports::ObjectStoreExt;
    use cvops_core::stats::ImageStats;

    let (stack, _) = stack_with_model().await;
    let models = Arc::new(Models::new(stack.table.clone(), stack.objects.clone(), MODELS.into(), Duration::from_secs(60)));
    let feed =
        Arc::new(cvops_infer::Feed::new(stack.table.clone(), stack.objects.clone(), stack.clock.clone(), Some(STORE.into()), 1));
    let app = cvops_infer::router(models, InferConfig::new(MODELS), Some(feed.clone()));

    let mut images: Vec<std::path::PathBuf> = walk_pngs(&cvops_tests::local::digits_dir().join("test"));
    images.truncate(60);
    let mut expected = monitoring::Aggregate::default();
    let mut low_confidence = 0;
    for path in &images {
        let bytes = std::fs::read(path).unwrap();
        let (status, body) =
            call(&app, "POST", "/v1/models/digits/predict?top_k=1", Some("image/png"), None, bytes.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let score = body["predictions"][0]["score"].as_f64().unwrap();
        low_confidence += usize::from(score < LOW_CONFIDENCE);
        let decoded = image::load_from_memory(&bytes).unwrap();
        let stats = ImageStats::of(&decoded.to_luma8());
        expected.features.brightness.add(stats.brightness);
        expected.features.sharpness.add(stats.sharpness);
    }
    for _ in 0..3 {
        let (status, _) =
            call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, b"\x89PNG\r\n\x1a\nbroken".to_vec()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Requests that reach no version (an unknown model) belong to no aggregate.
    call(&app, "POST", "/v1/models/nope/predict", Some("image/png"), None, a_digit()).await;
    assert!(feed.flush().await.unwrap() >= 1, "the pending aggregate is written");

    let table = stack.table.as_ref();
    assert_eq!(monitoring::versions_served(table, "digits", "", "9").await.unwrap(), vec![1], "the index names v1");
    let hours: Vec<String> = cvops_core::ports::TableExt::query_all(table, &monitoring::index_pk("digits"), "")
        .await
        .unwrap()
        .iter()
        .filter_map(|item| item.str_attr("hour").map(str::to_owned))
        .collect();
    let window = monitoring::read_window(table, "digits", 1, &hours).await.unwrap();
    let n = images.len() as u64;
    assert_eq!((window.requests, window.errors), (n + 3, 3), "every request to v1 counts, failures as errors");
    assert_eq!(window.classes.values().sum::<u64>(), n, "one predicted class per answered request");
    assert_eq!(window.latency.total(), n + 3);
    assert_eq!(window.confidence.total(), n);
    assert_eq!(window.low_confidence, low_confidence as u64);
    assert_eq!(window.features.brightness, expected.features.brightness, "the same statistics ingest records");
    assert_eq!(window.features.sharpness, expected.features.sharpness);
    assert_eq!(window.features.width.total(), n);

    // A second flush lands on another shard and is summed with the first.
    for path in images.iter().take(5) {
        call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, std::fs::read(path).unwrap()).await;
    }
    feed.flush().await.unwrap();
    let window = monitoring::read_window(table, "digits", 1, &hours).await.unwrap();
    assert_eq!(window.requests, n + 8);

    // Low-confidence inputs (sampling every one here) are in the store bucket with their scores.
    let mut kept = Vec::new();
    for _ in 0..50 {
        kept = stack.objects.list_all(STORE, "review/digits/v1/").await.unwrap();
        if kept.len() >= 2 * low_confidence {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sidecars: Vec<_> = kept.iter().filter(|o| o.key.ends_with(".json")).collect();
    let pictures: Vec<_> = kept.iter().filter(|o| o.key.ends_with(".png")).collect();
    assert!(low_confidence == 0 || !sidecars.is_empty(), "{low_confidence} low-confidence answers, none kept");
    assert_eq!(sidecars.len(), pictures.len(), "every sidecar has its image");
    for sidecar in sidecars {
        let body: Value = serde_json::from_slice(&stack.objects.get(STORE, &sidecar.key, 1 << 20).await.unwrap()).unwrap();
        assert!(body["predictions"][0]["score"].as_f64().unwrap() < LOW_CONFIDENCE, "{body}");
    }
}

fn walk_pngs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
