//! The single table's schema: every partition and sort key is built here, and nowhere else.
//!
//! One table holds the catalog, snapshots, runs, the registry and monitoring (DynamoDB on AWS,
//! SQLite locally), as adjacency lists under a partition key (`pk`) and a sort key (`sk`): every
//! read is a get or a query by partition and sort-key prefix, never a scan.
//!
//! | items | pk | sk | read by |
//! |---|---|---|---|
//! | dataset names | `DATASETS` | `<dataset>` | `cvops datasets`, the monitor (query) |
//! | image record | `DS#<dataset>` | `IMG#<key>` | snapshots, `cvops health` (query `IMG#`) |
//! | label file record | `DS#<dataset>` | `LBL#<key>` | `cvops health`, snapshots (query `LBL#`); ingest (get) |
//! | class names (`data.yaml`) | `DS#<dataset>` | `CLASSES` | ingest, `cvops health` (get) |
//! | first copy of some bytes | `DS#<dataset>` | `SHA#<sha256>` | ingest's duplicate check (get) |
//! | later copies of those bytes | `DS#<dataset>` | `DUP#<sha256>#<key>` | ingest, when the first goes (query) |
//! | snapshot | `DS#<dataset>` | `SNAP#<id>` | dispatch-training (get) |
//! | near-duplicate band | `PH#<dataset>#<band>#<value>` | `<key>` | ingest (query) |
//! | accepted arrivals, sharded | `ARRIVALS#<dataset>#<shard>` | `ACCEPTED` | continuous training (get x8) |
//! | model names | `MODELS` | `<model>` | `cvops models`, the monitor (query) |
//! | version | `MODEL#<model>` | `VER#<000001>` | registry, endpoint (get; query `VER#`) |
//! | latest version number | `MODEL#<model>` | `LATEST` | register-model (conditional put) |
//! | card registered | `MODEL#<model>` | `CARD#<run>/<point>` | register-model's redelivery check (get) |
//! | alias | `MODEL#<model>` | `ALIAS#production` | endpoint, promotion (get, conditional put) |
//! | gate | `MODEL#<model>` | `GATE` | register-model (get) |
//! | training run | `MODEL#<model>` | `RUN#<run>` | dispatch, register-model, `cvops runs` (get; query `RUN#`) |
//! | job -> run | `JOB#<job id>` | `RUN` | Batch state changes (get) |
//! | retraining rule, last request | `MODEL#<model>` | `RETRAIN#RULE`, `RETRAIN#LAST` | the monitor (get, conditional put) |
//! | monitoring report | `MODEL#<model>` | `MONREPORT#<time>#v<000001>` | history (query), TTL 90 days |
//! | latest report per model | `MONITOR` | `LATEST#<model>` | `cvops monitor`, console (query) |
//! | serving counters, sharded | `MON#<model>#v<n>#<hour>#<shard>` | `AGG` | the monitor (get x8), TTL 90 days |
//! | serving hours index | `MONIDX#<model>` | `<hour>#v<000001>` | the monitor (query) |
//!
//! IAM holds the infer function to the `MODELS`, `MODEL#*`, `MONIDX#*` and `MON#*` partitions
//! (`cvops_aws::iam`), so a prefix here that changes must change there.

use crate::sequencer::Sequencer;

// The catalog.

pub const DATASETS_PK: &str = "DATASETS";
pub const IMAGE_SK_PREFIX: &str = "IMG#";
pub const LABEL_SK_PREFIX: &str = "LBL#";
pub const CLASS_NAMES_SK: &str = "CLASSES";
pub const ARRIVALS_SK: &str = "ACCEPTED";
/// Items the accepted-arrivals counter of a dataset is spread over, so a bulk upload does not
/// make one item hot.
pub const ARRIVAL_SHARDS: u32 = 8;

pub fn dataset_pk(dataset: &str) -> String {
    format!("DS#{dataset}")
}

pub fn image_sk(key: &str) -> String {
    format!("{IMAGE_SK_PREFIX}{key}")
}

pub fn label_sk(key: &str) -> String {
    format!("{LABEL_SK_PREFIX}{key}")
}

pub fn sha_sk(sha256: &str) -> String {
    format!("SHA#{sha256}")
}

/// A duplicate's entry under its bytes' hash: when the first copy goes, one of these takes its
/// place as the sample, so deleting an image never drops bytes that are still uploaded.
pub fn duplicate_sk(sha256: &str, key: &str) -> String {
    format!("{}{key}", duplicates_prefix(sha256))
}

pub fn duplicates_prefix(sha256: &str) -> String {
    format!("DUP#{sha256}#")
}

pub fn band_pk(dataset: &str, band: usize, value: u64) -> String {
    format!("PH#{dataset}#{band}#{value:04x}")
}

/// The arrivals shard of an image, from its content hash.
pub fn arrivals_pk(dataset: &str, sha256: &str) -> String {
    let shard = u32::from_str_radix(sha256.get(..2).unwrap_or("0"), 16).unwrap_or(0) % ARRIVAL_SHARDS;
    arrivals_shard_pk(dataset, shard)
}

pub fn arrivals_shard_pk(dataset: &str, shard: u32) -> String {
    format!("ARRIVALS#{dataset}#{shard}")
}

pub fn snapshot_sk(id: &str) -> String {
    format!("SNAP#{id}")
}

// The registry and runs.

pub const MODELS_PK: &str = "MODELS";
pub const VERSION_SK_PREFIX: &str = "VER#";
pub const LATEST_VERSION_SK: &str = "LATEST";
pub const GATE_SK: &str = "GATE";
pub const RUN_SK_PREFIX: &str = "RUN#";
/// The sort key of a job's pointer to its run.
pub const JOB_RUN_SK: &str = "RUN";

pub fn model_pk(model: &str) -> String {
    format!("MODEL#{model}")
}

pub fn version_sk(version: u32) -> String {
    format!("{VERSION_SK_PREFIX}{version:06}")
}

pub fn card_sk(run_id: &str, point: u32) -> String {
    format!("CARD#{run_id}/{point}")
}

pub fn alias_sk(alias: &str) -> String {
    format!("ALIAS#{alias}")
}

/// Runs live in their model's partition.
pub fn run_pk(model: &str) -> String {
    model_pk(model)
}

pub fn run_sk(run_id: &str) -> String {
    format!("{RUN_SK_PREFIX}{run_id}")
}

pub fn job_pk(job_id: &str) -> String {
    format!("JOB#{job_id}")
}

// Monitoring and continuous training.

pub const AGGREGATE_SK: &str = "AGG";
pub const LATEST_REPORTS_PK: &str = "MONITOR";
pub const LATEST_REPORT_SK_PREFIX: &str = "LATEST#";
pub const RETRAIN_RULE_SK: &str = "RETRAIN#RULE";
pub const RETRAIN_LAST_SK: &str = "RETRAIN#LAST";

pub fn aggregate_pk(model: &str, version: u32, hour: &str, shard: u32) -> String {
    format!("MON#{model}#v{version}#{hour}#{shard}")
}

pub fn monitoring_index_pk(model: &str) -> String {
    format!("MONIDX#{model}")
}

pub fn monitoring_index_sk(hour: &str, version: u32) -> String {
    format!("{hour}#v{version:06}")
}

pub fn report_sk(generated_at: &str, version: u32) -> String {
    format!("MONREPORT#{generated_at}#v{version:06}")
}

pub fn latest_report_sk(model: &str) -> String {
    format!("{LATEST_REPORT_SK_PREFIX}{model}")
}

// Object keys in the store bucket that records point at.

/// The quarantine location (store bucket) of a rejected upload: unique per event, so a later
/// bad upload to the same key never overwrites an earlier one.
pub fn quarantine_key(raw_key: &str, sequencer: &Sequencer) -> String {
    format!("quarantine/{raw_key}/{}", sequencer.as_str())
}

pub fn quarantine_sidecar_key(quarantine_key: &str) -> String {
    format!("{quarantine_key}.reason.json")
}

pub fn descriptor_key(dataset: &str, id: &str) -> String {
    format!("snapshots/{dataset}/{id}.json")
}

/// Where a version's whole evaluation goes in the store bucket when it is too large to inline.
pub fn evaluation_key(model: &str, version: u32) -> String {
    format!("registry/{model}/{}/evaluation.json", version_sk(version).replace('#', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_sort_in_number_order() {
        assert!(version_sk(9) < version_sk(10));
        assert!(monitoring_index_sk("2026-01-01T00", 9) < monitoring_index_sk("2026-01-01T00", 10));
    }

    #[test]
    fn each_record_kind_has_a_prefix_no_other_kind_in_its_partition_starts_with() {
        let model_partition = [
            version_sk(1),
            LATEST_VERSION_SK.into(),
            card_sk("r", 0),
            alias_sk("production"),
            GATE_SK.into(),
            run_sk("r"),
            RETRAIN_RULE_SK.into(),
            RETRAIN_LAST_SK.into(),
            report_sk("t", 1),
        ];
        for prefix in [VERSION_SK_PREFIX, RUN_SK_PREFIX] {
            assert_eq!(model_partition.iter().filter(|sk| sk.starts_with(prefix)).count(), 1, "{prefix}");
        }
        let dataset_partition =
            [image_sk("k"), label_sk("k"), CLASS_NAMES_SK.into(), sha_sk("s"), duplicate_sk("s", "k"), snapshot_sk("i")];
        for prefix in [IMAGE_SK_PREFIX, LABEL_SK_PREFIX] {
            assert_eq!(dataset_partition.iter().filter(|sk| sk.starts_with(prefix)).count(), 1, "{prefix}");
        }
        assert_eq!(evaluation_key("m", 3), "registry/m/VER-000003/evaluation.json");
        assert_eq!(arrivals_pk("d", "ff00"), arrivals_shard_pk("d", 0xff % ARRIVAL_SHARDS));
    }
}
