//! The monitor Lambda, on an EventBridge Scheduler schedule (ScheduleV2): one run per
//! invocation; each version report also printed as a CloudWatch Embedded Metric Format line.

use std::sync::Arc;

use cvops_aws::{env, AwsConfig, DynamoTable, S3ObjectStore, SqsQueue};
use cvops_core::clock::{Clock, SystemClock};
use cvops_monitor::{emf, Monitor, MonitorConfig};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = MonitorConfig::from_lookup(|name| std::env::var(name).ok())?;
    let aws = AwsConfig::from_env().await;
    let monitor = Monitor::new(
        Arc::new(DynamoTable::new(aws.dynamodb(), env::required("CVOPS_TABLE")?)),
        Arc::new(S3ObjectStore::new(aws.s3())),
        Arc::new(SqsQueue::new(aws.sqs())),
        Arc::new(SystemClock),
        config,
    );
    let monitor = &monitor;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let reports =
            monitor.run(None).await.map_err(|e| Diagnostic { error_type: "Retryable".into(), error_message: e.to_string() })?;
        let now = SystemClock.now_millis();
        for version in reports.iter().flat_map(|r| &r.versions) {
            println!("{}", emf::emf_line(version, now));
        }
        let summary: Vec<Value> =
            reports.iter().map(|r| json!({"model": r.model, "status": r.status, "retraining": r.retraining})).collect();
        Ok::<Value, Diagnostic>(json!({ "models": summary }))
    }))
    .await
}
