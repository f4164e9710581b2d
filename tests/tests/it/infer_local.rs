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
use cvops_tests::platform::{TempPlatform, MODELS, RAW, STORE};
use cvops_tests::training::{record_run, values, Buckets, Quiet};
use cvops_trainer::job::device;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "s3cret-key";

/// A stack with model `digits`: v1 in production, v2 (the same network) a candidate.
async fn stack_with_model() -> (TempPlatform, Snapshot) {
    let stack = TempPlatform::new();
    stack.upload_digits("digits", [("train", 30), ("val", 5), ("test", 10)]).await;
    let snap = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits", "2026-11-27T00:00:00Z".into())
        .await
        .unwrap();
    let config = Buckets::local().trainer_config(&snap.id, "run-a", values(&[("epochs", 3.0), ("width", 4.0)]));
    let card = cvops_trainer::run(&config, stack.objects.as_ref(), &device(), &Quiet).await.unwrap();
    for run in ["run-a", "run-b"] {
        record_run(stack.table.as_ref(), "digits", run, "digits", &snap.id).await;
    }
    let register = |floor: f64| Register::new(&stack.ports, Buckets::local().register_config(floor));
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

fn app(stack: &TempPlatform, api_key: Option<&str>, alias_check: Duration, max_body: usize) -> Router {
    let models = Arc::new(Models::new(&stack.ports, MODELS.into(), alias_check));
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
    std::fs::read(cvops_tests::platform::digits_dir().join("test/7/0000.png")).unwrap_or_else(|_| {
        let dir = cvops_tests::platform::digits_dir().join("test/7");
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
    // (path, content type, body, the status and error code it gets)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
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
    let models = Arc::new(Models::new(&stack.ports, MODELS.into(), Duration::from_secs(60)));
    let feed = Arc::new(cvops_infer::Feed::new(&stack.ports, Some(STORE.into()), 1));
    let app = cvops_infer::router(models, InferConfig::new(MODELS), Some(feed.clone()));

    let mut images: Vec<std::path::PathBuf> =
        cvops_tests::platform::files_with_extension(&cvops_tests::platform::digits_dir().join("test"), "png");
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
    let hours = hours_served(table, "digits").await;
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

/// The test digits of the sample set, inverted (white background) or as they are.
fn digits_png(inverted: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for path in cvops_tests::platform::files_with_extension(&cvops_tests::platform::digits_dir().join("test"), "png")
        .into_iter()
        .take(150)
    {
        let mut grey = image::open(&path).unwrap().to_luma8();
        if inverted {
            image::imageops::invert(&mut grey);
        }
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        out.push(png);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn drifted_traffic_is_flagged_and_asks_for_one_retraining_within_the_cooldown() {
    use cvops_core::drift::Status;
    use cvops_core::ports::Queue;
    use cvops_monitor::{Monitor, MonitorConfig};

    let (stack, snap) = stack_with_model().await;
    let db = cvops_local::open_database(&stack.data_dir.as_path().join("queue.sqlite")).unwrap();
    let queue = Arc::new(cvops_local::SqliteQueue::open(db, stack.clock.clone()).unwrap());
    queue.create_queue("training", None, 5).unwrap();
    let mut config = MonitorConfig::new(STORE, "training");
    config.thresholds.min_requests = 100;
    let monitor = Monitor::new(&cvops_core::ports::Ports { queue: queue.clone(), ..stack.ports.clone() }, config);

    // No traffic yet: production is reported, but not judged.
    let reports = monitor.run(None).await.unwrap();
    let digits = reports.iter().find(|r| r.model == "digits").unwrap();
    assert_eq!(digits.status, Status::InsufficientData);
    assert!(!digits.retraining.as_ref().unwrap().requested, "no data, no request");

    let models = Arc::new(Models::new(&stack.ports, MODELS.into(), Duration::from_secs(60)));
    let feed = Arc::new(cvops_infer::Feed::new(&stack.ports, None, 10));
    let app = cvops_infer::router(models, InferConfig::new(MODELS), Some(feed.clone()));
    for png in digits_png(true) {
        let (status, _) = call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, png).await;
        assert_eq!(status, StatusCode::OK);
    }
    feed.flush().await.unwrap();

    let reports = monitor.run(Some("digits")).await.unwrap();
    let report = &reports[0];
    let v1 = report.versions.iter().find(|v| v.production).unwrap();
    assert_eq!(v1.assessment.service.requests, 150);
    assert_eq!(report.status, Status::Drift, "{:#?}", v1.assessment.features);
    let brightness = v1.assessment.features.iter().find(|f| f.feature == "brightness").unwrap();
    assert_eq!(brightness.status, Status::Drift);
    let decision = report.retraining.clone().unwrap();
    assert!(decision.requested, "{decision:?}");
    assert_eq!(decision.trigger.as_deref(), Some("drift"));
    assert!(decision.detail.contains("brightness"), "the request says what drifted: {}", decision.detail);

    // Drift again inside the cooldown: reported, no second request.
    let again = monitor.run(Some("digits")).await.unwrap();
    assert_eq!(again[0].status, Status::Drift);
    let suppressed = again[0].retraining.clone().unwrap();
    assert!(!suppressed.requested && suppressed.suppressed_until.is_some(), "{suppressed:?}");

    let messages = queue.receive("training", 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(messages.len(), 1, "one request for repeated drift inside the cooldown");
    let body: Value = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!((body["dataset"].as_str(), body["model"].as_str()), (Some("digits"), Some("digits")));
    assert!(body["reason"].as_str().unwrap().starts_with("drift: digits v1 drifted: brightness"), "{body}");
    // The request is one dispatch-training accepts.
    let request: cvops_dispatch_training::TrainingRequest = serde_json::from_str(&messages[0].body).unwrap();
    assert_eq!(request.reason.as_deref(), body["reason"].as_str());

    // The latest report is what `cvops monitor` reads.
    let latest = cvops_monitor::report::latest(stack.table.as_ref(), Some("digits")).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].status, Status::Drift);

    // A version whose baseline is gone is skipped, not the whole run.
    stack.objects.delete(STORE, &snapshot::descriptor_key("digits", &snap.id)).await.unwrap();
    let without = monitor.run(None).await.expect("the run goes on without that baseline");
    let digits = without.iter().find(|r| r.model == "digits").unwrap();
    assert!(digits.versions.is_empty() && digits.retraining.is_none(), "{digits:?}");
}

#[tokio::test]
async fn the_cooldown_expires_and_new_images_trigger_a_retraining_too() {
    use cvops_core::clock::ManualClock;
    use cvops_core::ports::Queue;
    use cvops_monitor::retrain::{decide, RetrainRule, Signals};

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_790_000_000_000));
    let db = cvops_local::open_database(&dir.path().join("db.sqlite")).unwrap();
    let table = cvops_local::SqliteTable::open(db.clone(), clock.clone()).unwrap();
    let queue = cvops_local::SqliteQueue::open(db, clock.clone()).unwrap();
    queue.create_queue("training", None, 5).unwrap();
    let rule = RetrainRule { on_drift: true, min_new_images: Some(1000), cooldown_hours: 6.0 };
    let signals = |drift: bool, new_images: u64| Signals {
        model: "m".into(),
        dataset: "d".into(),
        drift: drift.then(|| "brightness PSI 3.1".to_owned()),
        new_images,
    };

    let quiet = decide(&table, &queue, "training", clock.as_ref(), &rule, signals(false, 999)).await.unwrap();
    assert!(!quiet.requested && quiet.trigger.is_none(), "999 new images is under the rule's 1000");
    let first = decide(&table, &queue, "training", clock.as_ref(), &rule, signals(false, 1000)).await.unwrap();
    assert_eq!((first.requested, first.trigger.as_deref()), (true, Some("new_data")));
    for _ in 0..5 {
        clock.advance_millis(3_600_000);
        let storm = decide(&table, &queue, "training", clock.as_ref(), &rule, signals(true, 5000)).await.unwrap();
        assert!(!storm.requested, "inside the 6 h cooldown");
    }
    clock.advance_millis(3_600_000 + 1);
    let after = decide(&table, &queue, "training", clock.as_ref(), &rule, signals(true, 5000)).await.unwrap();
    assert_eq!((after.requested, after.trigger.as_deref()), (true, Some("drift")), "the cooldown is over");
    let messages = queue.receive("training", 10, Duration::from_secs(30)).await.unwrap();
    let reasons: Vec<String> =
        messages.iter().map(|m| serde_json::from_str::<Value>(&m.body).unwrap()["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("new_data: 1000 images")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("drift: brightness")), "{reasons:?}");
}

/// The endpoint's own limits, from the header before decoding: over its pixel limit or its
/// decode budget is 413 `image_too_large` with the validation reason, and counts as an error.
#[tokio::test(flavor = "multi_thread")]
async fn images_over_the_endpoints_own_limits_are_413_from_their_header() {
    let (stack, _) = stack_with_model().await;
    let digit = a_digit(); // 28 x 28 grey: 784 pixels, 784 bytes decoded
    for (max_pixels, max_decoded_bytes, words) in [(700, 1 << 20, "megapixels"), (1_000_000, 700, "decode budget")] {
        let models = Arc::new(Models::new(&stack.ports, MODELS.into(), Duration::from_secs(60)));
        let mut config = InferConfig::new(MODELS);
        config.max_pixels = max_pixels;
        config.max_decoded_bytes = max_decoded_bytes;
        let app = cvops_infer::router(models, config, None);
        let (status, body) = call(&app, "POST", "/v1/models/digits/predict", Some("image/png"), None, digit.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["reason"].as_str()),
            (Some("image_too_large"), Some("too_large"))
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words) && !message.contains("CVOPS_MAX_DECODED_BYTES"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flush_that_fails_part_way_counts_everything_once() {
    use cvops_core::monitoring::{self, Aggregate, Observation, MAX_COUNTERS_PER_UPDATE};
    use cvops_tests::faults::{FaultPlan, FaultyTable};

    let stack = TempPlatform::new();
    let plan = FaultPlan::new();
    let ports = cvops_core::ports::Ports {
        table: Arc::new(FaultyTable { inner: stack.table.clone(), plan: plan.clone() }),
        ..stack.ports.clone()
    };
    let feed = cvops_infer::Feed::new(&ports, None, 10);
    // An hour of a model with 700 classes: more counters than one update carries.
    let mut expected = Aggregate::default();
    for class in 0..700 {
        let observation =
            Observation { latency_ms: 1.0, error: false, prediction: Some((class, 0.9)), boxes: None, features: None };
        feed.record("many", 1, &observation);
        expected.observe(&observation);
    }
    assert!(expected.to_deltas().len() > 2 * MAX_COUNTERS_PER_UPDATE);
    // The index entry, the first group of counters, then the second group fails.
    plan.fail_call(3);
    assert!(feed.flush().await.is_err());
    feed.flush().await.unwrap();
    let table = stack.table.as_ref();
    let window = monitoring::read_window(table, "many", 1, &hours_served(table, "many").await).await.unwrap();
    assert_eq!(window, expected, "what the failed flush wrote is not written again, and what it did not is");
}

/// The hours in which `model` served traffic, from the monitoring index.
async fn hours_served(table: &dyn cvops_core::ports::Table, model: &str) -> Vec<String> {
    cvops_core::ports::TableExt::query_all(table, &cvops_core::monitoring::index_pk(model), "")
        .await
        .unwrap()
        .iter()
        .filter_map(|item| item.str_attr("hour").map(str::to_owned))
        .collect()
}
