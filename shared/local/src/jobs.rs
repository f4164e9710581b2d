//! Jobs as child processes, given the environment an AWS Batch job gets
//! (`AWS_BATCH_JOB_ID`, `AWS_BATCH_JOB_ATTEMPT`, and `AWS_BATCH_JOB_ARRAY_INDEX` for array
//! children), with each child's output in `<log_dir>/<job id>[.<index>].log`.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use async_trait::async_trait;
use cvops_core::ports::{JobRunner, JobSpec, JobState, JobStatus, JobsError};

#[derive(Debug)]
pub struct ProcessJobRunner {
    log_dir: PathBuf,
    jobs: Mutex<HashMap<String, Vec<Child>>>,
}

impl ProcessJobRunner {
    pub fn new(log_dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let log_dir = log_dir.into();
        std::fs::create_dir_all(&log_dir)?;
        Ok(Self { log_dir, jobs: Mutex::new(HashMap::new()) })
    }

    /// The jobs this runner started, for the job host to follow.
    pub fn job_ids(&self) -> Vec<String> {
        self.jobs.lock().expect("jobs poisoned").keys().cloned().collect()
    }

    /// Where the output of job `id` (not an array job) goes.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.log_dir.join(format!("{id}.log"))
    }
}

fn backend(e: std::io::Error) -> JobsError {
    JobsError::Backend { message: e.to_string(), retryable: false, source: Some(Box::new(e)) }
}

impl ProcessJobRunner {
    /// Job names are kept as files beside the logs, so a name is found again after a restart.
    fn name_file(&self, name: &str) -> PathBuf {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
        self.log_dir.join(format!("{safe}.job"))
    }

    fn remember_name(&self, name: &str, id: &str) -> std::io::Result<()> {
        std::fs::write(self.name_file(name), id)
    }
}

#[async_trait]
impl JobRunner for ProcessJobRunner {
    async fn submit(&self, spec: &JobSpec) -> Result<String, JobsError> {
        let (program, args) = spec.command.split_first().ok_or_else(|| JobsError::Invalid("the command is empty".into()))?;
        if spec.array_size == 0 || spec.array_size > 10_000 {
            return Err(JobsError::Invalid(format!("array size {} is outside 1..=10000", spec.array_size)));
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.remember_name(&spec.name, &id).map_err(backend)?;
        let mut children = Vec::new();
        for index in 0..spec.array_size {
            let array = spec.array_size > 1;
            let log_path = if array { self.log_dir.join(format!("{id}.{index}.log")) } else { self.log_path(&id) };
            let log = File::create(log_path).map_err(backend)?;
            let mut command = Command::new(program);
            command
                .args(args)
                .envs(&spec.env)
                .env("AWS_BATCH_JOB_ID", if array { format!("{id}:{index}") } else { id.clone() })
                .env("AWS_BATCH_JOB_ATTEMPT", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(backend)?)
                .stderr(log);
            if array {
                command.env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string());
            }
            children.push(command.spawn().map_err(backend)?);
        }
        self.jobs.lock().expect("jobs poisoned").insert(id.clone(), children);
        Ok(id)
    }

    async fn find(&self, name: &str) -> Result<Option<String>, JobsError> {
        match std::fs::read_to_string(self.name_file(name)) {
            Ok(id) => Ok(Some(id.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// An array job is running while any child runs, succeeded when all did, failed otherwise.
    async fn describe(&self, id: &str) -> Result<JobStatus, JobsError> {
        let mut jobs = self.jobs.lock().expect("jobs poisoned");
        let children = jobs.get_mut(id).ok_or_else(|| JobsError::NotFound(id.to_owned()))?;
        let mut running = false;
        let mut failure = None;
        for (index, child) in children.iter_mut().enumerate() {
            match child.try_wait().map_err(backend)? {
                None => running = true,
                Some(status) if status.success() => {}
                Some(status) => {
                    failure.get_or_insert_with(|| format!("child {index} exited with {status}"));
                }
            }
        }
        let state = match (running, &failure) {
            (true, _) => JobState::Running,
            (false, None) => JobState::Succeeded,
            (false, Some(_)) => JobState::Failed,
        };
        Ok(JobStatus { id: id.to_owned(), state, reason: failure.filter(|_| state == JobState::Failed) })
    }
}
