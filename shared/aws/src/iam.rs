//! What IAM must grant for the calls the adapters make, and which calls each deployed unit makes.
//!
//! Three tables, which the template test (`tests/tests/template.rs`) reads; it fails when a
//! function's policy in `infra/template.yaml` (or the trainer's job role) lacks an action, on the
//! resource and partition key, that one of its calls needs:
//!
//! - [`OPERATIONS`]: every SDK operation the adapters send, and the IAM actions it needs, each on
//!   what. The test reads the adapters' source and fails on an operation missing here, or listed
//!   here and no longer sent, and on a request that sends tags without the tagging action.
//! - [`METHODS`]: every port method, and the SDK operations its adapter sends (the test follows
//!   each method through the adapter's helpers and fails when this is not exactly that set).
//! - [`UNITS`]: each function (and the trainer's Batch job), and the port methods it calls, on
//!   which bucket and prefix, which partition keys, which queue. Read off the code: `main.rs`
//!   picks the adapters (the test checks the adapters it names against these uses), the handlers
//!   and the core helpers they call (registry, catalog, snapshot, monitoring) make the calls.
//!   A new call in a handler needs a line here; the policy then follows from the test.

/// What an action is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The objects the call names: `<bucket ARN>/<key>`.
    Object,
    /// The bucket itself (`s3:ListBucket`).
    Bucket,
    /// The object a copy reads.
    SourceObject,
    /// The bucket a copy reads from.
    SourceBucket,
    /// The table's items (and the partition keys the call names, for `dynamodb:LeadingKeys`).
    Item,
    Queue,
    JobQueue,
    JobDefinition,
    /// The job a submit creates (`arn:...:batch:<region>:<account>:job/*`).
    NewJob,
    /// An action without resource-level permissions: `"*"`.
    Any,
}

/// One IAM action an operation needs.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub action: &'static str,
    pub on: On,
}

const fn needs(action: &'static str, on: On) -> Needs {
    Needs { action, on }
}

/// An SDK operation (`service` is the adapter's file and the SDK crate's suffix, `name` the
/// client method), and what IAM must allow for it.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub service: &'static str,
    pub name: &'static str,
    pub needs: &'static [Needs],
}

/// Every operation the adapters send.
pub const OPERATIONS: &[Operation] = &[
    Operation { service: "s3", name: "put_object", needs: &[needs("s3:PutObject", On::Object)] },
    // Without s3:ListBucket, S3 answers a missing key with 403, not 404: the port's NotFound
    // (a deleted upload, an absent card) would read as a backend error.
    Operation {
        service: "s3",
        name: "get_object",
        needs: &[needs("s3:GetObject", On::Object), needs("s3:ListBucket", On::Bucket)],
    },
    Operation {
        service: "s3",
        name: "head_object",
        needs: &[needs("s3:GetObject", On::Object), needs("s3:ListBucket", On::Bucket)],
    },
    Operation { service: "s3", name: "list_objects_v2", needs: &[needs("s3:ListBucket", On::Bucket)] },
    Operation {
        service: "s3",
        name: "copy_object",
        needs: &[
            needs("s3:GetObject", On::SourceObject),
            needs("s3:ListBucket", On::SourceBucket),
            needs("s3:PutObject", On::Object),
        ],
    },
    Operation { service: "s3", name: "delete_object", needs: &[needs("s3:DeleteObject", On::Object)] },
    Operation { service: "dynamodb", name: "put_item", needs: &[needs("dynamodb:PutItem", On::Item)] },
    Operation { service: "dynamodb", name: "get_item", needs: &[needs("dynamodb:GetItem", On::Item)] },
    Operation { service: "dynamodb", name: "query", needs: &[needs("dynamodb:Query", On::Item)] },
    Operation { service: "dynamodb", name: "update_item", needs: &[needs("dynamodb:UpdateItem", On::Item)] },
    Operation { service: "dynamodb", name: "delete_item", needs: &[needs("dynamodb:DeleteItem", On::Item)] },
    Operation { service: "sqs", name: "send_message", needs: &[needs("sqs:SendMessage", On::Queue)] },
    Operation { service: "sqs", name: "receive_message", needs: &[needs("sqs:ReceiveMessage", On::Queue)] },
    Operation { service: "sqs", name: "delete_message", needs: &[needs("sqs:DeleteMessage", On::Queue)] },
    Operation { service: "sqs", name: "change_message_visibility", needs: &[needs("sqs:ChangeMessageVisibility", On::Queue)] },
    // The request carries tags (`cvops:image`): tagging on create needs batch:TagResource on the
    // new job besides batch:SubmitJob on the queue and the definition.
    Operation {
        service: "batch",
        name: "submit_job",
        needs: &[
            needs("batch:SubmitJob", On::JobQueue),
            needs("batch:SubmitJob", On::JobDefinition),
            needs("batch:TagResource", On::NewJob),
        ],
    },
    // Neither supports resource-level permissions.
    Operation { service: "batch", name: "list_jobs", needs: &[needs("batch:ListJobs", On::Any)] },
    Operation { service: "batch", name: "describe_jobs", needs: &[needs("batch:DescribeJobs", On::Any)] },
];

/// The operation `service`.`name`, if the table has it.
pub fn operation(service: &str, name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.service == service && o.name == name)
}

/// The ports, by the name their handles have in the uses below, with their adapter and its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Port {
    Objects,
    Table,
    Queue,
    Jobs,
}

impl Port {
    /// The adapter type that implements the port on AWS.
    pub fn adapter(self) -> &'static str {
        match self {
            Port::Objects => "S3ObjectStore",
            Port::Table => "DynamoTable",
            Port::Queue => "SqsQueue",
            Port::Jobs => "BatchJobRunner",
        }
    }

    /// The adapter's service: its source file (`shared/aws/src/<service>.rs`) and SDK crate.
    pub fn service(self) -> &'static str {
        match self {
            Port::Objects => "s3",
            Port::Table => "dynamodb",
            Port::Queue => "sqs",
            Port::Jobs => "batch",
        }
    }

    /// The trait in `cvops_core::ports`.
    pub fn trait_name(self) -> &'static str {
        match self {
            Port::Objects => "ObjectStore",
            Port::Table => "Table",
            Port::Queue => "Queue",
            Port::Jobs => "JobRunner",
        }
    }
}

/// A port method and the operations its adapter sends (helpers followed).
#[derive(Debug, Clone, Copy)]
pub struct Method {
    pub port: Port,
    pub name: &'static str,
    pub sends: &'static [&'static str],
}

/// Every port method. The extension traits' methods (`list_all`, `exists`, `query_all`) are
/// written in terms of these: `list`, `head` and `query`.
pub const METHODS: &[Method] = &[
    Method { port: Port::Objects, name: "put", sends: &["put_object"] },
    Method { port: Port::Objects, name: "get", sends: &["get_object"] },
    Method { port: Port::Objects, name: "get_version", sends: &["get_object"] },
    Method { port: Port::Objects, name: "head", sends: &["head_object"] },
    Method { port: Port::Objects, name: "list", sends: &["list_objects_v2"] },
    Method { port: Port::Objects, name: "copy", sends: &["copy_object"] },
    Method { port: Port::Objects, name: "delete", sends: &["delete_object"] },
    // An unconditional put reads the stored version, then writes conditionally on it.
    Method { port: Port::Table, name: "put", sends: &["get_item", "put_item"] },
    Method { port: Port::Table, name: "put_if_absent", sends: &["put_item"] },
    Method { port: Port::Table, name: "put_if_version", sends: &["put_item"] },
    Method { port: Port::Table, name: "get", sends: &["get_item"] },
    Method { port: Port::Table, name: "query", sends: &["query"] },
    Method { port: Port::Table, name: "add", sends: &["update_item"] },
    Method { port: Port::Table, name: "add_all", sends: &["update_item"] },
    Method { port: Port::Table, name: "delete", sends: &["delete_item"] },
    Method { port: Port::Queue, name: "send", sends: &["send_message"] },
    Method { port: Port::Queue, name: "receive", sends: &["receive_message"] },
    Method { port: Port::Queue, name: "ack", sends: &["delete_message"] },
    Method { port: Port::Queue, name: "change_visibility", sends: &["change_message_visibility"] },
    Method { port: Port::Jobs, name: "submit", sends: &["submit_job"] },
    Method { port: Port::Jobs, name: "find", sends: &["list_jobs"] },
    Method { port: Port::Jobs, name: "describe", sends: &["describe_jobs"] },
];

/// What a method needs beyond what its operations do: the same GetObject, asked for one
/// version, is authorised as `s3:GetObjectVersion`.
pub const METHOD_NEEDS: &[(Port, &str, &[Needs])] =
    &[(Port::Objects, "get_version", &[needs("s3:GetObjectVersion", On::Object)])];

/// The actions `port`.`name` needs beyond its operations'.
pub fn method_needs(port: Port, name: &str) -> &'static [Needs] {
    METHOD_NEEDS.iter().find(|(p, n, _)| *p == port && *n == name).map(|(_, _, needs)| *needs).unwrap_or(&[])
}

/// The method `port`.`name`, if the table has it.
pub fn method(port: Port, name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.port == port && m.name == name)
}

/// A bucket, as the code knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Named by this environment variable.
    Env(&'static str),
    /// The bucket whose S3 notification invoked the function (the event names it).
    Notifying,
}

/// What a call is made on.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Keys starting with `prefix` (`""`: any key) in `bucket`.
    Objects { bucket: Bucket, prefix: &'static str },
    /// A copy from keys under one prefix to keys under another.
    Copy { from: Bucket, from_prefix: &'static str, to: Bucket, to_prefix: &'static str },
    /// Items of the table (`CVOPS_TABLE`) whose partition key matches `pk`, an IAM `StringLike`
    /// pattern: `MODEL#*`, `MODELS`, `*` for any.
    Items { pk: &'static str },
    /// The queue whose URL this environment variable holds.
    Queue { url: &'static str },
    /// The job queue and definition `CVOPS_JOB_QUEUE` and `CVOPS_JOB_DEFINITION` name.
    Jobs,
}

/// The environment variable naming the table.
pub const TABLE_VARIABLE: &str = "CVOPS_TABLE";
pub const JOB_QUEUE_VARIABLE: &str = "CVOPS_JOB_QUEUE";
pub const JOB_DEFINITION_VARIABLE: &str = "CVOPS_JOB_DEFINITION";

/// A port method a unit calls, on what.
#[derive(Debug, Clone, Copy)]
pub struct Use {
    pub port: Port,
    pub method: &'static str,
    pub target: Target,
}

/// A deployed unit: a Lambda function (by its binary's name) or the trainer's Batch job.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    pub name: &'static str,
    pub uses: &'static [Use],
}

const fn objects(method: &'static str, bucket: Bucket, prefix: &'static str) -> Use {
    Use { port: Port::Objects, method, target: Target::Objects { bucket, prefix } }
}

const fn items(method: &'static str, pk: &'static str) -> Use {
    Use { port: Port::Table, method, target: Target::Items { pk } }
}

const fn queue(method: &'static str, url: &'static str) -> Use {
    Use { port: Port::Queue, method, target: Target::Queue { url } }
}

const fn jobs(method: &'static str) -> Use {
    Use { port: Port::Jobs, method, target: Target::Jobs }
}

const RAW: Bucket = Bucket::Env("CVOPS_RAW_BUCKET");
const STORE: Bucket = Bucket::Env("CVOPS_STORE_BUCKET");
const MODELS: Bucket = Bucket::Env("CVOPS_MODELS_BUCKET");

/// The calls each unit makes.
pub const UNITS: &[Unit] = &[
    // Any key of the bucket that notified it (keys outside datasets/ are quarantined too); the
    // catalog's records, hash claims, near-duplicate bands, arrival counters and dataset list.
    Unit {
        name: "ingest",
        uses: &[
            objects("get", Bucket::Notifying, ""),
            objects("head", Bucket::Notifying, ""),
            objects("delete", Bucket::Notifying, ""),
            Use {
                port: Port::Objects,
                method: "copy",
                target: Target::Copy { from: Bucket::Notifying, from_prefix: "", to: STORE, to_prefix: "quarantine/" },
            },
            objects("put", STORE, "quarantine/"),
            items("get", "*"),
            items("put", "*"),
            items("put_if_absent", "*"),
            items("put_if_version", "*"),
            items("query", "*"),
            items("add", "*"),
            items("delete", "*"),
        ],
    },
    // Snapshots (catalog query, manifest parts and descriptor), runs, the job index; refused
    // requests to the dead-letter queue; the job looked up by name before a submit.
    Unit {
        name: "dispatch-training",
        uses: &[
            objects("put", STORE, "snapshots/"),
            items("get", "*"),
            items("put", "*"),
            items("put_if_absent", "*"),
            items("put_if_version", "*"),
            items("query", "*"),
            queue("send", "CVOPS_DEAD_LETTER_QUEUE_URL"),
            jobs("find"),
            jobs("submit"),
        ],
    },
    // The card and model from the bucket that notified it, production's model, the snapshot's
    // descriptor and parts, its test images; an evaluation too large for its version record
    // goes beside it in the store bucket (registry/); the registry's versions, aliases, gate and
    // the run the card names.
    Unit {
        name: "register-model",
        uses: &[
            objects("get", Bucket::Notifying, "models/"),
            objects("get_version", Bucket::Notifying, "models/"),
            objects("get", MODELS, "models/"),
            objects("get_version", MODELS, "models/"),
            objects("get", STORE, "snapshots/"),
            objects("get", RAW, "datasets/"),
            objects("put", STORE, "registry/"),
            items("get", "*"),
            items("put", "*"),
            items("put_if_absent", "*"),
            items("put_if_version", "*"),
        ],
    },
    // Internet-facing: reads the registry (the model list, a model's versions and aliases) and
    // writes monitoring items only (the hour index, read before it is written, and the sharded
    // aggregates); low-confidence inputs go to review/.
    Unit {
        name: "infer",
        uses: &[
            objects("get", MODELS, "models/"),
            objects("get_version", MODELS, "models/"),
            objects("put", STORE, "review/"),
            items("query", "MODELS"),
            items("query", "MODEL#*"),
            items("get", "MODEL#*"),
            items("put", "MONIDX#*"),
            items("add_all", "MON#*"),
        ],
    },
    // Snapshot descriptors (the training baseline); the registry, monitoring windows, arrivals,
    // reports and retraining state; retraining requests to the training queue.
    Unit {
        name: "monitor",
        uses: &[
            objects("get", STORE, "snapshots/"),
            items("get", "*"),
            items("put", "*"),
            items("put_if_absent", "*"),
            items("put_if_version", "*"),
            items("query", "*"),
            items("delete", "*"),
            queue("send", "CVOPS_TRAINING_QUEUE_URL"),
        ],
    },
    // The snapshot's descriptor and parts, the images it names (each one's size read first);
    // the model and its card.
    Unit {
        name: "trainer",
        uses: &[
            objects("get", STORE, "snapshots/"),
            objects("head", RAW, "datasets/"),
            objects("get", RAW, "datasets/"),
            objects("put", MODELS, "models/"),
        ],
    },
];

/// The unit called `name`.
pub fn unit(name: &str) -> Option<&'static Unit> {
    UNITS.iter().find(|u| u.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_use_names_a_method_and_every_method_an_operation() {
        for unit in UNITS {
            for u in unit.uses {
                let m = method(u.port, u.method).unwrap_or_else(|| panic!("{}: no method {:?}.{}", unit.name, u.port, u.method));
                for op in m.sends {
                    assert!(operation(m.port.service(), op).is_some(), "{}.{op} is not in OPERATIONS", m.port.service());
                }
            }
        }
    }
}
