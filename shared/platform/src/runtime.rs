//! The local platform as one long-running process, as the AWS deployment runs it: the HTTP
//! endpoint, the event router (raw bucket -> ingest, model cards -> register-model), the training
//! queue -> dispatch-training, the states of the training jobs it started -> dispatch-training,
//! the monitor on a schedule, and the folder watcher, so that a file copied into
//! `<data-dir>/buckets/raw/datasets/...` is ingested as an upload to S3 would be. (A job's model
//! card is routed to register-model by the job's host.)
//!
//! A stop stops taking work, lets the item in hand finish (every put is a rename, every table
//! write a transaction), routes the events already announced, and writes the last monitoring
//! counters.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use cvops_core::ports::JobStatus;
use cvops_dispatch_training::DispatchEvent;
use cvops_local::ObjectEvent;
use cvops_monitor::ModelReport;
use tokio::sync::watch;

use crate::delivery::deliver;
use crate::endpoint::LocalEndpoint;
use crate::job_host::JobStates;
use crate::platform::{LocalPlatform, TRAINING_QUEUE};
use crate::router::{route_event, Routed};
use crate::watcher::Watcher;

/// How often each of the runtime's loops runs.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Between monitor runs (the first one after one period, not at start).
    pub monitor_every: Duration,
    /// Between scans of the bucket folders for files copied in.
    pub watch_every: Duration,
    /// Between polls of the training queue.
    pub queue_every: Duration,
}

/// What the runtime did that its user should hear about.
#[derive(Debug)]
pub enum Notice<'a> {
    Routed {
        event: &'a ObjectEvent,
        routed: &'a Routed,
    },
    /// A function failed on an event for good (it is kept in the function's failure queue), or a
    /// loop's work failed and will be tried at its next turn.
    Failed {
        what: String,
        error: anyhow::Error,
    },
    Monitored(&'a ModelReport),
    /// A training job started here changed state (told to dispatch-training, as Batch's events are).
    Job(&'a JobStatus),
}

/// Runs until `stop` completes; every [`Notice`] goes to `notify`. `watcher` is made by the caller
/// before it tells anyone the platform is up ([`Watcher::new`] takes what is in the folders then
/// as known), so that no file copied in after that goes unannounced.
pub async fn run(
    platform: &LocalPlatform,
    endpoint: LocalEndpoint,
    listener: tokio::net::TcpListener,
    mut watcher: Watcher,
    schedule: Schedule,
    stop: impl Future<Output = ()>,
    notify: &mut dyn FnMut(Notice<'_>),
) -> anyhow::Result<()> {
    let feed = endpoint.feed.clone();
    let (stopping, stopped) = watch::channel(false);
    let mut shutdown = stopped.clone();
    let server = tokio::spawn(endpoint.serve(listener, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }));
    let mut jobs = JobStates::default();
    let mut watch_tick = tokio::time::interval(schedule.watch_every.max(Duration::from_millis(100)));
    let mut queue_tick = tokio::time::interval(schedule.queue_every);
    let mut monitor_tick = tokio::time::interval(schedule.monitor_every.max(Duration::from_secs(1)));
    monitor_tick.tick().await; // the first run after one period, not at start
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(event) = platform.next_event() => {
                watcher.saw(&event, platform);
                route_and_tell(platform, &event, notify).await;
            }
            notification = watcher.notified() => {
                for event in watcher.complete(&notification, platform) {
                    route_and_tell(platform, &event, notify).await;
                }
            }
            _ = watch_tick.tick() => {
                for event in watcher.scan(platform) {
                    route_and_tell(platform, &event, notify).await;
                }
            }
            _ = queue_tick.tick() => {
                let dispatch = &platform.dispatch;
                let delivered = deliver(platform.queue.as_ref(), TRAINING_QUEUE, Duration::from_secs(60), |event| async move {
                    dispatch.handle(&DispatchEvent::Sqs(event)).await
                }).await;
                if let Err(e) = delivered {
                    notify(Notice::Failed { what: "training queue".into(), error: e.into() });
                }
                match jobs.follow(platform).await {
                    Ok(changed) => changed.iter().for_each(|status| notify(Notice::Job(status))),
                    Err(error) => notify(Notice::Failed { what: "training jobs' states".into(), error }),
                }
            }
            _ = monitor_tick.tick() => {
                if let Err(e) = feed.flush().await {
                    notify(Notice::Failed { what: "monitoring counters (not written yet)".into(), error: e.into() });
                }
                match platform.monitor.run(None).await {
                    Ok(reports) => reports.iter().for_each(|report| notify(Notice::Monitored(report))),
                    Err(e) => notify(Notice::Failed { what: "monitor".into(), error: e.into() }),
                }
            }
        }
    }
    let _ = stopping.send(true);
    server.await.context("the endpoint stopped unexpectedly")??;
    // Events already announced are routed, so nothing that was put goes unprocessed.
    for event in platform.pending_events() {
        route_and_tell(platform, &event, notify).await;
    }
    Ok(())
}

async fn route_and_tell(platform: &LocalPlatform, event: &ObjectEvent, notify: &mut dyn FnMut(Notice<'_>)) {
    match route_event(platform, event).await {
        Ok(routed) => notify(Notice::Routed { event, routed: &routed }),
        Err(error) => notify(Notice::Failed { what: event.key.clone(), error }),
    }
}
