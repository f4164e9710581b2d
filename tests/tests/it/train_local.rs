//! Training end to end on the embedded adapters: a digits snapshot, the trainer (candle, CPU),
//! the exported model registered by register-model (tract), the gate, rejection, and the alias.

use std::sync::Mutex;

use bytes::Bytes;
use cvops_core::model_card::{run_prefix, ModelCard, CARD_FILE};
use cvops_core::ports::ObjectStore;
use cvops_core::registry::{self, GatePolicy, VersionStatus};
use cvops_core::snapshot;
use cvops_register_model::{Outcome, Register};
use cvops_tests::events::card_event;
use cvops_tests::faults::{FaultPlan, FaultyTable};
use cvops_tests::platform::{TempPlatform, MODELS, STORE};
use cvops_tests::training::{record_run, values, Buckets};
use cvops_trainer::job::{device, Progress};

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn line(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

fn register(stack: &TempPlatform, floor: f64) -> Register {
    Register::new(&stack.ports, Buckets::local().register_config(floor))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trained_model_is_verified_evaluated_registered_and_promoted() {
    let stack = TempPlatform::new();
    stack.upload_digits("digits", [("train", 100), ("val", 20), ("test", 30)]).await;
    let snap = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits", "2026-11-27T00:00:00Z".into())
        .await
        .unwrap();

    // A small, fast configuration that still has to learn: chance is 10%.
    let config = Buckets::local().trainer_config(&snap.id, "run-a", values(&[("epochs", 8.0), ("width", 8.0)]));
    let lines = Lines::default();
    let card = cvops_trainer::run(&config, stack.objects.as_ref(), &device(), &lines).await.unwrap();
    for run in ["run-a", "run-b", "run-c", "run-g", "run-h"] {
        record_run(stack.table.as_ref(), "digits", run, "digits", &snap.id).await;
    }
    let printed = lines.0.lock().unwrap().clone();
    assert!(printed.iter().filter(|l| l.starts_with("epoch")).count() >= 2, "progress per epoch: {printed:?}");
    assert_eq!(card.metrics.as_ref().unwrap().test.as_ref().unwrap().images, 300);
    assert!(
        card.metrics.as_ref().unwrap().test.as_ref().unwrap().accuracy > 0.6,
        "the model learned: {}",
        card.metrics.as_ref().unwrap().test.as_ref().unwrap().accuracy
    );
    assert_eq!((card.input.channels, card.input.width), (1, 28), "grey 28x28 digits keep their size");
    assert_eq!(card.labels, (0..10).map(|d| d.to_string()).collect::<Vec<_>>());

    // The card lands last and describes the artifact exactly.
    let prefix = run_prefix("digits", "run-a", 0);
    let stored = ModelCard::parse(&stack.objects.get(MODELS, &format!("{prefix}{CARD_FILE}"), 1 << 20).await.unwrap()).unwrap();
    assert_eq!((&stored.artifact, &stored.input, &stored.snapshot), (&card.artifact, &card.input, &card.snapshot));
    let artifact = stack.objects.get(MODELS, &card.artifact.key, 1 << 30).await.unwrap();
    assert_eq!(cvops_tests_sha(&artifact), card.artifact.sha256);

    // register-model: verified, evaluated on its own, version 1, promoted.
    let register = register(&stack, 0.5);
    let event = card_event(MODELS, &format!("{prefix}{CARD_FILE}"), "01");
    let outcomes = register.handle(&event).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("not registered: {outcomes:?}") };
    assert!(promoted);
    assert_eq!(version.version, 1);
    let evaluation = version.evaluation.as_ref().unwrap();
    assert_eq!(evaluation.images, 300);
    assert!(
        (evaluation.accuracy - card.metrics.as_ref().unwrap().test.as_ref().unwrap().accuracy).abs() <= 2.0 / 300.0,
        "tract on the exported model agrees with candle: {} vs {}",
        evaluation.accuracy,
        card.metrics.as_ref().unwrap().test.as_ref().unwrap().accuracy
    );
    let lineage = version.lineage.as_ref().unwrap();
    assert_eq!((lineage.run_id.as_str(), lineage.snapshot.as_str()), ("run-a", snap.id.as_str()));
    assert_eq!(registry::production(stack.table.as_ref(), "digits").await.unwrap().unwrap().0.version, 1);

    // The same event again registers nothing new.
    let again = register.handle(&event).await.unwrap();
    assert_eq!(again, vec![Outcome::AlreadyRegistered { model: "digits".into(), version: 1 }]);

    // A card whose artifact was tampered with: rejected with its reason, production untouched.
    let tampered_prefix = run_prefix("digits", "run-b", 0);
    let mut tampered = card.clone();
    tampered.run_id = "run-b".into();
    tampered.artifact.key = format!("{tampered_prefix}model.onnx");
    let mut bytes = artifact.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    stack.objects.put(MODELS, &tampered.artifact.key, Bytes::from(bytes)).await.unwrap();
    stack.objects.put(MODELS, &format!("{tampered_prefix}{CARD_FILE}"), json(&tampered)).await.unwrap();
    let outcomes = register.handle(&card_event(MODELS, &format!("{tampered_prefix}{CARD_FILE}"), "02")).await.unwrap();
    let Outcome::Rejected { version } = &outcomes[0] else { panic!("not rejected: {outcomes:?}") };
    assert_eq!(
        (version.version, version.status, version.reason_code.as_deref()),
        (2, VersionStatus::Rejected, Some("checksum_mismatch"))
    );
    assert_eq!(registry::production(stack.table.as_ref(), "digits").await.unwrap().unwrap().0.version, 1);

    // A good model that misses the floor is registered but not promoted.
    let copy_prefix = run_prefix("digits", "run-c", 0);
    let mut copy = card.clone();
    copy.run_id = "run-c".into();
    copy.artifact.key = format!("{copy_prefix}model.onnx");
    stack.objects.put(MODELS, &copy.artifact.key, artifact.clone()).await.unwrap();
    stack.objects.put(MODELS, &format!("{copy_prefix}{CARD_FILE}"), json(&copy)).await.unwrap();
    let strict = self::register(&stack, 1.0);
    let outcomes = strict.handle(&card_event(MODELS, &format!("{copy_prefix}{CARD_FILE}"), "03")).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("not registered: {outcomes:?}") };
    assert!(!promoted && !version.gate.as_ref().unwrap().passed);
    assert_eq!(version.version, 3);

    // Manual promotion and rollback move the alias atomically; a rejected version cannot be promoted.
    let now = "2026-11-27T12:00:00Z";
    assert_eq!(registry::promote(stack.table.as_ref(), "digits", 3, "manual", now).await.unwrap().version, 3);
    assert!(registry::promote(stack.table.as_ref(), "digits", 2, "manual", now).await.is_err());
    assert_eq!(registry::rollback(stack.table.as_ref(), "digits", now).await.unwrap().version, 1);
    assert!(registry::rollback(stack.table.as_ref(), "digits", now).await.is_err(), "nothing before v1");

    // A card no dispatched run wrote (put under models/ by hand): rejected, whatever it holds.
    let (forged_key, _) = copy_of(&stack, &card, "run-forged", None).await;
    let outcomes = register.handle(&card_event(MODELS, &forged_key, "04")).await.unwrap();
    let Outcome::Rejected { version } = &outcomes[0] else { panic!("not rejected: {outcomes:?}") };
    assert_eq!((version.version, version.reason_code.as_deref()), (4, Some("unknown_run")));

    // Another task: the same images under other label names, in a dataset of their own. It scores
    // well on its own test split, and production (which knows none of its labels) is not scored
    // 0.0 on it: the candidate stays a candidate, with the command that promotes it by hand.
    stack.upload_digits_as("words", [("train", 0), ("val", 0), ("test", 3)], |digit| format!("digit-{digit}")).await;
    let words = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "words", now.into()).await.unwrap();
    record_run(stack.table.as_ref(), "digits", "run-d", "words", &words.id).await;
    let renamed = ("words", words.id.as_str(), (0..10).map(|d| format!("digit-{d}")).collect::<Vec<_>>());
    let (key, _) = copy_of(&stack, &card, "run-d", Some(renamed)).await;
    let outcomes = register.handle(&card_event(MODELS, &key, "05")).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("not registered: {outcomes:?}") };
    let gate = version.gate.as_ref().unwrap();
    assert!(!promoted, "{gate:?}");
    assert_eq!((gate.code.as_deref(), version.evaluation.as_ref().unwrap().images), (Some("different_labels"), 30));
    assert!(gate.score.unwrap() > 0.6 && gate.production_score.is_none(), "{gate:?}");
    assert!(gate.explanation.contains("cvops promote digits 5"), "{}", gate.explanation);
    assert_eq!(registry::production(stack.table.as_ref(), "digits").await.unwrap().unwrap().0.version, 1);

    // The same labels from another dataset: not promoted by itself either.
    stack.upload_digits("digits-too", [("train", 0), ("val", 0), ("test", 3)]).await;
    let too = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits-too", now.into()).await.unwrap();
    record_run(stack.table.as_ref(), "digits", "run-e", "digits-too", &too.id).await;
    let (key, _) = copy_of(&stack, &card, "run-e", Some(("digits-too", too.id.as_str(), card.labels.clone()))).await;
    let outcomes = register.handle(&card_event(MODELS, &key, "06")).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("not registered: {outcomes:?}") };
    assert!(!promoted);
    assert_eq!(version.gate.as_ref().unwrap().code.as_deref(), Some("different_dataset"));

    // Too few test images for the model's gate: not evaluated, never a score of 0.0 or 1.0.
    let table = stack.table.as_ref();
    registry::set_gate_policy(table, "digits", &GatePolicy { floor: 0.5, min_test_images: 1_000 }).await.unwrap();
    let (key, _) = copy_of(&stack, &card, "run-g", None).await;
    let outcomes = register.handle(&card_event(MODELS, &key, "07")).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("not registered: {outcomes:?}") };
    let gate = version.gate.as_ref().unwrap();
    assert!(!promoted);
    assert_eq!((gate.code.as_deref(), gate.score, version.score()), (Some("not_evaluated"), None, None));
    registry::set_gate_policy(table, "digits", &GatePolicy::with_floor(0.5)).await.unwrap();

    // The alias write fails after the version passed the gate: the redelivered card finishes it.
    let plan = FaultPlan::new();
    let faulty = std::sync::Arc::new(FaultyTable { inner: stack.table.clone(), plan: plan.clone() });
    let flaky =
        Register::new(&cvops_core::ports::Ports { table: faulty, ..stack.ports.clone() }, Buckets::local().register_config(0.5));
    let (key, _) = copy_of(&stack, &card, "run-h", None).await;
    plan.fail_writes_to("ALIAS#");
    assert!(flaky.handle(&card_event(MODELS, &key, "08")).await.is_err(), "the alias could not move");
    assert_eq!(registry::production(table, "digits").await.unwrap().unwrap().0.version, 1);
    plan.heal();
    let again = flaky.handle(&card_event(MODELS, &key, "08")).await.unwrap();
    assert_eq!(again, vec![Outcome::AlreadyRegistered { model: "digits".into(), version: 8 }]);
    assert_eq!(registry::production(table, "digits").await.unwrap().unwrap().0.version, 8, "the promotion was finished");
}

/// Writes a copy of `card` (its artifact too) as run `run_id`'s output, optionally as another
/// dataset, snapshot and labels; returns the card's key and the copy.
async fn copy_of(
    stack: &TempPlatform,
    card: &ModelCard,
    run_id: &str,
    task: Option<(&str, &str, Vec<String>)>,
) -> (String, ModelCard) {
    let prefix = run_prefix("digits", run_id, 0);
    let mut copy = card.clone();
    copy.run_id = run_id.into();
    copy.artifact.key = format!("{prefix}attempt-copy/model.onnx");
    if let Some((dataset, snapshot, labels)) = task {
        (copy.dataset, copy.snapshot, copy.labels) = (dataset.into(), snapshot.into(), labels);
    }
    let artifact = stack.objects.get(MODELS, &card.artifact.key, 1 << 30).await.unwrap();
    stack.objects.put(MODELS, &copy.artifact.key, artifact).await.unwrap();
    let key = format!("{prefix}{CARD_FILE}");
    stack.objects.put(MODELS, &key, json(&copy)).await.unwrap();
    (key, copy)
}

fn json(card: &ModelCard) -> Bytes {
    Bytes::from(serde_json::to_vec(card).unwrap())
}

fn cvops_tests_sha(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A snapshot with boxes trains the reference detector: its card says detection and the YOLO
/// layout, and register-model's mAP on tract agrees with the trainer's on candle.
#[tokio::test(flavor = "multi_thread")]
async fn a_detection_snapshot_trains_the_reference_detector_which_registers_with_its_map() {
    use cvops_core::key::DatasetName;
    use cvops_core::task::{OutputLayout, Task};
    use cvops_platform::upload::{upload_dir_as, DatasetFormat};

    let stack = TempPlatform::new();
    let dataset = DatasetName::parse("digits-det").unwrap();
    let detect_digits = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits");
    upload_dir_as(&stack, &dataset, &detect_digits, DatasetFormat::Yolo, &mut ()).await.unwrap();
    let snap = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits-det", "2026-12-03T00:00:00Z".into())
        .await
        .unwrap();
    // Few epochs and a narrow network: this checks the road, not the recipe (see docs/benchmarks.md).
    let base = Buckets::local().trainer_config(&snap.id, "run-d", values(&[("epochs", 3.0), ("width", 8.0)]));
    let config = cvops_trainer::TrainerConfig {
        model: "detector".into(),
        dataset: "digits-det".into(),
        snapshot_descriptor: snapshot::descriptor_key("digits-det", &snap.id),
        ..base
    };
    let lines = Lines::default();
    let card = cvops_trainer::run(&config, stack.objects.as_ref(), &device(), &lines).await.unwrap();
    assert_eq!((card.task, card.output_layout), (Task::Detection, OutputLayout::Yolo));
    assert_eq!((card.input.channels, card.input.width, card.input.height), (3, 96, 96), "96x96 colour pictures keep their size");
    assert_eq!(card.detection, Some(cvops_core::task::DetectionSettings::default()));
    let metrics = card.metrics.as_ref().unwrap();
    let trained = metrics.test_detection.as_ref().expect("the trainer's own mAP on the test split");
    assert_eq!((trained.images, metrics.test.is_none()), (80, true));
    let losses: Vec<f64> = metrics.history.iter().map(|e| e.loss).collect();
    assert!(losses.len() == 3 && losses[2] < losses[0], "the loss falls: {losses:?}");
    assert!(metrics.history.iter().all(|e| e.val_map50.is_some() && e.val_accuracy.is_none()), "{:?}", metrics.history);
    let printed = lines.0.lock().unwrap().clone();
    assert!(printed.iter().any(|l| l.contains("val mAP@0.5")), "{printed:?}");

    record_run(stack.table.as_ref(), "detector", "run-d", "digits-det", &snap.id).await;
    let event = card_event(MODELS, &format!("{}{CARD_FILE}", run_prefix("detector", "run-d", 0)), "01");
    let outcomes = register(&stack, 0.5).handle(&event).await.unwrap();
    let version = match &outcomes[0] {
        Outcome::Registered { version, .. } | Outcome::Rejected { version } => version,
        other => panic!("not registered: {other:?}"),
    };
    assert_eq!((version.task, version.output_layout), (Task::Detection, OutputLayout::Yolo));
    let evaluated = version.detection.as_ref().expect("register-model's own mAP");
    assert_eq!(evaluated.images, 80);
    assert!(
        (evaluated.map50 - trained.map50).abs() <= 0.01 && (evaluated.map - trained.map).abs() <= 0.01,
        "tract on the export agrees with candle: {} vs {}, {} vs {}",
        evaluated.map50,
        trained.map50,
        evaluated.map,
        trained.map
    );
}
