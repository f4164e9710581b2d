//! `cvops up`: the whole local platform as one long-running process, as the AWS deployment runs
//! it: the HTTP endpoint, the event router (raw bucket -> ingest, model cards -> register-model),
//! the training queue -> dispatch-training, the monitor on a schedule, and a watcher on the local
//! buckets' folders, so that a file copied into `<data-dir>/buckets/raw/datasets/...` is ingested
//! as an upload to S3 would be, and a model card a training job writes is registered.
//!
//! Ctrl-C stops taking work, lets the item in hand finish (every put is a rename, every table
//! write a transaction), writes the last monitoring counters, and exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use cvops_dispatch_training::DispatchEvent;
use cvops_local::{ObjectEvent, ObjectEventKind};
use tokio::sync::watch;

use super::monitor::print_report;
use super::serve::{Endpoint, Listen};
use crate::platform::{LocalPlatform, MODELS_BUCKET, RAW_BUCKET, TRAINING_QUEUE};
use crate::queues::deliver;
use crate::router::{route, route_model_card};

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
    let (platform, mut events) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    let endpoint = Endpoint::new(&platform, api_key, Duration::from_secs(2))?.with_header_timeout(header_timeout);
    let feed = endpoint.feed.clone();
    let listener = args.listen.bind().await?;
    let raw_dir = platform.objects.bucket_dir(RAW_BUCKET);
    let models_dir = platform.objects.bucket_dir(MODELS_BUCKET);
    println!("cvops up: {}", data_dir.display());
    println!("  endpoint   http://{} (POST /v1/models/{{name}}/predict)", listener.local_addr()?);
    println!("  uploads    copy files into {}/datasets/<dataset>/[<split>/]<label>/", raw_dir.display());
    println!("  monitor    every {} s; training requests from the queue; Ctrl-C stops", args.monitor_every);

    let (stop, stopping) = watch::channel(false);
    let mut shutdown = stopping.clone();
    let server = tokio::spawn(endpoint.serve(listener, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }));
    let mut watcher = Watcher::new(vec![raw_dir.clone(), models_dir.clone()]);
    let mut watch_tick = tokio::time::interval(Duration::from_secs_f64(args.watch_every.max(0.1)));
    let mut queue_tick = tokio::time::interval(Duration::from_secs(2));
    let mut monitor_tick = tokio::time::interval(Duration::from_secs(args.monitor_every.max(1)));
    monitor_tick.tick().await; // the first run after one period, not at start
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            Some(event) = events.recv() => {
                watcher.saw(&event, &platform);
                dispatch_event(&platform, &event).await;
            }
            _ = watch_tick.tick() => {
                for event in watcher.scan(&platform) {
                    dispatch_event(&platform, &event).await;
                }
            }
            _ = queue_tick.tick() => {
                let dispatch = &platform.dispatch;
                let delivered = deliver(platform.queue.as_ref(), TRAINING_QUEUE, Duration::from_secs(60), |event| async move {
                    dispatch.handle(&DispatchEvent::Sqs(event)).await
                }).await;
                if let Err(e) = delivered {
                    eprintln!("training queue: {e}");
                }
            }
            _ = monitor_tick.tick() => {
                if let Err(e) = feed.flush().await {
                    eprintln!("monitoring counters not written yet: {e}");
                }
                match platform.monitor.run(None).await {
                    Ok(reports) => reports.iter().for_each(print_report),
                    Err(e) => eprintln!("monitor: {e}"),
                }
            }
        }
    }
    println!("stopping: finishing the request in hand and writing the last monitoring counters");
    let _ = stop.send(true);
    server.await.context("the endpoint stopped unexpectedly")??;
    // Events already announced are routed, so nothing that was put goes unprocessed.
    while let Ok(event) = events.try_recv() {
        dispatch_event(&platform, &event).await;
    }
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn dispatch_event(platform: &LocalPlatform, event: &ObjectEvent) {
    if let Err(e) = route(platform, event).await {
        eprintln!("ingest {}: {e:#}", event.key);
    }
    match route_model_card(platform, event).await {
        Ok(outcomes) => outcomes.iter().for_each(|o| println!("register-model: {o:?}")),
        Err(e) => eprintln!("register-model {}: {e:#}", event.key),
    }
}

/// Finds files that appeared in the bucket folders without passing through the object store
/// (copied in by hand, or written by a job in another process) and turns them into the event
/// S3 would have sent. A file counts once it has kept its size and time for one scan, so one
/// still being copied is not read half-way.
struct Watcher {
    roots: Vec<PathBuf>,
    /// Path -> (size, modified) as last seen; `announced` once routed.
    known: HashMap<PathBuf, (u64, SystemTime, bool)>,
}

impl Watcher {
    /// Everything already there is known: the watcher reports what arrives from now on.
    fn new(roots: Vec<PathBuf>) -> Self {
        let mut watcher = Self { roots, known: HashMap::new() };
        for (path, size, modified) in watcher.files() {
            watcher.known.insert(path, (size, modified, true));
        }
        watcher
    }

    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok) {
                // Hidden files are editors' and copiers' temporaries, not uploads.
                if !entry.file_type().is_file() || entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    out.push((entry.path().to_path_buf(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                }
            }
        }
        out
    }

    /// An event that came through the store: its file is already handled.
    fn saw(&mut self, event: &ObjectEvent, platform: &LocalPlatform) {
        if event.bucket != RAW_BUCKET && event.bucket != MODELS_BUCKET {
            return;
        }
        let path = platform.objects.bucket_dir(&event.bucket).join(&event.key);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                self.known.insert(path, (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), true));
            }
            Err(_) => {
                self.known.remove(&path);
            }
        }
    }

    fn scan(&mut self, platform: &LocalPlatform) -> Vec<ObjectEvent> {
        let mut events = Vec::new();
        for (path, size, modified) in self.files() {
            match self.known.get(&path) {
                Some((s, m, announced)) if *s == size && *m == modified => {
                    if !announced {
                        if let Some(event) = self.event_for(&path, size, platform) {
                            events.push(event);
                        }
                        self.known.insert(path, (size, modified, true));
                    }
                }
                // New or still changing: look again at the next scan.
                _ => {
                    self.known.insert(path, (size, modified, false));
                }
            }
        }
        events
    }

    fn event_for(&self, path: &Path, size: u64, platform: &LocalPlatform) -> Option<ObjectEvent> {
        for bucket in [RAW_BUCKET, MODELS_BUCKET] {
            let dir = platform.objects.bucket_dir(bucket);
            if let Ok(relative) = path.strip_prefix(&dir) {
                let key = relative.to_str()?.replace(std::path::MAIN_SEPARATOR, "/");
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                return Some(ObjectEvent {
                    bucket: bucket.into(),
                    key,
                    kind: ObjectEventKind::Created { size, etag: format!("{size:x}-{:x}", now.as_nanos()), copy: false },
                    sequencer: cvops_local::next_sequencer(),
                    time_millis: now.as_millis() as i64,
                });
            }
        }
        None
    }
}
