//! The ingest function end to end on the embedded adapters, fed the real S3 events in events/.

use bytes::Bytes;
use cvops_core::catalog::{dataset_pk, image_sk, quarantine_sidecar_key, ImageRecord, ImageStatus, QuarantineSidecar};
use cvops_core::key::Split;
use cvops_core::ports::{ObjectStore, ObjectStoreExt, Table};
use cvops_core::ReasonCode;
use cvops_ingest::{Ingest, IngestEvent, Outcome};
use cvops_tests::events::{s3_event, S3_DELETE, S3_PUT};
use cvops_tests::platform::{TempPlatform, RAW, STORE};
use image::{GrayImage, ImageFormat, Luma};

const TEST_EVENT: &[u8] = include_bytes!("../../../events/s3-test-event.json");
const BATCH: &[u8] = include_bytes!("../../../events/s3-batch.json");

struct Fixture {
    stack: TempPlatform,
    ingest: Ingest,
}

fn fixture() -> Fixture {
    let stack = TempPlatform::new();
    let ingest = stack.ingest.clone();
    Fixture { stack, ingest }
}

fn event(template: &[u8], encoded_key: &str, sequencer: &str) -> IngestEvent {
    s3_event(template, RAW, encoded_key, sequencer, None)
}

fn digit_png(seed: u8) -> Bytes {
    let img = GrayImage::from_fn(32, 32, |x, y| {
        let v =
            ((x as u8).wrapping_mul(seed.wrapping_add(3)) ^ (y as u8).wrapping_mul(seed.wrapping_mul(7).wrapping_add(1))) & 0xF0;
        Luma([v])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).unwrap();
    Bytes::from(out.into_inner())
}

impl Fixture {
    async fn record(&self, dataset: &str, key: &str) -> Option<(ImageRecord, u64)> {
        let item = self.stack.table.get(&dataset_pk(dataset), &image_sk(key)).await.unwrap()?;
        Some((item.to_record().unwrap(), item.version))
    }

    async fn upload(&self, key: &str, encoded_key: &str, sequencer: &str, data: Bytes) -> Outcome {
        self.stack.objects.put(RAW, key, data).await.unwrap();
        let mut outcomes = self.ingest.handle(&event(S3_PUT, encoded_key, sequencer)).await.unwrap();
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0)
    }
}

const KEY: &str = "datasets/digits/train/7/my digit été #1.png";
const ENCODED: &str = "datasets/digits/train/7/my+digit+%C3%A9t%C3%A9+%231.png";

#[tokio::test]
async fn a_valid_upload_with_an_encoded_key_is_indexed_with_every_fact() {
    let f = fixture();
    let outcome = f.upload(KEY, ENCODED, "0055AED6DCD90281E5", digit_png(1)).await;
    assert!(matches!(&outcome, Outcome::Accepted { key, split: Split::Train, .. } if key == KEY), "{outcome:?}");
    let (record, _) = f.record("digits", KEY).await.expect("the record is under the decoded key");
    assert_eq!(record.status, ImageStatus::Accepted);
    assert_eq!((record.dataset.as_str(), record.label.as_deref(), record.split), ("digits", Some("7"), Some(Split::Train)));
    assert_eq!((record.width, record.height, record.bit_depth), (Some(32), Some(32), Some(8)));
    assert_eq!(record.color_type.as_deref(), Some("l8"));
    assert_eq!(record.sha256.as_ref().map(String::len), Some(64));
    assert_eq!(record.phash.as_ref().map(String::len), Some(16));
    assert!(record.brightness.is_some() && record.contrast.is_some() && record.sharpness.unwrap() > 0.0);
    assert_eq!(record.sequencer.as_str(), "0055AED6DCD90281E5");
    assert_eq!(record.uploaded_at, "2026-11-27T09:30:12.345+00:00", "the upload time is the event's");
}

#[tokio::test]
async fn the_same_event_twice_changes_nothing() {
    let f = fixture();
    f.upload(KEY, ENCODED, "0055AED6DCD90281E5", digit_png(1)).await;
    let (before, version) = f.record("digits", KEY).await.unwrap();
    let again = f.ingest.handle(&event(S3_PUT, ENCODED, "0055AED6DCD90281E5")).await.unwrap();
    assert!(matches!(again[0], Outcome::Ignored { .. }), "{again:?}");
    let (after, version_after) = f.record("digits", KEY).await.unwrap();
    assert_eq!((before, version), (after, version_after), "not even the version moved");
}

#[tokio::test]
async fn a_remove_deletes_the_record_and_an_older_remove_is_ignored() {
    let f = fixture();
    f.upload(KEY, ENCODED, "0055AED6DCD90281E5", digit_png(1)).await;
    // A remove with an older sequencer (delivered late, from before this upload) is ignored.
    let stale = f.ingest.handle(&event(S3_DELETE, ENCODED, "0055AED6DCD90281A0")).await.unwrap();
    assert!(matches!(stale[0], Outcome::Ignored { .. }), "{stale:?}");
    assert_eq!(f.record("digits", KEY).await.unwrap().0.status, ImageStatus::Accepted);

    f.stack.objects.delete(RAW, KEY).await.unwrap();
    let removed = f.ingest.handle(&event(S3_DELETE, ENCODED, "0055AED6DCD90281F0")).await.unwrap();
    assert_eq!(removed, vec![Outcome::Deleted { key: KEY.into() }]);
    assert_eq!(f.record("digits", KEY).await.unwrap().0.status, ImageStatus::Deleted);
}

#[tokio::test]
async fn a_create_replayed_after_a_newer_remove_does_not_resurrect_the_record() {
    let f = fixture();
    // The object is there (S3 may still serve it to a late reader), but the remove came first.
    f.stack.objects.put(RAW, KEY, digit_png(1)).await.unwrap();
    f.ingest.handle(&event(S3_DELETE, ENCODED, "0055AED6DCD90281F0")).await.unwrap();
    let late = f.ingest.handle(&event(S3_PUT, ENCODED, "0055AED6DCD90281E5")).await.unwrap();
    assert!(matches!(late[0], Outcome::Ignored { .. }), "{late:?}");
    assert_eq!(f.record("digits", KEY).await.unwrap().0.status, ImageStatus::Deleted, "the tombstone holds");
}

#[tokio::test]
async fn an_invalid_upload_is_quarantined_with_its_reason_and_removed_from_raw() {
    let f = fixture();
    let key = "datasets/digits/train/7/cut.png";
    let whole = digit_png(2);
    let outcome = f.upload(key, key, "00A1", whole.slice(..whole.len() / 2)).await;
    let Outcome::Rejected { reason, quarantine_key, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(reason, ReasonCode::Truncated);
    assert_eq!(
        f.stack.objects.get(STORE, &quarantine_key, 1 << 20).await.unwrap(),
        whole.slice(..whole.len() / 2),
        "the bytes are kept"
    );
    let sidecar: QuarantineSidecar =
        serde_json::from_slice(&f.stack.objects.get(STORE, &quarantine_sidecar_key(&quarantine_key), 1 << 20).await.unwrap())
            .unwrap();
    assert_eq!(
        (sidecar.reason, sidecar.original_key.as_str(), sidecar.original_bucket.as_str()),
        (ReasonCode::Truncated, key, RAW)
    );
    assert!(sidecar.message.contains("upload it again"), "{}", sidecar.message);
    assert!(!f.stack.objects.exists(RAW, key).await.unwrap(), "the original is gone from the raw bucket");
    let (record, _) = f.record("digits", key).await.unwrap();
    assert_eq!((record.status, record.reason), (ImageStatus::Rejected, Some(ReasonCode::Truncated)));
    assert_eq!(record.quarantine_key.as_deref(), Some(quarantine_key.as_str()));

    // Ingest's own delete of the original comes back as an event: the rejection stands.
    let echo = f.ingest.handle(&event(S3_DELETE, key, "00A2")).await.unwrap();
    assert!(matches!(echo[0], Outcome::Ignored { .. }));
    assert_eq!(f.record("digits", key).await.unwrap().0.status, ImageStatus::Rejected);
}

#[tokio::test]
async fn a_key_outside_the_layout_is_quarantined_as_bad_key() {
    let f = fixture();
    let outcome = f.upload("uploads/loose file.png", "uploads/loose+file.png", "00B1", digit_png(3)).await;
    assert!(matches!(outcome, Outcome::Rejected { reason: ReasonCode::BadKey, .. }), "{outcome:?}");
    assert!(!f.stack.objects.exists(RAW, "uploads/loose file.png").await.unwrap());
    assert_eq!(f.stack.objects.list_all(STORE, "quarantine/uploads/").await.unwrap().len(), 2, "object and sidecar");
}

#[tokio::test]
async fn an_exact_duplicate_becomes_an_alias_of_the_first_copy() {
    let f = fixture();
    let first = "datasets/digits/5/first.png";
    let second = "datasets/digits/5/second.png";
    let Outcome::Accepted { split, .. } = f.upload(first, first, "00C1", digit_png(4)).await else { panic!() };
    let outcome = f.upload(second, second, "00C2", digit_png(4)).await;
    assert_eq!(outcome, Outcome::Duplicate { key: second.into(), dataset: "digits".into(), duplicate_of: first.into() });
    let (record, _) = f.record("digits", second).await.unwrap();
    assert_eq!((record.status, record.duplicate_of.as_deref()), (ImageStatus::Duplicate, Some(first)));
    assert_eq!(record.split, Some(split), "a duplicate can never straddle splits: the split comes from the bytes");
}

#[tokio::test]
async fn a_near_duplicate_is_flagged_with_the_image_it_resembles() {
    let f = fixture();
    let original = Bytes::from_static(include_bytes!("../../../samplesets/digits/train/0/0000.png"));
    let unrelated = Bytes::from_static(include_bytes!("../../../samplesets/digits/train/1/0000.png"));
    f.upload("datasets/digits/5/a.png", "datasets/digits/5/a.png", "00D1", original.clone()).await;
    f.upload("datasets/digits/5/unrelated.png", "datasets/digits/5/unrelated.png", "00D2", unrelated).await;
    let mut img = image::load_from_memory(&original).unwrap().into_luma8();
    img.put_pixel(3, 3, Luma([255]));
    let mut edited = std::io::Cursor::new(Vec::new());
    img.write_to(&mut edited, ImageFormat::Png).unwrap();
    let outcome = f.upload("datasets/digits/5/b.png", "datasets/digits/5/b.png", "00D3", Bytes::from(edited.into_inner())).await;
    let Outcome::Accepted { near_duplicate_of, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(near_duplicate_of.as_deref(), Some("datasets/digits/5/a.png"));
    let (record, _) = f.record("digits", "datasets/digits/5/b.png").await.unwrap();
    assert!(record.near_duplicate_distance.unwrap() <= 4);
    let (unrelated, _) = f.record("digits", "datasets/digits/5/unrelated.png").await.unwrap();
    assert_eq!(unrelated.near_duplicate_of, None, "an unrelated image is not flagged");
}

#[tokio::test]
async fn the_s3_test_event_is_ignored() {
    let f = fixture();
    let event: IngestEvent = serde_json::from_slice(TEST_EVENT).unwrap();
    let outcomes = f.ingest.handle(&event).await.unwrap();
    assert!(matches!(&outcomes[..], [Outcome::Ignored { key: None, .. }]), "{outcomes:?}");
}

#[tokio::test]
async fn every_record_of_a_batch_is_handled() {
    let f = fixture();
    let mut event: aws_lambda_events::s3::S3Event = serde_json::from_slice(BATCH).unwrap();
    let keys = ["datasets/digits/test/3/a.png", "datasets/digits/3/no split here.png", "uploads/outside-the-layout.png"];
    for (record, (key, seed)) in event.records.iter_mut().zip(keys.iter().zip([10u8, 11, 12])) {
        f.stack.objects.put(RAW, key, digit_png(seed)).await.unwrap();
        record.s3.bucket.name = Some(RAW.into());
        record.s3.object.e_tag = None;
    }
    let outcomes = f.ingest.handle(&IngestEvent::Records(event)).await.unwrap();
    assert!(matches!(&outcomes[0], Outcome::Accepted { split: Split::Test, .. }), "{outcomes:?}");
    assert!(matches!(&outcomes[1], Outcome::Accepted { key, .. } if key == keys[1]), "the '+' decodes to a space: {outcomes:?}");
    assert!(matches!(&outcomes[2], Outcome::Rejected { reason: ReasonCode::BadKey, .. }), "{outcomes:?}");
}

#[tokio::test]
async fn a_new_upload_over_an_accepted_key_replaces_its_index_entries() {
    let f = fixture();
    let key = "datasets/digits/5/reused.png";
    f.upload(key, key, "00E1", digit_png(6)).await;
    f.upload(key, key, "00E2", digit_png(7)).await;
    // The first bytes are free again: uploading them elsewhere is not a duplicate.
    let outcome = f.upload("datasets/digits/5/other.png", "datasets/digits/5/other.png", "00E3", digit_png(6)).await;
    assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
}

#[tokio::test]
async fn deleting_the_first_copy_makes_a_remaining_duplicate_the_sample() {
    let f = fixture();
    let (first, second, third) = ("datasets/digits/5/first.png", "datasets/digits/5/second.png", "datasets/digits/5/third.png");
    f.upload(first, first, "00C1", digit_png(4)).await;
    f.upload(second, second, "00C2", digit_png(4)).await;
    f.upload(third, third, "00C3", digit_png(4)).await;

    f.stack.objects.delete(RAW, first).await.unwrap();
    let removed = f.ingest.handle(&event(S3_DELETE, first, "00C4")).await.unwrap();
    assert_eq!(removed, vec![Outcome::Deleted { key: first.into() }]);
    let statuses = (f.record("digits", second).await.unwrap().0.status, f.record("digits", third).await.unwrap().0.status);
    assert_eq!(statuses, (ImageStatus::Accepted, ImageStatus::Duplicate), "exactly one copy is the sample again");

    // The next snapshot still has the bytes.
    let snap = cvops_core::snapshot::create(
        f.stack.table.as_ref(),
        f.stack.objects.as_ref(),
        STORE,
        "digits",
        "2026-12-01T00:00:00Z".into(),
    )
    .await
    .unwrap();
    assert_eq!(snap.samples, 1);

    // And when that one goes too, the last copy takes over; then nothing is left.
    f.stack.objects.delete(RAW, second).await.unwrap();
    f.ingest.handle(&event(S3_DELETE, second, "00C5")).await.unwrap();
    assert_eq!(f.record("digits", third).await.unwrap().0.status, ImageStatus::Accepted);
    // Uploading the bytes again under a new key is a duplicate of the new sample.
    let again = f.upload("datasets/digits/5/fourth.png", "datasets/digits/5/fourth.png", "00C6", digit_png(4)).await;
    assert!(matches!(again, Outcome::Duplicate { ref duplicate_of, .. } if duplicate_of == third), "{again:?}");
}

#[tokio::test]
async fn the_same_bytes_put_again_under_their_key_are_no_new_arrival() {
    let f = fixture();
    let key = "datasets/digits/train/3/a.png";
    f.upload(key, key, "00D1", digit_png(9)).await;
    f.upload(key, key, "00D2", digit_png(9)).await;
    assert_eq!(cvops_core::catalog::accepted_arrivals(f.stack.table.as_ref(), "digits").await.unwrap(), 1);
    f.upload(key, key, "00D3", digit_png(10)).await;
    assert_eq!(cvops_core::catalog::accepted_arrivals(f.stack.table.as_ref(), "digits").await.unwrap(), 2, "new bytes are");
}
