//! `cvops models import` on the local platform: a classifier trained elsewhere (here, exported
//! by a training run of another model) is verified, evaluated on the dataset's test split and
//! gated like a trained one; a wrong labels file, a wrong output size and broken bytes are
//! refused with their codes; importing the same thing twice registers it once.

use cvops_core::ports::ObjectStore;
use cvops_core::preprocess::{InputSpec, ResizeMode};
use cvops_core::registry::{self, VersionStatus};
use cvops_core::snapshot;
use cvops_core::task::Task;
use cvops_platform::import::{import_model, ImportRequest};
use cvops_register_model::Outcome;
use cvops_tests::platform::{TempPlatform, MODELS, STORE};
use cvops_tests::training::{values, Buckets};
use cvops_trainer::job::device;

struct Quiet;

impl cvops_trainer::job::Progress for Quiet {
    fn line(&self, _: &str) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_classifier_meets_the_registrys_rules() {
    let stack = TempPlatform::new();
    stack.upload_digits("digits", [("train", 60), ("val", 10), ("test", 30)]).await;
    let snap = snapshot::create(stack.table.as_ref(), stack.objects.as_ref(), STORE, "digits", "now".into()).await.unwrap();
    // A model trained "elsewhere": a run's ONNX file, taken out of the bucket.
    let config = Buckets::local().trainer_config(&snap.id, "elsewhere", values(&[("epochs", 6.0), ("width", 8.0)]));
    let card = cvops_trainer::run(&config, stack.objects.as_ref(), &device(), &Quiet).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.onnx");
    std::fs::write(&file, stack.objects.get(MODELS, &card.artifact.key, 1 << 30).await.unwrap()).unwrap();
    let trained_accuracy = card.metrics.as_ref().unwrap().test.as_ref().unwrap().accuracy;

    let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let input = InputSpec { name: String::new(), resize: ResizeMode::Squash, ..card.input.clone() };
    let request = ImportRequest {
        model: "imported".into(),
        dataset: "digits".into(),
        labels: labels.clone(),
        input: input.clone(),
        task: Task::Classification,
        output_layout: None,
    };
    let Outcome::Registered { version, .. } = import_model(&stack, &request, &file).await.unwrap() else {
        panic!("not registered")
    };
    let evaluation = version.evaluation.as_ref().expect("evaluated on the test split");
    assert_eq!(evaluation.images, 300);
    assert!(
        (evaluation.accuracy - trained_accuracy).abs() <= 2.0 / 300.0,
        "{} against the trainer's {trained_accuracy}",
        evaluation.accuracy
    );
    let lineage = version.lineage.as_ref().unwrap();
    assert!(lineage.run_id.starts_with("import-") && lineage.snapshot == snap.id, "{lineage:?}");
    assert_eq!(
        registry::get_version(stack.table.as_ref(), "imported", 1).await.unwrap().unwrap().status,
        VersionStatus::Registered
    );

    // The same import again: the same version, nothing new.
    let again = import_model(&stack, &request, &file).await.unwrap();
    assert_eq!(again, Outcome::AlreadyRegistered { model: "imported".into(), version: 1 });

    let refused = |outcome: Outcome| match outcome {
        Outcome::Rejected { version } => version.reason_code.clone().unwrap(),
        other => panic!("not rejected: {other:?}"),
    };
    // Labels that are not the dataset's classes.
    let mut cats = labels.clone();
    cats[3] = "cat".into();
    let wrong = ImportRequest { labels: cats, ..request.clone() };
    assert_eq!(refused(import_model(&stack, &wrong, &file).await.unwrap()), "labels_mismatch");
    // Nine labels for ten outputs.
    let short = ImportRequest { labels: labels[..9].to_vec(), ..request.clone() };
    assert_eq!(refused(import_model(&stack, &short, &file).await.unwrap()), "shape_mismatch");
    // Bytes that are not a model.
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, &std::fs::read(&file).unwrap()[..100]).unwrap();
    assert_eq!(refused(import_model(&stack, &request, &broken).await.unwrap()), "unloadable_model");
}

/// A little-endian float32 `.npy` file's values.
fn npy_values(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_classifier_exported_by_pytorch_imports_and_serves() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use cvops_platform::upload::{upload_dir_as, DatasetFormat};
    use tower::ServiceExt;

    // torchvision's squeezenet1_1 (random weights, ONNX opset 17, symbolic batch), beside the
    // project, with onnxruntime's output for its input.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/squeezenet1_1");
    let input = InputSpec {
        name: String::new(),
        width: 224,
        height: 224,
        channels: 3,
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
        resize: ResizeMode::ShorterSideCrop,
    };
    let model = std::fs::read(shared.join("model.onnx")).unwrap();
    let loaded = cvops_inference::LoadedModel::load(&model, &input, 1000).unwrap();
    let (ours, theirs) = (loaded.logits(&npy_values(&shared.join("input.npy"))).unwrap(), npy_values(&shared.join("output.npy")));
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours.iter().zip(&theirs).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-4 * scale, "tract against onnxruntime: {worst} of {scale}");

    // A dataset of its 1,000 classes: an image each in train, and 20 in test.
    let stack = TempPlatform::new();
    let folder = tempfile::tempdir().unwrap();
    let labels: Vec<String> = (0..1000).map(|i| format!("class{i:03}")).collect();
    for (i, label) in labels.iter().enumerate() {
        for split in if i < 20 { &["train", "test"][..] } else { &["train"][..] } {
            let dir = folder.path().join(split).join(label);
            std::fs::create_dir_all(&dir).unwrap();
            // A picture of its own for each (the first pixel names it): no two are one image.
            let id = [(i % 256) as u8, (i / 256) as u8, u8::from(*split == "test")];
            let picture = image::RgbImage::from_fn(48, 48, |x, y| {
                image::Rgb(if (x, y) == (0, 0) { id } else { [(x * 5) as u8, (y * 5) as u8, (x * y) as u8] })
            });
            picture.save(dir.join("0.png")).unwrap();
        }
    }
    let dataset = cvops_core::key::DatasetName::parse("imagenet").unwrap();
    upload_dir_as(&stack, &dataset, folder.path(), DatasetFormat::Imagefolder, &mut ()).await.unwrap();
    let file = folder.path().join("squeezenet.onnx");
    std::fs::write(&file, &model).unwrap();
    let request = ImportRequest {
        model: "squeezenet".into(),
        dataset: "imagenet".into(),
        labels: labels.clone(),
        input,
        task: Task::Classification,
        output_layout: None,
    };
    let outcome = import_model(&stack, &request, &file).await.unwrap();
    let Outcome::Registered { version, promoted } = outcome else { panic!("not registered: {outcome:?}") };
    assert_eq!(version.evaluation.as_ref().map(|e| e.images), Some(20));
    assert!(!promoted, "random weights stay below the floor");

    // Served, pinned: five of its labels, scores that are probabilities.
    let models = std::sync::Arc::new(cvops_infer::Models::new(&stack.ports, MODELS.into(), std::time::Duration::from_secs(60)));
    let app = cvops_infer::router(models, cvops_infer::InferConfig::new(MODELS), None);
    let png = std::fs::read(folder.path().join("test/class000/0.png")).unwrap();
    let request =
        Request::post("/v1/models/squeezenet/predict?version=1").header("content-type", "image/png").body(Body::from(png));
    let response = app.oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 5, "{answer}");
    assert!(predictions.iter().all(|p| labels.contains(&p["label"].as_str().unwrap().to_owned())), "{answer}");
    assert!(predictions.iter().all(|p| (0.0..=1.0).contains(&p["score"].as_f64().unwrap())), "{answer}");
}
