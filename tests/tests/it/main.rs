//! Every cross-crate test of cvops in one binary (one link instead of one per file): a module per
//! area. Tests against AWS APIs skip themselves unless `CVOPS_TEST_AWS_ENDPOINT` names an
//! AWS-compatible endpoint (scripts/test-all.sh starts moto_server and sets it).

mod aws_batch;
mod aws_conformance;
mod aws_dispatch;
mod aws_ingest;
mod aws_training;
mod cli;
mod detection_eval;
mod detection_formats;
mod detection_ingest;
mod dispatch_local;
mod drift_trials;
mod hostile_bytes;
mod import_detector;
mod import_local;
mod infer_local;
mod ingest_faults;
mod ingest_local;
mod local_conformance;
mod local_queue_delivery;
mod onnx_matches_candle;
mod samplesets;
mod snapshot_local;
mod table_update;
mod template;
mod train_local;
mod validate;
mod watcher_local;
