//! The AWS-compatible endpoint the AWS adapters are tested against: `moto_server`, which
//! `scripts/test-all.sh` installs, starts on a free loopback port and names in
//! `CVOPS_TEST_AWS_ENDPOINT`. Without that variable the AWS tests say they were skipped, so plain
//! `cargo test` stays hermetic. Every test makes its own uniquely named resources.

use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_batch::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_batch::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_batch::error::BoxError;
use aws_sdk_batch::types::{
    CeState, CeType, ComputeEnvironmentOrder, ContainerProperties, JobDefinitionType, JqState, ResourceRequirement, ResourceType,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use cvops_aws::{AwsConfig, TTL_ATTRIBUTE};

pub const ENDPOINT_VAR: &str = "CVOPS_TEST_AWS_ENDPOINT";

/// The SDK configuration for the test endpoint, or `None` (after saying so) when none is set.
pub async fn config(test: &str) -> Option<AwsConfig> {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        eprintln!("skipped {test}: {ENDPOINT_VAR} is not set (scripts/test-all.sh starts moto_server and sets it)");
        return None;
    };
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "cvops-tests"))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(AwsConfig::timeouts())
        .load()
        .await;
    Some(AwsConfig { sdk, s3_path_style: true })
}

/// An IAM role, made with a plain IAM query request (moto does not check signatures; the tests
/// need no IAM client otherwise). Returns its ARN.
pub fn create_iam_role(name: &str) -> String {
    use std::io::{Read, Write};
    let endpoint = std::env::var(ENDPOINT_VAR).expect("the endpoint is set");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let policy = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
    let body = format!("Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument={policy}");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(host).expect("moto is listening");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    // HTTP/1.0 or 1.1, as the server speaks (one request at a time: 1.0).
    let status = response.split_whitespace().nth(1);
    assert!(response.starts_with("HTTP/1.") && status == Some("200"), "CreateRole failed: {response}");
    let start = response.find("<Arn>").expect("the response names the role's ARN") + 5;
    let end = response[start..].find("</Arn>").unwrap() + start;
    response[start..end].to_owned()
}

/// A name no other test run uses (S3 bucket rules: lowercase, digits and hyphens).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub async fn create_bucket(aws: &AwsConfig, name: &str) {
    aws.s3().create_bucket().bucket(name).send().await.expect("CreateBucket");
}

/// The single table as the template declares it: string keys pk and sk, on demand, TTL on
/// `expires_at`.
pub async fn create_table(aws: &AwsConfig, name: &str) {
    let ddb = aws.dynamodb();
    let key = |name: &str, key_type| KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().unwrap();
    let attr =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap();
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .send()
        .await
        .expect("CreateTable");
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name(TTL_ATTRIBUTE).enabled(true).build().unwrap(),
        )
        .send()
        .await
        .expect("UpdateTimeToLive");
}

/// A queue that redrives to a dead-letter queue after `max_receives`; returns both URLs.
pub async fn create_queue_with_dead_letter(aws: &AwsConfig, name: &str, max_receives: u32) -> (String, String) {
    let sqs = aws.sqs();
    let dlq = sqs.create_queue().queue_name(format!("{name}-dlq")).send().await.expect("CreateQueue (dlq)");
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let attrs =
        sqs.get_queue_attributes().queue_url(&dlq_url).attribute_names(QueueAttributeName::QueueArn).send().await.unwrap();
    let dlq_arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("CreateQueue");
    (queue.queue_url().unwrap().to_owned(), dlq_url)
}

/// A Batch job queue on an unmanaged compute environment, and a container job definition for the
/// trainer image, as the template will declare them. Returns (queue ARN, definition ARN).
pub async fn create_batch_queue(aws: &AwsConfig, name: &str) -> (String, String) {
    let batch = aws.batch();
    let role = create_iam_role(name);
    let environment = batch
        .create_compute_environment()
        .compute_environment_name(name)
        .r#type(CeType::Unmanaged)
        .state(CeState::Enabled)
        .service_role(role)
        .send()
        .await
        .expect("CreateComputeEnvironment");
    let queue = batch
        .create_job_queue()
        .job_queue_name(name)
        .state(JqState::Enabled)
        .priority(1)
        .compute_environment_order(
            ComputeEnvironmentOrder::builder()
                .order(1)
                .compute_environment(environment.compute_environment_arn().unwrap())
                .build(),
        )
        .send()
        .await
        .expect("CreateJobQueue");
    let definition = batch
        .register_job_definition()
        .job_definition_name(name)
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
    (queue.job_queue_arn().unwrap().to_owned(), definition.job_definition_arn().unwrap().to_owned())
}

/// Keeps the body of every request a Batch client sends: the wire truth where moto's
/// DescribeJobs leaves fields out (retryStrategy, resourceRequirements).
#[derive(Debug, Default, Clone)]
pub struct Wiretap(pub Arc<Mutex<Vec<String>>>);

impl Wiretap {
    /// A Batch client that reports to this wiretap.
    pub fn batch_client(&self, aws: &AwsConfig) -> aws_sdk_batch::Client {
        aws_sdk_batch::Client::from_conf(aws_sdk_batch::config::Builder::from(&aws.sdk).interceptor(self.clone()).build())
    }

    /// The JSON body of the first SubmitJob request.
    pub fn submit_job(&self) -> serde_json::Value {
        let requests = self.0.lock().unwrap().clone();
        let body = requests
            .iter()
            .find(|b| b.contains("\"jobQueue\"") && b.contains("\"jobDefinition\""))
            .expect("a SubmitJob request was sent");
        serde_json::from_str(body).unwrap()
    }
}

impl Intercept for Wiretap {
    fn name(&self) -> &'static str {
        "Wiretap"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(body) = context.request().body().bytes() {
            self.0.lock().unwrap().push(String::from_utf8_lossy(body).into_owned());
        }
        Ok(())
    }
}
