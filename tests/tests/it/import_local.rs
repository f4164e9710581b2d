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
    let trained_accuracy = card.metrics.as_ref().unwrap().test.accuracy;

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
