//! `cvops up`: the whole local platform as one long-running process, as the AWS deployment runs
//! it: the HTTP endpoint, the event router (raw bucket -> ingest), the training queue ->
//! dispatch-training, the states of the jobs it starts, the monitor on a schedule, and a watcher
//! on the raw bucket's folder, so that a file copied into `<data-dir>/buckets/raw/datasets/...` is
//! ingested as an upload to S3 would be. A job's model card reaches register-model through the
//! job's host (`cvops_platform::job_host`); `cvops models` shows the versions.
//!
//! Ctrl-C stops taking work, lets the item in hand finish (every put is a rename, every table
//! write a transaction), writes the last monitoring counters, and exits.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use cvops_platform::endpoint::LocalEndpoint;
use cvops_platform::job_host;
use cvops_platform::router::Routed;
use cvops_platform::runtime::{self, Notice, Schedule};
use cvops_platform::watcher::Watcher;
use cvops_platform::{LocalPlatform, RAW_BUCKET};

use super::monitor::print_report;
use super::serve::Listen;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub listen: Listen,
    /// Seconds between monitor runs (the schedule).
    #[arg(long, default_value_t = 300)]
    pub monitor_every: u64,
    /// Seconds between scans of the bucket folders for files copied in.
    #[arg(long, default_value_t = 1.0)]
    pub watch_every: f64,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let api_key = args.listen.api_key()?;
    let header_timeout = args.listen.header_timeout()?;
    let platform = LocalPlatform::open(data_dir)?;
    let endpoint = LocalEndpoint::new(&platform, api_key, Duration::from_secs(2))?.with_header_timeout(header_timeout);
    let listener = args.listen.bind().await?;
    // Before the banner: whatever is copied in once the banner is out is new to the watcher.
    let watcher = Watcher::new(&platform);
    println!("cvops up: {}", data_dir.display());
    println!("  endpoint   http://{} (POST /v1/models/{{name}}/predict)", listener.local_addr()?);
    println!(
        "  uploads    copy files into {}/datasets/<dataset>/[<split>/]<label>/",
        platform.objects.bucket_dir(RAW_BUCKET).display()
    );
    println!("  monitor    every {} s; training requests from the queue; Ctrl-C stops", args.monitor_every);
    let schedule = Schedule {
        monitor_every: Duration::from_secs(args.monitor_every),
        watch_every: Duration::from_secs_f64(args.watch_every.max(0.1)),
        queue_every: Duration::from_secs(2),
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("stopping: finishing the request in hand and writing the last monitoring counters");
    };
    runtime::run(&platform, endpoint, listener, watcher, schedule, ctrl_c, &mut print_notice).await?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn print_notice(notice: Notice<'_>) {
    match notice {
        Notice::Routed { routed: Routed::Register(outcomes), .. } => {
            outcomes.iter().for_each(|o| println!("register-model: {o:?}"));
        }
        Notice::Routed { .. } => {}
        Notice::Failed { what, error } => eprintln!("{what}: {error:#}"),
        Notice::Monitored(report) => print_report(report),
        Notice::Job(status) => {
            let reason = status.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            println!("training job {}: {}{reason}", status.id, job_host::batch_status(status.state));
        }
    }
}
