//! Ingest end to end on AWS APIs (moto): the buckets and the table created as the template will,
//! a valid and an invalid image put into the raw bucket, the real S3 event from events/ fed to
//! the AWS-wired handler, and everything read back through the SDK. Delivered again: nothing
//! changes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use cvops_ingest::{IngestConfig, Outcome};
use cvops_tests::events::{s3_event, S3_PUT};
use cvops_tests::moto;

const DIGIT: &[u8] = include_bytes!("../../../samplesets/digits/train/7/0000.png");

#[tokio::test]
async fn ingest_on_aws_indexes_the_valid_image_and_quarantines_the_invalid_one_once() {
    let Some(aws) = moto::config("ingest_on_aws_indexes_the_valid_image_and_quarantines_the_invalid_one_once").await else {
        return;
    };
    let (raw, store, table) = (moto::unique("raw"), moto::unique("store"), moto::unique("cvops"));
    moto::create_bucket(&aws, &raw).await;
    moto::create_bucket(&aws, &store).await;
    moto::create_table(&aws, &table).await;
    let (s3, ddb) = (aws.s3(), aws.dynamodb());
    let ingest = cvops_ingest::Ingest::new(&cvops_aws::ports::new(&aws, &table), IngestConfig::new(&store));

    let good_key = "datasets/digits/train/7/seven été.png";
    let bad_key = "datasets/digits/train/7/cut short.png";
    let good = s3.put_object().bucket(&raw).key(good_key).body(ByteStream::from_static(DIGIT)).send().await.unwrap();
    let bad =
        s3.put_object().bucket(&raw).key(bad_key).body(ByteStream::from_static(&DIGIT[..DIGIT.len() / 2])).send().await.unwrap();
    let good_event =
        s3_event(S3_PUT, &raw, "datasets/digits/train/7/seven+%C3%A9t%C3%A9.png", "0065A1B2C3D4E5F601", good.e_tag());
    let bad_event = s3_event(S3_PUT, &raw, "datasets/digits/train/7/cut+short.png", "0065A1B2C3D4E5F602", bad.e_tag());

    let accepted = ingest.handle(&good_event).await.unwrap();
    assert!(matches!(&accepted[..], [Outcome::Accepted { key, .. }] if key == good_key), "{accepted:?}");
    let rejected = ingest.handle(&bad_event).await.unwrap();
    let [Outcome::Rejected { quarantine_key, .. }] = &rejected[..] else { panic!("{rejected:?}") };

    // The catalog items, read straight from DynamoDB.
    let item = |key: &str| {
        let ddb = ddb.clone();
        let table = table.clone();
        let key = key.to_owned();
        async move {
            ddb.get_item()
                .table_name(&table)
                .key("pk", AttributeValue::S("DS#digits".into()))
                .key("sk", AttributeValue::S(format!("IMG#{key}")))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
                .expect("the catalog item exists")
        }
    };
    let good_item: HashMap<String, AttributeValue> = item(good_key).await;
    assert_eq!(good_item["status"].as_s().unwrap(), "accepted");
    assert_eq!(good_item["label"].as_s().unwrap(), "7");
    assert_eq!(good_item["split"].as_s().unwrap(), "train");
    assert_eq!(good_item["width"].as_n().unwrap(), "28");
    assert_eq!(good_item["sha256"].as_s().unwrap().len(), 64);
    let bad_item = item(bad_key).await;
    assert_eq!(
        (bad_item["status"].as_s().unwrap().as_str(), bad_item["reason"].as_s().unwrap().as_str()),
        ("rejected", "truncated")
    );

    // The quarantined object and its sidecar in the store bucket; the original gone from raw.
    let quarantined = s3.get_object().bucket(&store).key(quarantine_key).send().await.unwrap();
    assert_eq!(quarantined.body.collect().await.unwrap().into_bytes().as_ref(), &DIGIT[..DIGIT.len() / 2]);
    let sidecar = s3.get_object().bucket(&store).key(format!("{quarantine_key}.reason.json")).send().await.unwrap();
    let sidecar: serde_json::Value = serde_json::from_slice(&sidecar.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!((sidecar["reason"].as_str(), sidecar["original_key"].as_str()), (Some("truncated"), Some(bad_key)));
    assert!(s3.head_object().bucket(&raw).key(bad_key).send().await.is_err(), "the invalid original is gone from the raw bucket");
    assert!(s3.head_object().bucket(&raw).key(good_key).send().await.is_ok(), "the valid one stays");

    // Delivered again (at least once): nothing changes, not even a version.
    let versions = (good_item["version"].clone(), bad_item["version"].clone());
    for event in [&good_event, &bad_event] {
        let again = ingest.handle(event).await.unwrap();
        assert!(matches!(&again[..], [Outcome::Ignored { .. }]), "{again:?}");
    }
    assert_eq!((item(good_key).await["version"].clone(), item(bad_key).await["version"].clone()), versions);
    let listed = s3.list_objects_v2().bucket(&store).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(2), "one quarantined object and one sidecar, no copies");
}
