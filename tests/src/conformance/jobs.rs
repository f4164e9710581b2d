use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cvops_core::ports::{JobRunner, JobSpec, JobState, JobStatus};

/// What dispatch-training relies on from a job runner that executes `command` (the local one).
pub async fn jobs(runner: &dyn JobRunner) {
    let spec = |script: &str, array_size: u32| JobSpec {
        name: "conformance".into(),
        image: "cvops-trainer:test".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
        gpus: 0,
        array_size,
    };

    let ok = runner.submit(&spec(r#"test "$GREETING" = hello && test -n "$AWS_BATCH_JOB_ID""#, 1)).await.expect("submit");
    assert_eq!(wait(runner, &ok).await.state, JobState::Succeeded, "the job sees its environment and succeeds");

    let failing = runner.submit(&spec("exit 3", 1)).await.unwrap();
    let status = wait(runner, &failing).await;
    assert_eq!(status.state, JobState::Failed, "a non-zero exit fails the job");
    assert!(status.reason.unwrap_or_default().contains('3'), "the reason names the exit status");

    let array =
        runner.submit(&spec(r#"case "$AWS_BATCH_JOB_ARRAY_INDEX" in 0|1|2) exit 0;; *) exit 1;; esac"#, 3)).await.unwrap();
    assert_eq!(wait(runner, &array).await.state, JobState::Succeeded, "every child of an array job gets its index");

    let one_bad_child = runner.submit(&spec(r#"test "$AWS_BATCH_JOB_ARRAY_INDEX" != 1"#, 3)).await.unwrap();
    assert_eq!(wait(runner, &one_bad_child).await.state, JobState::Failed, "one failed child fails the array job");

    assert!(runner.describe("no-such-job").await.is_err(), "an unknown id is an error");
}

async fn wait(runner: &dyn JobRunner, id: &str) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = runner.describe(id).await.expect("describe");
        if status.state.is_final() || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
