//! infra/template.yaml against the code: every function crate has a resource and every function
//! resource a crate, every environment variable a function's code reads is set (and no other),
//! the trainer's variables are the ones dispatch-training puts in the job, and the wiring (S3
//! notifications, the SQS mapping, the schedule, the Batch rule, the function URL's auth) points
//! where the code expects it. cfn-lint and checkov check the rest (scripts/test-all.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cvops_tests::local::files_with_extension;
use yaml_serde::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("infra/template.yaml")).expect("infra/template.yaml");
    yaml_serde::from_str(&text).expect("the template is YAML")
}

/// `!Ref X` / `!GetAtt X.Y` as ("Ref", "X") / ("GetAtt", "X.Y").
fn tagged(value: &Value) -> Option<(String, String)> {
    match value {
        Value::Tagged(t) => {
            Some((t.tag.to_string().trim_start_matches('!').to_owned(), t.value.as_str().unwrap_or_default().to_owned()))
        }
        _ => None,
    }
}

fn get<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// Every `CVOPS_*` variable the crate's source reads (through `required`, `lookup`, `number`,
/// `narrow` or `std::env::var`), outside its test modules.
fn variables_read(crate_dir: &Path) -> BTreeSet<String> {
    let reads = regex::Regex::new(r#"\b(?:required|lookup|number|narrow|var)\("(CVOPS_[A-Z0-9_]+)"\)"#).unwrap();
    let mut found = BTreeSet::new();
    for entry in files_with_extension(&crate_dir.join("src"), "rs") {
        let text = std::fs::read_to_string(&entry).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(reads.captures_iter(code).map(|c| c[1].to_owned()));
    }
    found
}

/// The Lambda function crates: functions/* with a binary that needs the `lambda` feature, by
/// binary name.
fn lambda_crates() -> BTreeMap<String, PathBuf> {
    let mut crates = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let Some(bin) = manifest.split("[[bin]]").nth(1) else { continue };
        if !bin.contains(r#"required-features = ["lambda"]"#) {
            continue;
        }
        let name = bin.split("name = \"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned();
        crates.insert(name, dir);
    }
    crates
}

/// Function resources by their binary name.
fn functions(template: &Value) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for (id, resource) in get(template, &["Resources"]).as_mapping().unwrap() {
        if get(resource, &["Type"]).as_str() == Some("AWS::Serverless::Function") {
            let binary =
                get(resource, &["Metadata", "BuildProperties", "Binary"]).as_str().expect("a Binary build property").to_owned();
            out.insert(binary, (id.as_str().unwrap().to_owned(), resource.clone()));
        }
    }
    out
}

fn event<'a>(function: &'a Value, kind: &str) -> Vec<&'a Value> {
    get(function, &["Properties", "Events"])
        .as_mapping()
        .map(|events| events.values().filter(|e| get(e, &["Type"]).as_str() == Some(kind)).collect())
        .unwrap_or_default()
}

#[test]
fn every_function_crate_has_a_resource_and_every_resource_a_crate() {
    let template = template();
    let resources: BTreeSet<String> = functions(&template).into_keys().collect();
    let crates: BTreeSet<String> = lambda_crates().into_keys().collect();
    assert_eq!(resources, crates, "function resources (by Binary) against functions/* Lambda crates");
    assert_eq!(crates.len(), 5, "ingest, dispatch-training, register-model, infer, monitor: {crates:?}");
    let globals = get(&template, &["Globals", "Function"]);
    assert_eq!(get(globals, &["Runtime"]).as_str(), Some("provided.al2023"));
    assert_eq!(get(globals, &["Architectures"]).as_sequence().unwrap()[0].as_str(), Some("arm64"));
    for (binary, (_, resource)) in functions(&template) {
        assert_eq!(get(&resource, &["Metadata", "BuildMethod"]).as_str(), Some("rust-cargolambda"), "{binary}");
        for setting in ["MemorySize", "Timeout"] {
            assert!(get(&resource, &["Properties", setting]).as_u64().is_some(), "{binary} sets {setting}");
        }
    }
}

#[test]
fn every_variable_the_code_reads_is_set_and_nothing_else() {
    let template = template();
    let global: BTreeSet<String> = get(&template, &["Globals", "Function", "Environment", "Variables"])
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let functions = functions(&template);
    for (binary, dir) in lambda_crates() {
        let (_, resource) = &functions[&binary];
        let mut set = global.clone();
        if let Some(vars) = get(resource, &["Properties", "Environment", "Variables"]).as_mapping() {
            set.extend(vars.keys().map(|k| k.as_str().unwrap().to_owned()));
        }
        let read = variables_read(&dir);
        assert!(read.contains("CVOPS_TABLE"), "{binary} reads the table's name");
        assert_eq!(set, read, "{binary}: the template's variables against what the code reads");
    }
}

#[test]
fn the_trainer_reads_only_what_dispatch_training_puts_in_the_job() {
    let trainer = variables_read(&root().join("functions/trainer"));
    let dispatch: String = files_with_extension(&root().join("functions/dispatch-training/src"), "rs")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for variable in &trainer {
        assert!(dispatch.contains(&format!("\"{variable}\"")), "dispatch-training does not set {variable} for the trainer");
    }
    assert!(trainer.contains("CVOPS_SNAPSHOT_DESCRIPTOR") && trainer.len() >= 8, "{trainer:?}");
    let template = template();
    let job = get(&template, &["Resources", "TrainerJobDefinition", "Properties"]);
    let gpu = get(job, &["ContainerProperties", "ResourceRequirements"]).as_sequence().unwrap();
    assert!(gpu.iter().any(|r| get(r, &["Type"]).as_str() == Some("GPU") && get(r, &["Value"]).as_str() == Some("1")));
    assert!(get(job, &["Timeout", "AttemptDurationSeconds"]).as_u64().is_some(), "the job has a timeout");
    let retries = get(job, &["RetryStrategy", "EvaluateOnExit"]).as_sequence().unwrap();
    assert_eq!(get(&retries[0], &["OnStatusReason"]).as_str(), Some("Host EC2*"), "retries on host loss only");
    assert_eq!(get(&retries[1], &["Action"]).as_str(), Some("EXIT"));
    let dockerfile = std::fs::read_to_string(root().join("infra/trainer.Dockerfile")).expect("infra/trainer.Dockerfile");
    assert!(
        dockerfile.contains("-p cvops-trainer") && dockerfile.contains("--features cuda"),
        "the image builds the cuda trainer"
    );
}

#[test]
fn the_events_reach_the_functions_the_code_expects() {
    let template = template();
    let functions = functions(&template);

    // Uploads to the raw bucket, created and removed, reach ingest; ingest never writes there.
    let ingest = &functions["ingest"].1;
    let uploads = event(ingest, "S3");
    assert_eq!(uploads.len(), 1);
    assert_eq!(tagged(get(uploads[0], &["Properties", "Bucket"])), Some(("Ref".into(), "RawBucket".into())));
    let kinds: Vec<&str> =
        get(uploads[0], &["Properties", "Events"]).as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(kinds, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]);
    let ingest_policy = yaml_serde::to_string(get(ingest, &["Properties", "Policies"])).unwrap();
    let put_targets: Vec<&str> = ingest_policy.split("s3:PutObject").skip(1).collect();
    assert!(
        put_targets.iter().all(|after| !after.split("Effect").next().unwrap().contains("-raw-")),
        "ingest writes only the store bucket"
    );

    // Model cards, and only cards, reach register-model.
    let register = &functions["register-model"].1;
    let cards = event(register, "S3");
    assert_eq!(cards.len(), 1);
    assert_eq!(tagged(get(cards[0], &["Properties", "Bucket"])), Some(("Ref".into(), "ModelsBucket".into())));
    let rules: Vec<(String, String)> = get(cards[0], &["Properties", "Filter", "S3Key", "Rules"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| (get(r, &["Name"]).as_str().unwrap().to_owned(), get(r, &["Value"]).as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(rules, [("prefix".to_owned(), "models/".to_owned()), ("suffix".to_owned(), "card.json".to_owned())]);
    assert!(
        !yaml_serde::to_string(get(register, &["Properties", "Policies"])).unwrap().contains("s3:PutObject"),
        "register-model writes no object"
    );

    // The functions S3 invokes asynchronously keep failing events in a queue.
    for name in ["ingest", "register-model"] {
        let config = get(&functions[name].1, &["Properties", "EventInvokeConfig"]);
        assert!(get(config, &["MaximumRetryAttempts"]).as_u64().is_some(), "{name} has a retry count");
        assert_eq!(get(config, &["DestinationConfig", "OnFailure", "Type"]).as_str(), Some("SQS"), "{name}");
    }

    // The training queue feeds dispatch-training in batches with partial failures.
    let dispatch = &functions["dispatch-training"].1;
    let sqs = event(dispatch, "SQS");
    assert_eq!(sqs.len(), 1);
    assert_eq!(tagged(get(sqs[0], &["Properties", "Queue"])), Some(("GetAtt".into(), "TrainingQueue.Arn".into())));
    assert_eq!(
        get(sqs[0], &["Properties", "FunctionResponseTypes"]).as_sequence().unwrap()[0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let queue = get(&template, &["Resources", "TrainingQueue", "Properties"]);
    let timeout = get(dispatch, &["Properties", "Timeout"]).as_u64().unwrap();
    assert!(get(queue, &["VisibilityTimeout"]).as_u64().unwrap() >= 6 * timeout, "visibility at least 6x the consumer's timeout");
    assert_eq!(get(queue, &["RedrivePolicy", "maxReceiveCount"]).as_u64(), Some(5));
    assert!(get(queue, &["MaximumMessageSize"]).as_u64().is_some());

    // Batch job state changes reach dispatch-training.
    let rule = event(dispatch, "EventBridgeRule");
    assert_eq!(rule.len(), 1);
    let pattern = get(rule[0], &["Properties", "Pattern"]);
    assert_eq!(get(pattern, &["source"]).as_sequence().unwrap()[0].as_str(), Some("aws.batch"));
    assert_eq!(get(pattern, &["detail-type"]).as_sequence().unwrap()[0].as_str(), Some("Batch Job State Change"));

    // The monitor runs on a schedule.
    let monitor = &functions["monitor"].1;
    let schedule = event(monitor, "ScheduleV2");
    assert_eq!(schedule.len(), 1);
    assert!(get(schedule[0], &["Properties", "ScheduleExpression"]).as_str().unwrap().starts_with("rate("));

    // The inference endpoint is a function URL checked by IAM.
    let infer = &functions["infer"].1;
    assert_eq!(get(infer, &["Properties", "FunctionUrlConfig", "AuthType"]).as_str(), Some("AWS_IAM"));
    assert!(event(infer, "S3").is_empty() && event(infer, "SQS").is_empty(), "infer is invoked over HTTP only");
}

#[test]
fn the_storage_is_private_and_kept() {
    let template = template();
    let resources = get(&template, &["Resources"]);
    for bucket in ["RawBucket", "StoreBucket", "ModelsBucket"] {
        let properties = get(resources, &[bucket, "Properties"]);
        let block = get(properties, &["PublicAccessBlockConfiguration"]);
        for setting in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
            assert_eq!(get(block, &[setting]).as_bool(), Some(true), "{bucket} {setting}");
        }
        assert!(!get(properties, &["BucketEncryption"]).is_null(), "{bucket} is encrypted");
        let policy = get(resources, &[&format!("{bucket}Policy"), "Properties", "PolicyDocument"]);
        assert!(yaml_serde::to_string(policy).unwrap().contains("aws:SecureTransport"), "{bucket} refuses plain HTTP");
    }
    assert_eq!(get(resources, &["ModelsBucket", "Properties", "VersioningConfiguration", "Status"]).as_str(), Some("Enabled"));
    let table = get(resources, &["Table", "Properties"]);
    assert_eq!(get(table, &["BillingMode"]).as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(get(table, &["TimeToLiveSpecification", "AttributeName"]).as_str(), Some(cvops_aws::TTL_ATTRIBUTE));
    assert_eq!(get(table, &["PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"]).as_bool(), Some(true));
    let prefixes: Vec<&str> = get(resources, &["StoreBucket", "Properties", "LifecycleConfiguration", "Rules"])
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| get(r, &["Prefix"]).as_str())
        .collect();
    assert_eq!(prefixes, ["quarantine/", "review/"], "quarantine and review samples have lifecycle rules");
}
