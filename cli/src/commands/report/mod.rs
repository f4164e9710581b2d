//! `cvops report --out DIR`: the latest monitoring reports as one HTML page with inline SVG
//! charts (baseline against window per input feature, predicted classes against the training
//! labels, confidence, latency per hour), readable from the file system without a server.

mod svg;

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Duration;
use cvops_core::monitoring::{self, hour_of};
use cvops_core::snapshot::Histogram;
use cvops_monitor::{report, ModelReport, VersionReport};

use cvops_platform::LocalPlatform;
use svg::escape;

const BASELINE: &str = "#8da0cb";
const WINDOW: &str = "#fc8d62";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write index.html into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Hours of latency history to chart.
    #[arg(long, default_value_t = 24)]
    pub hours: i64,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let reports = report::latest(platform.table.as_ref(), args.model.as_deref()).await?;
    if reports.is_empty() {
        anyhow::bail!("no monitoring report yet; run `cvops monitor` (or `cvops up`, which runs it on a schedule) first");
    }
    let now = platform.clock.now();
    let hours: Vec<String> =
        (0..args.hours.max(1)).rev().map(|back| hour_of(&(now - Duration::hours(back)).to_rfc3339())).collect();
    let mut html = String::from(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>cvops monitoring</title><style>
body{font-family:sans-serif;margin:24px;max-width:1400px} .charts{display:flex;flex-wrap:wrap;gap:8px}
table{border-collapse:collapse} td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}
.OK{color:#1a7f37}.WARN{color:#b58100}.DRIFT{color:#cf222e}</style></head><body><h1>cvops monitoring</h1>"#,
    );
    for model_report in &reports {
        write_model(&mut html, model_report);
        for version in &model_report.versions {
            let mut latency = (Vec::new(), Vec::new());
            for hour in &hours {
                let a = monitoring::read_window(
                    platform.table.as_ref(),
                    &version.model,
                    version.model_version,
                    std::slice::from_ref(hour),
                )
                .await?;
                latency.0.push(a.latency.quantile(0.5));
                latency.1.push(a.latency.quantile(0.99));
            }
            write_version(&mut html, version, &hours, latency);
        }
    }
    html.push_str("</body></html>\n");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let page = args.out.join("index.html");
    std::fs::write(&page, html).with_context(|| format!("cannot write {}", page.display()))?;
    println!("wrote {} ({} models); open it in a browser", page.display(), reports.len());
    Ok(ExitCode::SUCCESS)
}

fn status(s: cvops_core::drift::Status) -> String {
    let text = s.as_str();
    format!(r#"<b class="{}">{text}</b>"#, text.split(' ').next().unwrap_or(""))
}

fn write_model(html: &mut String, r: &ModelReport) {
    let _ = write!(html, "<h2>{}: {}</h2><p>generated {}</p>", escape(&r.model), status(r.status), escape(&r.generated_at));
    if let Some(d) = &r.retraining {
        let what = match (d.requested, &d.suppressed_until) {
            (true, _) => format!("retraining requested ({}): {}", d.trigger.as_deref().unwrap_or(""), d.detail),
            (false, Some(until)) => format!("retraining held back by the cooldown until {until}: {}", d.detail),
            _ => format!("retraining: {}", d.detail),
        };
        let _ = write!(html, "<p>{}</p>", escape(&what));
    }
}

/// Shares of a histogram's total, per bin.
fn shares(h: &Histogram) -> Vec<f64> {
    let total = h.total().max(1) as f64;
    h.counts.iter().map(|c| *c as f64 / total).collect()
}

/// Each bin's centre in the value's units, with `decimals` decimals.
fn bin_labels(h: &Histogram, decimals: usize) -> Vec<String> {
    h.centres().into_iter().map(|c| format!("{:.decimals$}", h.unscaled(c))).collect()
}

fn write_version(html: &mut String, v: &VersionReport, hours: &[String], latency: (Vec<Option<f64>>, Vec<Option<f64>>)) {
    let a = &v.assessment;
    let _ = write!(
        html,
        "<h3>v{}{}: {}</h3><p>window {} to {} UTC, {} requests, {} errors; trained on snapshot {} of {}</p>",
        v.model_version,
        if v.production { " (production)" } else { "" },
        status(a.status),
        escape(v.window.first().map_or("", String::as_str)),
        escape(v.window.last().map_or("", String::as_str)),
        a.service.requests,
        a.service.errors,
        escape(&v.snapshot),
        escape(&v.dataset)
    );
    html.push_str("<table><tr><th>metric</th><th>PSI</th><th>W/sd or JS</th><th>status</th></tr>");
    for f in &a.features {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            f.feature,
            f.psi,
            f.wasserstein_over_std,
            status(f.status)
        );
    }
    let _ = write!(
        html,
        "<tr><td>predictions</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr></table>",
        a.prediction.psi,
        a.prediction.js_distance,
        status(a.prediction.status)
    );
    html.push_str(r#"<div class="charts">"#);
    for f in &a.features {
        let title = format!("{}: training baseline against the window (share per bin)", f.feature);
        html.push_str(&svg::bars(
            &title,
            &bin_labels(&f.baseline, 0),
            &[("baseline", BASELINE, shares(&f.baseline)), ("window", WINDOW, shares(&f.window))],
            "",
        ));
    }
    let labels: Vec<String> = a.prediction.training_share.keys().cloned().collect();
    let predicted_total = a.prediction.predicted.values().sum::<u64>().max(1) as f64;
    html.push_str(&svg::bars(
        "predicted classes against the training labels (share)",
        &labels,
        &[
            ("training", BASELINE, labels.iter().map(|l| a.prediction.training_share[l]).collect()),
            (
                "predicted",
                WINDOW,
                labels.iter().map(|l| a.prediction.predicted.get(l).copied().unwrap_or(0) as f64 / predicted_total).collect(),
            ),
        ],
        "",
    ));
    html.push_str(&svg::bars(
        "confidence: a classifier's top class, a detector's every served box (share per bin)",
        &bin_labels(&a.confidence.histogram, 2),
        &[("window", WINDOW, shares(&a.confidence.histogram))],
        "",
    ));
    let short_hours: Vec<String> = hours.iter().map(|h| h.get(11..).map(|hh| format!("{hh}h")).unwrap_or_default()).collect();
    html.push_str(&svg::lines(
        "latency per hour (ms)",
        &short_hours,
        &[("p50", BASELINE, latency.0), ("p99", WINDOW, latency.1)],
        "",
    ));
    html.push_str("</div>");
}
