//! The Batch job runner against AWS APIs (moto): the job it submits, read back with DescribeJobs,
//! has the queue, definition, GPU requirement, environment, array size and retry strategy asked
//! for. (moto cannot run the container, so the job's own progress is not checked here; the
//! local runner's conformance suite covers the port's behaviour.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_batch::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_batch::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_batch::error::BoxError;

use aws_sdk_batch::types::{
    CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, JobDefinitionType, ResourceRequirement, ResourceType, RetryAction,
};
use cvops_aws::BatchJobRunner;
use cvops_core::ports::{JobRunner, JobSpec};
use cvops_tests::moto;

/// Keeps the body of every request the client sends: the wire truth where moto's DescribeJobs
/// leaves fields out.
#[derive(Debug, Default, Clone)]
struct Wiretap(Arc<Mutex<Vec<String>>>);

impl Intercept for Wiretap {
    fn name(&self) -> &'static str {
        "Wiretap"
    }

    fn read_before_transmit(&self, context: &BeforeTransmitInterceptorContextRef<'_>, _: &RuntimeComponents, _: &mut ConfigBag) -> Result<(), BoxError> {
        if let Some(body) = context.request().body().bytes() {
            self.0.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_submitted_job_has_the_gpu_environment_array_and_retry_strategy_asked_for() {
    let Some(aws) = moto::config("a_submitted_job_has_the_gpu_environment_array_and_retry_strategy_asked_for").await else { return };
    let batch = aws.batch();
    let name = moto::unique("cvops-training");
    let role = moto::create_iam_role(&name);
    let environment = batch
        .create_compute_environment()
        .compute_environment_name(&name)
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(role)
        .send()
        .await
        .expect("CreateComputeEnvironment");
    let queue = batch
        .create_job_queue()
        .job_queue_name(&name)
        .state(aws_sdk_batch::types::JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder().order(1).compute_environment(environment.compute_environment_arn().unwrap()).build(),
        )
        .send()
        .await
        .expect("CreateJobQueue");
    let definition = batch
        .register_job_definition()
        .job_definition_name(&name)
        .r#type(JobDefinitionType::Container)
        .container_properties(
            ContainerProperties::builder()
                .image("123456789012.dkr.ecr.us-east-1.amazonaws.com/cvops-trainer:latest")
                .resource_requirements(ResourceRequirement::builder().r#type(ResourceType::Vcpu).value("4").build())
                .resource_requirements(ResourceRequirement::builder().r#type(ResourceType::Memory).value("16384").build())
                .build(),
        )
        .send()
        .await
        .expect("RegisterJobDefinition");

    let wiretap = Wiretap::default();
    let tapped = aws_sdk_batch::Client::from_conf(aws_sdk_batch::config::Builder::from(&aws.sdk).interceptor(wiretap.clone()).build());
    let runner = BatchJobRunner::new(tapped, queue.job_queue_arn().unwrap(), definition.job_definition_arn().unwrap());
    let spec = JobSpec {
        name: "train digits v1".into(),
        image: "cvops-trainer:latest".into(),
        command: vec![],
        env: BTreeMap::from([("CVOPS_RUN_ID".to_owned(), "run-42".to_owned()), ("CVOPS_EPOCHS".to_owned(), "12".to_owned())]),
        gpus: 1,
        array_size: 3,
    };
    let id = runner.submit(&spec).await.expect("submit");
    let described = batch.describe_jobs().jobs(&id).send().await.expect("DescribeJobs");
    let job = &described.jobs()[0];
    assert_eq!(job.job_queue(), queue.job_queue_arn());
    assert_eq!(job.job_definition(), definition.job_definition_arn());
    assert_eq!(job.job_name(), Some("train-digits-v1"), "the name is made Batch-safe");
    assert_eq!(job.array_properties().and_then(|a| a.size()), Some(3), "one array job for the sweep");
    // moto differs from AWS here: DescribeJobs does not echo the retry strategy. AWS does, so
    // read it where present and otherwise check the value the runner submits.
    let submitted = BatchJobRunner::retry_strategy();
    let retry = job.retry_strategy().unwrap_or(&submitted);
    assert_eq!(retry.attempts(), Some(3));
    let rules: Vec<_> = retry.evaluate_on_exit().iter().map(|r| (r.on_status_reason(), r.on_reason(), r.action().cloned())).collect();
    assert_eq!(rules[0], (Some("Host EC2*"), None, Some(RetryAction::Retry)), "only host terminations are retried");
    assert_eq!(rules[1], (None, Some("*"), Some(RetryAction::Exit)), "everything else exits");

    // The overrides, as submitted (moto keeps them in the job's container).
    let container = job.container().expect("container details");
    let env: BTreeMap<_, _> = container.environment().iter().filter_map(|kv| Some((kv.name()?, kv.value()?))).collect();
    assert_eq!(env.get("CVOPS_RUN_ID"), Some(&"run-42"));
    assert_eq!(env.get("CVOPS_EPOCHS"), Some(&"12"));
    // moto differs from AWS again: its job description has no resourceRequirements. AWS merges
    // the overrides into it; where absent, the SubmitJob request itself is checked.
    let gpus: Vec<_> = container.resource_requirements().iter().filter(|r| r.r#type() == Some(&ResourceType::Gpu)).map(|r| r.value()).collect();
    if gpus.is_empty() {
        let requests = wiretap.0.lock().unwrap().clone();
        let submit: serde_json::Value = serde_json::from_str(requests.iter().find(|b| b.contains("containerOverrides")).expect("the SubmitJob body")).unwrap();
        assert_eq!(submit["containerOverrides"]["resourceRequirements"], serde_json::json!([{"type": "GPU", "value": "1"}]), "one GPU");
        assert_eq!(submit["retryStrategy"]["attempts"], 3);
    } else {
        assert_eq!(gpus, vec![Some("1")], "one GPU");
    }

    let status = runner.describe(&id).await.expect("describe");
    assert_eq!(status.id, id);
}
