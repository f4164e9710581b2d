//! The Batch job runner against AWS APIs (moto): the job it submits, read back with DescribeJobs,
//! has the queue, definition, GPU requirement, environment, array size and retry strategy asked
//! for. (moto cannot run the container, so the job's own progress is not checked here; the
//! local runner's conformance suite covers the port's behaviour.)

use std::collections::BTreeMap;

use aws_sdk_batch::types::{ResourceType, RetryAction};
use cvops_aws::BatchJobRunner;
use cvops_core::ports::{JobRunner, JobSpec};
use cvops_tests::moto::{self, Wiretap};

#[tokio::test]
async fn a_submitted_job_has_the_gpu_environment_array_and_retry_strategy_asked_for() {
    let Some(aws) = moto::config("a_submitted_job_has_the_gpu_environment_array_and_retry_strategy_asked_for").await else {
        return;
    };
    let (queue, definition) = moto::create_batch_queue(&aws, &moto::unique("cvops-training")).await;
    let wiretap = Wiretap::default();
    let runner = BatchJobRunner::new(wiretap.batch_client(&aws), &queue, &definition);
    let spec = JobSpec {
        name: "train digits v1".into(),
        image: "cvops-trainer:latest".into(),
        command: vec![],
        env: BTreeMap::from([("CVOPS_RUN_ID".to_owned(), "run-42".to_owned()), ("CVOPS_EPOCHS".to_owned(), "12".to_owned())]),
        gpus: 1,
        array_size: 3,
    };
    let id = runner.submit(&spec).await.expect("submit");
    let described = aws.batch().describe_jobs().jobs(&id).send().await.expect("DescribeJobs");
    let job = &described.jobs()[0];
    assert_eq!(job.job_queue(), Some(queue.as_str()));
    assert_eq!(job.job_definition(), Some(definition.as_str()));
    assert_eq!(job.job_name(), Some("train-digits-v1"), "the name is made Batch-safe");
    assert_eq!(job.array_properties().and_then(|a| a.size()), Some(3), "one array job for the sweep");
    let container = job.container().expect("container details");
    let env: BTreeMap<_, _> = container.environment().iter().filter_map(|kv| Some((kv.name()?, kv.value()?))).collect();
    assert_eq!((env.get("CVOPS_RUN_ID"), env.get("CVOPS_EPOCHS")), (Some(&"run-42"), Some(&"12")));

    // moto differs from AWS here: DescribeJobs echoes neither the retry strategy nor the
    // resource requirements. AWS does, so read them where present, else from the request sent.
    let submitted = BatchJobRunner::retry_strategy();
    let retry = job.retry_strategy().unwrap_or(&submitted);
    assert_eq!(retry.attempts(), Some(3));
    let rules: Vec<_> =
        retry.evaluate_on_exit().iter().map(|r| (r.on_status_reason(), r.on_reason(), r.action().cloned())).collect();
    assert_eq!(rules[0], (Some("Host EC2*"), None, Some(RetryAction::Retry)), "only host terminations are retried");
    assert_eq!(rules[1], (None, Some("*"), Some(RetryAction::Exit)), "everything else exits");
    let gpus: Vec<_> =
        container.resource_requirements().iter().filter(|r| r.r#type() == Some(&ResourceType::Gpu)).map(|r| r.value()).collect();
    if gpus.is_empty() {
        let submit = wiretap.submit_job();
        assert_eq!(
            submit["containerOverrides"]["resourceRequirements"],
            serde_json::json!([{"type": "GPU", "value": "1"}]),
            "one GPU"
        );
        assert_eq!(submit["retryStrategy"]["attempts"], 3);
    } else {
        assert_eq!(gpus, vec![Some("1")], "one GPU");
    }

    assert_eq!(runner.describe(&id).await.expect("describe").id, id);
}
