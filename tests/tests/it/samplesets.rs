//! The committed sample sets, through the validator and through the whole local pipeline
//! (`cvops upload`: put into the local raw bucket, S3 event, router, ingest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cvops_core::catalog::images as records;
use cvops_core::catalog::{ImageStatus, QuarantineSidecar};
use cvops_core::config::Vars;
use cvops_core::key::DatasetName;
use cvops_core::ports::{ObjectStore, ObjectStoreExt};
use cvops_core::validate::{validate, ValidationLimits};
use cvops_platform::upload::upload_dir;
use cvops_platform::{LocalPlatform, RAW_BUCKET, STORE_BUCKET};

fn samplesets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets")
}

/// (path under bad/upload, what validate says, what ingest records)
fn expected() -> Vec<(String, String, String)> {
    let tsv = std::fs::read_to_string(samplesets().join("bad/expected.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols[0].to_owned(), cols[1].to_owned(), cols[2].to_owned())
        })
        .collect()
}

#[test]
fn every_bad_file_gets_its_expected_validation_code() {
    let rows = expected();
    assert!(rows.len() >= 20, "the bad set lists {} files", rows.len());
    let mut codes_seen = std::collections::BTreeSet::new();
    for (path, validate_code, ingest_code) in &rows {
        let data = std::fs::read(samplesets().join("bad/upload").join(path)).unwrap();
        let report = validate(&data, &ValidationLimits::default());
        let got = report.rejection.as_ref().map(|r| r.reason.as_str()).unwrap_or("valid");
        assert_eq!(got, validate_code, "{path}: {:?}", report.rejection);
        codes_seen.insert(ingest_code.clone());
    }
    for code in cvops_core::ReasonCode::ALL {
        assert!(codes_seen.contains(code.as_str()), "the bad set has no file for {code}");
    }
}

#[tokio::test]
async fn uploading_the_sample_sets_gives_every_file_its_expected_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::open_with(dir.path(), Vars::from_pairs(&[])).unwrap();
    let dataset = DatasetName::parse("digits").unwrap();

    let digits = upload_dir(&platform, &dataset, &samplesets().join("digits"), &mut ()).await.unwrap();
    assert_eq!((digits.files, digits.accepted, digits.duplicates, digits.failed), (5000, 5000, 0, 0));
    assert_eq!(digits.rejected_total(), 0);

    let bad = upload_dir(&platform, &dataset, &samplesets().join("bad/upload"), &mut ()).await.unwrap();
    assert_eq!(bad.failed, 0);

    let by_key: BTreeMap<String, _> =
        records(platform.table.as_ref(), "digits").await.unwrap().into_iter().map(|r| (r.key.clone(), r)).collect();
    assert_eq!(
        by_key.values().filter(|r| r.status == ImageStatus::Accepted && r.label.as_deref() != Some("mixed")).count(),
        5000
    );
    for (path, _, ingest_code) in expected() {
        let key = format!("datasets/digits/{path}");
        let record = by_key.get(&key).unwrap_or_else(|| panic!("no record for {key}"));
        let got = match record.status {
            ImageStatus::Accepted if record.near_duplicate_of.is_some() => "near_duplicate",
            ImageStatus::Accepted => "accepted",
            ImageStatus::Duplicate => "duplicate",
            ImageStatus::Rejected => record.reason.unwrap().as_str(),
            ImageStatus::Deleted => "deleted",
        };
        assert_eq!(got, ingest_code, "{key}: {:?}", record.message);
        if record.status == ImageStatus::Rejected {
            // Nothing lost: the bytes are in quarantine with the reason, not in the raw bucket.
            let quarantined = record.quarantine_key.as_deref().unwrap();
            let original = std::fs::read(samplesets().join("bad/upload").join(&path)).unwrap();
            assert_eq!(platform.objects.get(STORE_BUCKET, quarantined, 1 << 20).await.unwrap(), original, "{key}");
            let sidecar = platform.objects.get(STORE_BUCKET, &format!("{quarantined}.reason.json"), 1 << 20).await.unwrap();
            let sidecar: QuarantineSidecar = serde_json::from_slice(&sidecar).unwrap();
            assert_eq!(sidecar.reason.as_str(), ingest_code);
            assert!(!platform.objects.exists(RAW_BUCKET, &key).await.unwrap(), "{key} is still in the raw bucket");
        }
    }
    assert_eq!(
        by_key["datasets/digits/mixed/copy-of-0000.png"].duplicate_of.as_deref(),
        Some("datasets/digits/train/0/0000.png")
    );
    // Re-uploading the same folder changes nothing that matters: same bytes, new events, same verdicts.
    let again = upload_dir(&platform, &dataset, &samplesets().join("bad/upload"), &mut ()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates, again.rejected_total()), (bad.accepted, bad.duplicates, bad.rejected_total()));
}
