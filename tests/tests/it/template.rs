//! infra/template.yaml against the code: every function crate has a resource and every function
//! resource a crate, every environment variable a function's code reads is set (and no other),
//! the trainer's variables are the ones dispatch-training puts in the job, and the wiring (S3
//! notifications, the SQS mapping, the schedule, the Batch rule, the function URL's auth) points
//! where the code expects it; every AWS call a unit makes is granted by its policy (through the
//! tables in `cvops_aws::iam`, themselves held to the adapters' source); the alarm topic's key,
//! the Batch rule's dead-letter queue, infer's partition keys and the training instances' IMDS
//! settings are what AWS needs. cfn-lint and checkov check the rest (scripts/test-all.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use cvops_tests::platform::files_with_extension;
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

/// The `CVOPS_*` variables `code` reads (`cvops_core::config::Vars`' `required`, `parse`,
/// `seconds`, `switch` and `text`, or `std::env::var`).
fn variables_in(code: &str) -> BTreeSet<String> {
    static READS: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r#"\b(?:required|parse|seconds|switch|text|var)\(\s*"(CVOPS_[A-Z0-9_]+)""#).unwrap());
    READS.captures_iter(code).map(|c| c[1].to_owned()).collect()
}

/// Every `CVOPS_*` variable the crate's source reads outside its test modules, and those read by
/// the `cvops_aws::ports` builders it calls (the table's name, Batch's queue and definition).
fn variables_read(crate_dir: &Path) -> BTreeSet<String> {
    let ports_code = std::fs::read_to_string(root().join("shared/aws/src/ports.rs")).unwrap();
    let builders = functions_in(&ports_code);
    let mut found = BTreeSet::new();
    for entry in files_with_extension(&crate_dir.join("src"), "rs") {
        let text = std::fs::read_to_string(&entry).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(variables_in(code));
        for (name, body) in &builders {
            if code.contains(&format!("cvops_aws::ports::{name}(")) {
                found.extend(variables_in(body));
            }
        }
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
    let register_policy = yaml_serde::to_string(get(register, &["Properties", "Policies"])).unwrap();
    let put_targets: Vec<&str> = register_policy.split("s3:PutObject").skip(1).collect();
    assert!(
        put_targets.iter().all(|after| {
            let target = after.split("Effect").next().unwrap();
            !target.contains("-models-") && !target.contains("ModelsBucket")
        }),
        "register-model writes nothing to the models bucket"
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

// ---------------------------------------------------------------- IAM against the code
//
// cvops_aws::iam says which IAM actions each SDK call needs, on what, and which calls each unit
// makes; these tests check that the adapters' source sends exactly those calls, that each unit's
// code wires the adapters its calls need, and that each unit's policy grants every action.

use cvops_aws::iam::{self, Bucket, On, Port, Target};

const PORTS: [Port; 4] = [Port::Objects, Port::Table, Port::Queue, Port::Jobs];

/// `s`, or each string of a sequence.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list of strings, found {other:?}"),
    }
}

/// Bucket names built with `!Sub` from the stack (`${AWS::StackName}-raw-${AWS::AccountId}`), by
/// logical id.
fn bucket_names(template: &Value) -> Vec<(String, String)> {
    get(template, &["Resources"])
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| get(r, &["Type"]).as_str() == Some("AWS::S3::Bucket"))
        .filter_map(|(id, r)| {
            let (tag, name) = tagged(get(r, &["Properties", "BucketName"]))?;
            (tag == "Sub").then(|| (name, id.as_str().unwrap().to_owned()))
        })
        .collect()
}

/// A resource as the template names it, normalised: `!Ref X`, `!GetAtt X.Arn`, `${X.Arn}` and a
/// bucket's name or ARN built from the stack name all become the logical id `X`; other text stays.
fn resource_name(value: &Value, buckets: &[(String, String)]) -> String {
    match tagged(value) {
        Some((tag, name)) if tag == "Ref" => name,
        Some((tag, name)) if tag == "GetAtt" => name.strip_suffix(".Arn").unwrap_or(&name).to_owned(),
        Some((tag, text)) if tag == "Sub" => {
            let mut text = regex::Regex::new(r"\$\{(\w+)\.Arn\}").unwrap().replace_all(&text, "$1").into_owned();
            for (name, id) in buckets {
                text = text.replace(&format!("arn:${{AWS::Partition}}:s3:::{name}"), id);
                if text == *name {
                    text = id.clone();
                }
            }
            text
        }
        Some((tag, _)) => panic!("a resource written with !{tag}: {value:?}"),
        None => value.as_str().unwrap_or_else(|| panic!("a resource that is not a string: {value:?}")).to_owned(),
    }
}

/// IAM's wildcard match: `*` in `pattern` stands for any run of characters, `?` for one. A `*` in
/// `text` is literal: `bucket/snapshots/*` (any key under the prefix) is matched by the patterns
/// `bucket/snapshots/*` and `bucket/*`, not by `bucket/snapshots/a*`.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for &pc in &p {
        let mut next = vec![false; t.len() + 1];
        for i in 0..=t.len() {
            next[i] = match pc {
                '*' => matched[i] || (i > 0 && next[i - 1]),
                '?' => i > 0 && matched[i - 1],
                c => i > 0 && matched[i - 1] && t[i - 1] == c,
            };
        }
        matched = next;
    }
    matched[t.len()]
}

/// One Allow statement of a policy, resources normalised (see [`resource_name`]).
#[derive(Debug)]
struct Statement {
    actions: Vec<String>,
    resources: Vec<String>,
    /// The `dynamodb:LeadingKeys` condition's values, `true` for `StringLike` ones; `None`
    /// without that condition.
    leading_keys: Option<Vec<(String, bool)>>,
}

impl Statement {
    fn allows(&self, action: &str, resource: &str, pk: Option<&str>) -> bool {
        self.actions.iter().any(|a| wildcard(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
            && self.resources.iter().any(|r| wildcard(r, resource))
            && match (&self.leading_keys, pk) {
                (Some(keys), Some(pk)) => keys.iter().any(|(key, like)| if *like { wildcard(key, pk) } else { key == pk }),
                _ => true,
            }
    }
}

fn statements(document: &Value, buckets: &[(String, String)], whose: &str) -> Vec<Statement> {
    let list =
        get(document, &["Statement"]).as_sequence().unwrap_or_else(|| panic!("{whose}: a policy without a Statement list"));
    let mut out = Vec::new();
    for statement in list {
        for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
            assert!(get(statement, &[unsupported]).is_null(), "{whose}: {unsupported} is not read by this test");
        }
        if get(statement, &["Effect"]).as_str() != Some("Allow") {
            continue;
        }
        let resources = match get(statement, &["Resource"]) {
            Value::Sequence(items) => items.iter().map(|r| resource_name(r, buckets)).collect(),
            one => vec![resource_name(one, buckets)],
        };
        let mut leading_keys = None;
        if let Some(condition) = get(statement, &["Condition"]).as_mapping() {
            for (operator, tests) in condition {
                let operator = operator.as_str().unwrap();
                let Some(keys) = tests.get("dynamodb:LeadingKeys") else { continue };
                let like = operator.ends_with("StringLike");
                assert!(like || operator.ends_with("StringEquals"), "{whose}: dynamodb:LeadingKeys under {operator}");
                assert!(operator.starts_with("ForAllValues:"), "{whose}: dynamodb:LeadingKeys is multivalued: use ForAllValues:");
                leading_keys = Some(strings(keys).into_iter().map(|k| (k, like)).collect());
            }
        }
        out.push(Statement { actions: strings(get(statement, &["Action"])), resources, leading_keys });
    }
    out
}

/// The Allow statements a unit's role has: a function's inline `Policies` (the only form this
/// test reads, so no grant goes unseen), or the trainer's job role.
fn unit_statements(template: &Value, unit: &str) -> Vec<Statement> {
    let buckets = bucket_names(template);
    let resources = get(template, &["Resources"]);
    if unit == "trainer" {
        let (_, role) = tagged(get(resources, &["TrainerJobDefinition", "Properties", "ContainerProperties", "JobRoleArn"]))
            .expect("the trainer's job definition names its role with !GetAtt");
        let role = role.strip_suffix(".Arn").unwrap();
        let policies = get(resources, &[role, "Properties", "Policies"]).as_sequence().expect("the job role has inline policies");
        return policies.iter().flat_map(|p| statements(get(p, &["PolicyDocument"]), &buckets, role)).collect();
    }
    let (id, function) = &functions(template)[unit];
    let policies =
        get(function, &["Properties", "Policies"]).as_sequence().unwrap_or_else(|| panic!("{id} has no Policies list"));
    policies
        .iter()
        .flat_map(|p| {
            assert!(
                p.get("Statement").is_some(),
                "{id}: policy {p:?} is not an inline statement list, which this test cannot read"
            );
            statements(p, &buckets, id)
        })
        .collect()
}

/// What the code's variables name in the template, by logical id: a function's own environment
/// and the global one; for the trainer, dispatch-training's (it hands its buckets to the job).
fn unit_environment(template: &Value, unit: &str) -> BTreeMap<String, String> {
    let buckets = bucket_names(template);
    let functions = functions(template);
    let function = if unit == "trainer" { "dispatch-training" } else { unit };
    let mut env = BTreeMap::new();
    for vars in [
        get(template, &["Globals", "Function", "Environment", "Variables"]),
        get(&functions[function].1, &["Properties", "Environment", "Variables"]),
    ] {
        for (name, value) in vars.as_mapping().into_iter().flatten() {
            let value = match value {
                Value::String(s) => s.clone(),
                other => resource_name(other, &buckets),
            };
            env.insert(name.as_str().unwrap().to_owned(), value);
        }
    }
    env
}

/// An action a unit's calls need: on `resource` (normalised as in the policies), under partition
/// key `pk` for table items, and the call that needs it.
#[derive(Debug)]
struct Need {
    action: &'static str,
    resource: String,
    pk: Option<&'static str>,
    why: String,
}

fn unit_needs(template: &Value, unit: &iam::Unit) -> Vec<Need> {
    let env = unit_environment(template, unit.name);
    let var = |name: &str| env.get(name).cloned().unwrap_or_else(|| panic!("{}: the template does not set {name}", unit.name));
    let bucket = |b: Bucket| match b {
        Bucket::Env(name) => var(name),
        Bucket::Notifying => {
            let functions = functions(template);
            let notifications = event(&functions[unit.name].1, "S3");
            assert_eq!(notifications.len(), 1, "{}: calls on the notifying bucket need one S3 event", unit.name);
            tagged(get(notifications[0], &["Properties", "Bucket"])).expect("the S3 event's bucket is a !Ref").1
        }
    };
    let mut needs = Vec::new();
    for u in unit.uses {
        let method =
            iam::method(u.port, u.method).unwrap_or_else(|| panic!("{}: no port method {:?}.{}", unit.name, u.port, u.method));
        let extra = iam::method_needs(u.port, u.method).iter().map(|need| ("(the method itself)", need));
        let of_operations = method.sends.iter().flat_map(|op| {
            let operation =
                iam::operation(u.port.service(), op).unwrap_or_else(|| panic!("{}.{op} is not in OPERATIONS", u.port.service()));
            operation.needs.iter().map(move |need| (*op, need))
        });
        for (op, need) in of_operations.chain(extra) {
            {
                let (resource, pk) = match (need.on, u.target) {
                    (On::Object, Target::Objects { bucket: b, prefix }) => (format!("{}/{prefix}*", bucket(b)), None),
                    (On::Bucket, Target::Objects { bucket: b, .. }) => (bucket(b), None),
                    (On::Object, Target::Copy { to, to_prefix, .. }) => (format!("{}/{to_prefix}*", bucket(to)), None),
                    (On::SourceObject, Target::Copy { from, from_prefix, .. }) => {
                        (format!("{}/{from_prefix}*", bucket(from)), None)
                    }
                    (On::SourceBucket, Target::Copy { from, .. }) => (bucket(from), None),
                    (On::Item, Target::Items { pk }) => (var(iam::TABLE_VARIABLE), Some(pk)),
                    (On::Queue, Target::Queue { url }) => (var(url), None),
                    (On::JobQueue, Target::Jobs) => (var(iam::JOB_QUEUE_VARIABLE), None),
                    (On::JobDefinition, Target::Jobs) => (var(iam::JOB_DEFINITION_VARIABLE), None),
                    (On::NewJob, Target::Jobs) => {
                        ("arn:${AWS::Partition}:batch:${AWS::Region}:${AWS::AccountId}:job/*".to_owned(), None)
                    }
                    (On::Any, _) => ("*".to_owned(), None),
                    (on, target) => panic!(
                        "{}: {}.{op} needs {} on {on:?}, which {target:?} does not give",
                        unit.name,
                        u.port.service(),
                        need.action
                    ),
                };
                let why = format!("{:?}.{} -> {}.{op}", u.port, u.method, u.port.service());
                needs.push(Need { action: need.action, resource, pk, why });
            }
        }
    }
    needs
}

#[test]
fn every_call_a_unit_makes_is_granted_by_its_policy() {
    let template = template();
    let mut units: BTreeSet<String> = functions(&template).into_keys().collect();
    units.insert("trainer".to_owned());
    let listed: BTreeSet<String> = iam::UNITS.iter().map(|u| u.name.to_owned()).collect();
    assert_eq!(listed, units, "cvops_aws::iam::UNITS against the template's functions and the trainer");
    let mut missing = Vec::new();
    for unit in iam::UNITS {
        let granted = unit_statements(&template, unit.name);
        for need in unit_needs(&template, unit) {
            if !granted.iter().any(|s| s.allows(need.action, &need.resource, need.pk)) {
                let key = need.pk.map(|pk| format!(" (partition key {pk})")).unwrap_or_default();
                missing.push(format!("{}: {} on {}{key}, for {}", unit.name, need.action, need.resource, need.why));
            }
        }
    }
    assert!(missing.is_empty(), "actions the code needs and infra/template.yaml does not grant:\n  {}", missing.join("\n  "));
}

/// `(name, body)` of every `fn` in `code`, in order; a body runs to the next `fn`.
fn functions_in(code: &str) -> Vec<(String, &str)> {
    let starts: Vec<(usize, String)> = regex::Regex::new(r"(?m)^[ \t]*(?:pub(?:\([^)]*\))?[ \t]+)?(?:async[ \t]+)?fn[ \t]+(\w+)")
        .unwrap()
        .captures_iter(code)
        .map(|c| (c.get(0).unwrap().start(), c[1].to_owned()))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (start, name))| (name.clone(), &code[*start..starts.get(i + 1).map_or(code.len(), |(next, _)| *next)]))
        .collect()
}

/// The SDK operations named in `code`: `client.<operation>()`.
fn sdk_calls(code: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\bclient\s*\.\s*([a-z0-9_]+)\s*\(\s*\)").unwrap().captures_iter(code).map(|c| c[1].to_owned()).collect()
}

/// The methods of `pub trait <name>` in shared/core/src/ports.
fn trait_methods(name: &str) -> BTreeSet<String> {
    for file in files_with_extension(&root().join("shared/core/src/ports"), "rs") {
        let text = std::fs::read_to_string(&file).unwrap();
        let Some(start) = text.find(&format!("pub trait {name}:")) else { continue };
        let block = &text[start..start + text[start..].find("\n}").unwrap()];
        static METHODS: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"async fn (\w+)").unwrap());
        return METHODS.captures_iter(block).map(|c| c[1].to_owned()).collect();
    }
    panic!("no trait {name} in shared/core/src/ports")
}

static USE_DECLARATION: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"(?s)\buse\s[^;]*;").unwrap());
static WORD: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\w+").unwrap());
static METHOD_CALL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?:\bself\s*\.\s*|\bSelf::)([a-z_][a-z0-9_]*)\s*\(").unwrap());
static BARE_CALL: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"(?:^|[^.\w:])([a-z_][a-z0-9_]*)\s*\(").unwrap());

#[test]
fn the_iam_table_is_what_the_adapters_send() {
    let mut problems = Vec::new();
    for port in PORTS {
        let service = port.service();
        let path = format!("shared/aws/src/{service}.rs");
        let text = std::fs::read_to_string(root().join(&path)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();

        // Every operation the file sends is in the table, and every one the table lists is sent.
        let sent = sdk_calls(code);
        let listed: BTreeSet<String> =
            iam::OPERATIONS.iter().filter(|o| o.service == service).map(|o| o.name.to_owned()).collect();
        for op in sent.difference(&listed) {
            problems.push(format!("{path} sends {op}, which cvops_aws::iam::OPERATIONS does not list"));
        }
        for op in listed.difference(&sent) {
            problems.push(format!("cvops_aws::iam::OPERATIONS lists {service}.{op}, which {path} no longer sends"));
        }

        // Each method's operations, through the helpers it calls (self.x(), Self::x(), x()).
        let fns = functions_in(code);
        let names: BTreeSet<&str> = fns.iter().map(|(n, _)| n.as_str()).collect();
        // A bare call to a name the file imports (`describe` from crate::errors) is not a call
        // to the method of that name.
        let imported: BTreeSet<String> = USE_DECLARATION
            .find_iter(code)
            .flat_map(|u| WORD.find_iter(u.as_str()).map(|w| w.as_str().to_owned()).collect::<Vec<_>>())
            .collect();
        let (methods_called, bare_calls) = (&*METHOD_CALL, &*BARE_CALL);
        let mut graph: BTreeMap<&str, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        for (name, body) in &fns {
            let entry = graph.entry(name.as_str()).or_default();
            entry.0.extend(sdk_calls(body));
            let body_only = &body[body.find('{').unwrap_or(body.len())..];
            entry.1.extend(
                methods_called
                    .captures_iter(body_only)
                    .map(|c| c[1].to_owned())
                    .chain(bare_calls.captures_iter(body_only).map(|c| c[1].to_owned()).filter(|c| !imported.contains(c)))
                    .filter(|c| names.contains(c.as_str())),
            );
            // A request that carries tags needs the service's tagging action as well.
            if body.contains(".tags(") {
                for op in sdk_calls(body) {
                    let tagging = format!("{service}:TagResource");
                    if !iam::operation(service, &op).is_some_and(|o| o.needs.iter().any(|n| n.action == tagging)) {
                        problems.push(format!("{path}: {name} sends {op} with tags, and OPERATIONS does not give it {tagging}"));
                    }
                }
            }
        }
        let reach = |start: &str| {
            let (mut seen, mut todo, mut ops) = (BTreeSet::new(), vec![start.to_owned()], BTreeSet::new());
            while let Some(name) = todo.pop() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                if let Some((direct, callees)) = graph.get(name.as_str()) {
                    ops.extend(direct.iter().cloned());
                    todo.extend(callees.iter().cloned());
                }
            }
            ops
        };

        let methods = trait_methods(port.trait_name());
        for name in &methods {
            match iam::method(port, name) {
                None => problems.push(format!("{}::{name} is not in cvops_aws::iam::METHODS", port.trait_name())),
                Some(m) => {
                    let declared: BTreeSet<String> = m.sends.iter().map(|s| s.to_string()).collect();
                    let actual = reach(name);
                    if declared != actual {
                        problems.push(format!("{path}: {name} sends {actual:?}; cvops_aws::iam::METHODS says {declared:?}"));
                    }
                }
            }
        }
        for m in iam::METHODS.iter().filter(|m| m.port == port) {
            if !methods.contains(m.name) {
                problems.push(format!(
                    "cvops_aws::iam::METHODS lists {}::{}, which the trait no longer has",
                    port.trait_name(),
                    m.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "cvops_aws::iam against the adapters:\n  {}", problems.join("\n  "));
}

/// The AWS adapters a unit's code can call: those it constructs itself (`S3ObjectStore::new`), and
/// the ports its handlers take from the `Ports` bundle (`ports.table`, `let Ports { objects, .. }`).
/// The bundle from `cvops_aws::ports` holds every port, but a handler keeps only those it takes.
fn adapters_wired(code: &str) -> BTreeSet<String> {
    static CONSTRUCTED: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\b(S3ObjectStore|DynamoTable|SqsQueue|BatchJobRunner)::new\b").unwrap());
    static TAKEN: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\bports\.(objects|table|queue|jobs)\b").unwrap());
    static DESTRUCTURED: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\bPorts\s*\{([^}]*)\}\s*=").unwrap());
    let port = |field: &str| match field {
        "objects" => Some(Port::Objects),
        "table" => Some(Port::Table),
        "queue" => Some(Port::Queue),
        "jobs" => Some(Port::Jobs),
        _ => None,
    };
    let mut wired: BTreeSet<String> = CONSTRUCTED.captures_iter(code).map(|c| c[1].to_owned()).collect();
    let taken = TAKEN.captures_iter(code).map(|c| c[1].to_owned());
    let destructured =
        DESTRUCTURED.captures_iter(code).flat_map(|c| c[1].split(',').map(|f| f.trim().to_owned()).collect::<Vec<_>>());
    wired.extend(taken.chain(destructured).filter_map(|field| port(&field)).map(|p| p.adapter().to_owned()));
    wired
}

#[test]
fn every_unit_wires_the_adapters_its_calls_need() {
    for unit in iam::UNITS {
        let dir = root().join("functions").join(unit.name);
        let mut wired = BTreeSet::new();
        for file in files_with_extension(&dir.join("src"), "rs") {
            let text = std::fs::read_to_string(&file).unwrap();
            wired.extend(adapters_wired(text.split("#[cfg(test)]").next().unwrap_or_default()));
        }
        let used: BTreeSet<String> = unit.uses.iter().map(|u| u.port.adapter().to_owned()).collect();
        assert_eq!(
            wired, used,
            "{}: the adapters its code constructs or takes from the ports against the ports cvops_aws::iam::UNITS says it calls",
            unit.name
        );

        let read = variables_read(&dir);
        for u in unit.uses {
            let variables: Vec<&str> = match u.target {
                Target::Objects { bucket: Bucket::Env(v), .. } => vec![v],
                Target::Copy { from, to, .. } => {
                    [from, to].into_iter().filter_map(|b| if let Bucket::Env(v) = b { Some(v) } else { None }).collect()
                }
                Target::Items { .. } => vec![iam::TABLE_VARIABLE],
                Target::Queue { url } => vec![url],
                Target::Jobs => vec![iam::JOB_QUEUE_VARIABLE, iam::JOB_DEFINITION_VARIABLE],
                Target::Objects { bucket: Bucket::Notifying, .. } => vec![],
            };
            for v in variables {
                assert!(read.contains(v), "{}: cvops_aws::iam::UNITS names {v}, which its code does not read", unit.name);
            }
        }
    }
}

#[test]
fn infer_reads_only_registry_items_and_writes_only_monitoring_items() {
    use cvops_core::{monitoring, registry};
    let first = |key: String| format!("{}*", &key[..=key.find('#').unwrap()]);
    let registry_keys = [registry::MODELS_PK.to_owned(), first(registry::model_pk("m"))];
    let (index, aggregates) = (first(monitoring::index_pk("m")), first(monitoring::aggregate_pk("m", 1, "h", 0)));
    assert_eq!((registry_keys[1].as_str(), index.as_str(), aggregates.as_str()), ("MODEL#*", "MONIDX#*", "MON#*"));
    // Table::put reads the stored version before it writes, so the hour index is read too.
    let readable: BTreeSet<String> = registry_keys.iter().cloned().chain([index.clone()]).collect();
    let writable: BTreeSet<String> = [index, aggregates].into_iter().collect();

    let infer = iam::unit("infer").unwrap();
    for u in infer.uses {
        if let Target::Items { pk } = u.target {
            let sends = iam::method(u.port, u.method).unwrap().sends;
            let allowed = if sends.iter().any(|op| ["put_item", "update_item", "delete_item"].contains(op)) {
                &writable
            } else {
                &readable
            };
            assert!(allowed.contains(pk), "cvops_aws::iam::UNITS: infer {} on {pk}", u.method);
        }
    }

    let template = template();
    let statements = unit_statements(&template, "infer");
    let table: Vec<&Statement> = statements.iter().filter(|s| s.actions.iter().any(|a| a.starts_with("dynamodb:"))).collect();
    assert!(!table.is_empty());
    for statement in table {
        let keys = statement
            .leading_keys
            .as_ref()
            .unwrap_or_else(|| panic!("infer: {statement:?} has no dynamodb:LeadingKeys condition"));
        assert_eq!(statement.resources, ["Table"], "infer: table actions on the table only");
        for action in &statement.actions {
            let allowed = match action.as_str() {
                "dynamodb:GetItem" | "dynamodb:Query" => &readable,
                "dynamodb:PutItem" | "dynamodb:UpdateItem" => &writable,
                other => panic!("infer is granted {other}; it only reads and writes single items"),
            };
            for (key, _) in keys {
                assert!(allowed.contains(key), "infer: {action} on partition keys {key}, beyond {allowed:?}");
            }
        }
    }
}

#[test]
fn the_alarm_topic_key_lets_cloudwatch_publish() {
    let template = template();
    let resources = get(&template, &["Resources"]);
    let key = get(resources, &["AlarmTopic", "Properties", "KmsMasterKeyId"]);
    let (_, key_id) = tagged(key)
        .unwrap_or_else(|| panic!("the alarm topic's key is {key:?}: an AWS managed key (alias/aws/sns) refuses CloudWatch"));
    let key_id = key_id.split('.').next().unwrap();
    let key = get(resources, &[key_id]);
    assert_eq!(get(key, &["Type"]).as_str(), Some("AWS::KMS::Key"), "{key_id} is a customer managed key");
    assert_eq!(get(key, &["Properties", "EnableKeyRotation"]).as_bool(), Some(true), "{key_id} rotates");
    let policy = get(key, &["Properties", "KeyPolicy", "Statement"]).as_sequence().unwrap();
    let allows = |principal: &str, wanted: &[&str]| {
        policy.iter().any(|s| {
            let actions = strings(get(s, &["Action"]));
            get(s, &["Effect"]).as_str() == Some("Allow")
                && strings(get(s, &["Principal", "Service"])).iter().any(|p| p == principal)
                && wanted.iter().all(|w| actions.iter().any(|a| a == w || a == "kms:*"))
        })
    };
    assert!(allows("cloudwatch.amazonaws.com", &["kms:Decrypt", "kms:GenerateDataKey*"]), "CloudWatch alarms can publish");
    let administered = policy.iter().any(|s| {
        tagged(get(s, &["Principal", "AWS"])).is_some_and(|(_, arn)| arn.ends_with(":root"))
            && strings(get(s, &["Action"])).contains(&"kms:*".to_owned())
    });
    assert!(administered, "the account administers the key (without that statement no one can)");
}

#[test]
fn batch_state_changes_that_cannot_be_delivered_are_kept() {
    let template = template();
    let resources = get(&template, &["Resources"]);
    let functions = functions(&template);
    let rules = event(&functions["dispatch-training"].1, "EventBridgeRule");
    let dead_letter = get(rules[0], &["Properties", "DeadLetterConfig", "Arn"]);
    let (tag, arn) =
        tagged(dead_letter).unwrap_or_else(|| panic!("the Batch rule's target has no dead-letter queue: {dead_letter:?}"));
    assert_eq!(tag, "GetAtt");
    let queue = arn.strip_suffix(".Arn").unwrap();
    assert_eq!(get(resources, &[queue, "Type"]).as_str(), Some("AWS::SQS::Queue"));
    assert!(
        get(rules[0], &["Properties", "RetryPolicy", "MaximumRetryAttempts"]).as_u64().is_some(),
        "the target retries, then dead-letters"
    );

    let sends = resources.as_mapping().unwrap().values().any(|r| {
        get(r, &["Type"]).as_str() == Some("AWS::SQS::QueuePolicy")
            && get(r, &["Properties", "Queues"])
                .as_sequence()
                .unwrap()
                .iter()
                .any(|q| tagged(q) == Some(("Ref".into(), queue.into())))
            && get(r, &["Properties", "PolicyDocument", "Statement"]).as_sequence().unwrap().iter().any(|s| {
                get(s, &["Effect"]).as_str() == Some("Allow")
                    && strings(get(s, &["Principal", "Service"])).contains(&"events.amazonaws.com".to_owned())
                    && strings(get(s, &["Action"])).contains(&"sqs:SendMessage".to_owned())
                    && tagged(get(s, &["Resource"])) == Some(("GetAtt".into(), format!("{queue}.Arn")))
            })
    });
    assert!(sends, "a queue policy lets EventBridge send to {queue}");
    let alarmed = resources.as_mapping().unwrap().values().any(|r| {
        get(r, &["Type"]).as_str() == Some("AWS::CloudWatch::Alarm")
            && get(r, &["Properties", "Dimensions"]).as_sequence().is_some_and(|d| {
                d.iter().any(|d| tagged(get(d, &["Value"])) == Some(("GetAtt".into(), format!("{queue}.QueueName"))))
            })
    });
    assert!(alarmed, "{queue} not empty is an alarm");
}

#[test]
fn training_containers_cannot_reach_the_instance_metadata_service() {
    let template = template();
    let resources = get(&template, &["Resources"]);
    let metadata = get(resources, &["TrainingLaunchTemplate", "Properties", "LaunchTemplateData", "MetadataOptions"]);
    assert_eq!(get(metadata, &["HttpTokens"]).as_str(), Some("required"), "IMDSv2 only");
    // One hop: the instance (the ECS agent) reaches IMDS, a container behind the Docker bridge
    // does not, so the job sees its job role only, never the instance role.
    assert_eq!(get(metadata, &["HttpPutResponseHopLimit"]).as_u64(), Some(1));
    for environment in ["SpotComputeEnvironment", "OnDemandComputeEnvironment"] {
        let template_id = get(resources, &[environment, "Properties", "ComputeResources", "LaunchTemplate", "LaunchTemplateId"]);
        assert_eq!(tagged(template_id), Some(("Ref".into(), "TrainingLaunchTemplate".into())), "{environment}");
    }
    // Without IMDS the SDK in the container learns its region from the environment.
    let job_env = get(resources, &["TrainerJobDefinition", "Properties", "ContainerProperties", "Environment"]);
    let region = job_env.as_sequence().and_then(|vars| vars.iter().find(|v| get(v, &["Name"]).as_str() == Some("AWS_REGION")));
    assert_eq!(
        region.map(|v| tagged(get(v, &["Value"]))),
        Some(Some(("Ref".into(), "AWS::Region".into()))),
        "the job sets AWS_REGION"
    );
}
