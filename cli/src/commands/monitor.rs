//! `cvops monitor`: run the monitor now over the local platform (what the schedule does on AWS)
//! and print each model's report; `--json` prints one report per line.

use std::path::Path;
use std::process::ExitCode;

use cvops_core::drift::Status;
use cvops_monitor::{retrain, ModelReport};

use cvops_platform::LocalPlatform;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Hours in the window [default: CVOPS_MONITOR_WINDOW_HOURS, or 1].
    #[arg(long)]
    pub window_hours: Option<u32>,
    /// One JSON report per model and line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let mut platform = LocalPlatform::open(data_dir)?;
    if let Some(hours) = args.window_hours {
        platform.monitor.set_window_hours(hours);
    }
    let reports = platform.monitor.run(args.model.as_deref()).await?;
    if reports.is_empty() {
        eprintln!("no models to monitor yet; train one with `cvops train --dataset D --wait`");
    }
    for report in &reports {
        if args.json {
            println!("{}", serde_json::to_string(report)?);
        } else {
            print_report(report);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The report as a table a person reads at a glance.
pub fn print_report(report: &ModelReport) {
    println!("{}: {} (generated {})", report.model, report.status.as_str(), report.generated_at);
    for v in &report.versions {
        let a = &v.assessment;
        let window = format!("{} .. {}", v.window.first().map_or("", String::as_str), v.window.last().map_or("", String::as_str));
        println!(
            "  v{}{}: {}  window {window} UTC, {} requests, snapshot {}",
            v.model_version,
            if v.production { " (production)" } else { "" },
            a.status.as_str(),
            a.service.requests,
            v.snapshot
        );
        if a.status == Status::InsufficientData {
            println!("    too few requests to judge drift (fewer than the minimum); the figures are shown, not judged");
        }
        println!("    {:<12} {:>8} {:>8}  status", "input", "PSI", "W/sd");
        for f in &a.features {
            println!("    {:<12} {:>8.3} {:>8.3}  {}", f.feature, f.psi, f.wasserstein_over_std, f.status.as_str());
        }
        println!(
            "    predictions  PSI {:.3}, JS distance {:.3}: {}",
            a.prediction.psi,
            a.prediction.js_distance,
            a.prediction.status.as_str()
        );
        println!(
            "    confidence   mean {}, below {} {}, change from the previous window {}: {}",
            fmt(a.confidence.mean, 3),
            a.confidence.threshold,
            a.confidence.share_low.map_or_else(|| "-".into(), |s| format!("{:.1}%", 100.0 * s)),
            fmt(a.confidence.change, 3),
            a.confidence.status.as_str()
        );
        println!(
            "    service      errors {:.2}%, latency p50 {} ms, p95 {} ms, p99 {} ms: {}",
            100.0 * a.service.error_rate,
            fmt(a.service.p50_ms, 2),
            fmt(a.service.p95_ms, 2),
            fmt(a.service.p99_ms, 2),
            a.service.status.as_str()
        );
    }
    if let Some(r) = &report.retraining {
        match (&r.trigger, r.requested, &r.suppressed_until) {
            (Some(trigger), true, _) => {
                println!("  retraining requested ({trigger}): {}; request {}", r.detail, r.request_id.as_deref().unwrap_or("-"))
            }
            (Some(trigger), false, Some(until)) => {
                println!("  retraining not requested: {trigger} ({}) inside the cooldown, until {until}", r.detail)
            }
            _ => println!("  retraining: {}", r.detail),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RetrainArgs {
    pub model: String,
    /// Retrain when production's report says DRIFT.
    #[arg(long)]
    pub on_drift: Option<bool>,
    /// Retrain once this many images were accepted since production's snapshot (0 turns it off).
    #[arg(long)]
    pub min_new_images: Option<u64>,
    /// No second request within this many hours.
    #[arg(long)]
    pub cooldown_hours: Option<f64>,
}

/// `cvops retraining MODEL [...]`: shows the model's continuous-training rule, changing what is given.
pub async fn retraining(data_dir: &Path, args: RetrainArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let defaults = LocalPlatform::monitor_config(&platform.settings)?.default_rule;
    let table = platform.table.as_ref();
    let mut rule = retrain::rule_for(table, &args.model, defaults).await?;
    let changing = args.on_drift.is_some() || args.min_new_images.is_some() || args.cooldown_hours.is_some();
    if let Some(on) = args.on_drift {
        rule.on_drift = on;
    }
    if let Some(n) = args.min_new_images {
        rule.min_new_images = (n > 0).then_some(n);
    }
    if let Some(hours) = args.cooldown_hours {
        anyhow::ensure!(hours >= 0.0, "--cooldown-hours is {hours}; give 0 or more");
        rule.cooldown_hours = hours;
    }
    if changing {
        retrain::set_rule(table, &args.model, &rule).await?;
    }
    println!(
        "{}: retrain on drift {}, on new images {}, cooldown {} h",
        args.model,
        if rule.on_drift { "yes" } else { "no" },
        rule.min_new_images.map_or_else(|| "off".to_owned(), |n| format!("from {n}")),
        rule.cooldown_hours
    );
    Ok(ExitCode::SUCCESS)
}
