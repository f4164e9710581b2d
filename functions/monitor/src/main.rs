//! The monitor Lambda, on an EventBridge Scheduler schedule (ScheduleV2): one run per
//! invocation; each version report also printed as a CloudWatch Embedded Metric Format line.

use cvops_aws::lambda::Failure;
use cvops_aws::{env, AwsConfig};
use cvops_core::clock::{Clock, SystemClock};
use cvops_monitor::{emf, Monitor, MonitorConfig};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    env::init_tracing();
    let config = MonitorConfig::from_env()?;
    let ports = cvops_aws::ports::from_env(&AwsConfig::from_env().await)?;
    let monitor = Monitor::new(&ports, config);
    let monitor = &monitor;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let reports = monitor.run(None).await.map_err(Failure)?;
        let now = SystemClock.now_millis();
        for version in reports.iter().flat_map(|r| &r.versions) {
            println!("{}", emf::emf_line(version, now));
        }
        let summary: Vec<Value> =
            reports.iter().map(|r| json!({"model": r.model, "status": r.status, "retraining": r.retraining})).collect();
        Ok::<Value, lambda_runtime::Diagnostic>(json!({ "models": summary }))
    }))
    .await
}
