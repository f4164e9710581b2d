//! Training on AWS APIs (moto): images ingested from S3, a snapshot in the store bucket, the
//! trainer reading them through the S3 adapter and writing model and card to the models bucket,
//! and register-model, wired to S3 and DynamoDB, verifying, evaluating, versioning and promoting.

use std::sync::Arc;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use bytes::Bytes;
use cvops_aws::{DynamoTable, S3ObjectStore};
use cvops_core::metrics::Confusion;
use cvops_core::model_card::{run_prefix, CARD_FILE};
use cvops_core::ports::{ObjectStore, ObjectStoreExt};
use cvops_core::registry;
use cvops_core::snapshot;
use cvops_ingest::IngestConfig;
use cvops_register_model::{Outcome, Register};
use cvops_tests::events::{card_event, s3_event, S3_PUT};
use cvops_tests::moto;
use cvops_tests::platform::digits_dir;
use cvops_tests::training::{record_run, values, Buckets, Quiet};
use cvops_trainer::job::device;
use sha2::Digest;

#[tokio::test(flavor = "multi_thread")]
async fn a_model_trained_from_s3_is_registered_and_promoted_in_dynamodb() {
    let Some(aws) = moto::config("a_model_trained_from_s3_is_registered_and_promoted_in_dynamodb").await else { return };
    let (raw, store, models, table) = (moto::unique("raw"), moto::unique("store"), moto::unique("models"), moto::unique("cvops"));
    for bucket in [&raw, &store, &models] {
        moto::create_bucket(&aws, bucket).await;
    }
    // As the template's models bucket: versioned.
    let enabled = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    aws.s3().put_bucket_versioning().bucket(&models).versioning_configuration(enabled).send().await.unwrap();
    moto::create_table(&aws, &table).await;
    let objects = Arc::new(S3ObjectStore::new(aws.s3()));
    let dynamo = Arc::new(DynamoTable::new(aws.dynamodb(), &table));
    let ingest = cvops_ingest::Ingest::new(&cvops_aws::ports::new(&aws, &table), IngestConfig::new(&store));

    let mut sequence = 0;
    for (split, count) in [("train", 10), ("val", 3), ("test", 3)] {
        for label in 0..10 {
            let dir = digits_dir().join(split).join(label.to_string());
            let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
            paths.sort();
            for path in paths.into_iter().take(count) {
                sequence += 1;
                let key = format!("datasets/digits/{split}/{label}/{}", path.file_name().unwrap().to_string_lossy());
                objects.put(&raw, &key, Bytes::from(std::fs::read(&path).unwrap())).await.unwrap();
                ingest.handle(&s3_event(S3_PUT, &raw, &key, &format!("{sequence:016X}"), None)).await.unwrap();
            }
        }
    }
    let snap =
        snapshot::create(dynamo.as_ref(), objects.as_ref(), &store, "digits", "2026-11-27T00:00:00Z".into()).await.unwrap();
    assert_eq!(snap.samples, 160);

    let buckets = Buckets { raw: raw.clone(), store: store.clone(), models: models.clone() };
    let config = buckets.trainer_config(&snap.id, "run-aws", values(&[("epochs", 2.0), ("width", 4.0)]));
    let card = cvops_trainer::run(&config, objects.as_ref(), &device(), &Quiet).await.unwrap();
    assert_eq!(card.metrics.as_ref().unwrap().test.as_ref().unwrap().images, 30);
    record_run(dynamo.as_ref(), "digits", "run-aws", "digits", &snap.id).await;
    let version_id = card.artifact.version_id.clone().expect("the card names the artifact's S3 version");

    let ports =
        cvops_core::ports::Ports { table: dynamo.clone(), objects: objects.clone(), ..cvops_aws::ports::new(&aws, &table) };
    let register = Register::new(&ports, buckets.register_config(0.0));
    let card_key = format!("{}{CARD_FILE}", run_prefix("digits", "run-aws", 0));
    let outcomes = register.handle(&card_event(&models, &card_key, "0065A1B2C3D4E5F601")).await.unwrap();
    let Outcome::Registered { version, promoted } = &outcomes[0] else { panic!("{outcomes:?}") };
    assert!(promoted);
    assert_eq!((version.version, version.evaluation.as_ref().unwrap().images), (1, 30));
    assert_eq!(registry::production(dynamo.as_ref(), "digits").await.unwrap().unwrap().0.version, 1);
    assert_eq!(
        register.handle(&card_event(&models, &card_key, "0065A1B2C3D4E5F601")).await.unwrap(),
        vec![Outcome::AlreadyRegistered { model: "digits".into(), version: 1 }],
        "a redelivered card event registers nothing new"
    );

    // Whatever is written under the artifact's key later, the registered version reads as it was.
    let artifact = version.artifact.as_ref().unwrap();
    assert_eq!(artifact.version_id.as_deref(), Some(version_id.as_str()));
    objects.put(&models, &artifact.key, Bytes::from_static(b"not the model")).await.unwrap();
    let served = objects.get_recorded(&models, &artifact.key, artifact.version_id.as_deref(), 1 << 30).await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&served)), artifact.sha256);

    // A version of 400 labels: its evaluation goes beside the record, which stays well under
    // DynamoDB's 400 KB item limit, and comes back whole.
    let labels: Vec<String> = (0..400).map(|i| format!("a-rather-long-class-name-{i:03}")).collect();
    let mut confusion = Confusion::new(labels.clone());
    for i in 0..400 {
        confusion.add(i, (i * 7) % 400);
    }
    let mut wide = version.as_ref().clone();
    wide.version = 2;
    wide.labels = labels;
    registry::attach_evaluation(objects.as_ref(), &store, &mut wide, confusion.evaluation()).await.unwrap();
    assert!(wide.evaluation_key.is_some(), "the large evaluation is in the store bucket");
    let item = cvops_core::ports::Item::from_record(registry::model_pk("digits"), registry::version_sk(2), &wide).unwrap();
    let size = serde_json::to_vec(&item.attrs).unwrap().len();
    assert!(size < 100_000, "the version record is {size} bytes");
    registry::put_version(dynamo.as_ref(), &wide).await.unwrap();
    let stored = registry::get_version(dynamo.as_ref(), "digits", 2).await.unwrap().unwrap();
    let whole = registry::full_evaluation(objects.as_ref(), &store, &stored).await.unwrap().unwrap();
    assert_eq!((whole.confusion.len(), whole.per_class.len()), (400, 400));
}
