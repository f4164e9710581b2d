//! The registry and the runs: `cvops models`, `cvops runs`, `cvops promote`, `cvops rollback`.

use std::path::Path;
use std::process::ExitCode;

use cvops_core::ports::TableExt;
use cvops_core::registry::{self, Alias, ModelVersion, VersionStatus};
use cvops_core::runs::RUN_SK_PREFIX;
use cvops_core::task::{Metric, Task};
use cvops_dispatch_training::{run_pk, RunRecord};
use serde_json::json;

use cvops_platform::LocalPlatform;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
    /// Only this model.
    pub model: Option<String>,
    /// One JSON object per version and line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsAction {
    /// Import a classifier trained elsewhere (ONNX): verified, evaluated on a dataset's test split
    /// and gated like a model trained here.
    Import(super::import::Args),
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    #[arg(long)]
    pub model: Option<String>,
    /// One JSON object per run and line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    pub model: String,
    pub version: u32,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    pub model: String,
}

/// Shows a model's promotion gate, or sets part of it.
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    pub model: String,
    /// The test accuracy a version needs to be promoted by itself (0 to 1).
    #[arg(long)]
    pub floor: Option<f64>,
    /// Fewer test images than this is no evaluation (`not_evaluated`): it neither promotes nor blocks.
    #[arg(long)]
    pub min_test_images: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

/// production (the alias names it), archived (it did before), candidate (registered, never
/// promoted) or rejected.
pub fn stage(version: &ModelVersion, production: Option<&Alias>) -> &'static str {
    match (version.status, production) {
        (VersionStatus::Rejected, _) => "rejected",
        (_, Some(alias)) if alias.version == version.version => "production",
        (_, Some(alias)) if alias.previous.contains(&version.version) => "archived",
        _ => "candidate",
    }
}

async fn model_names(platform: &LocalPlatform, only: Option<&String>) -> anyhow::Result<Vec<String>> {
    let names = registry::models(platform.table.as_ref()).await?;
    Ok(names.into_iter().filter(|name| only.is_none_or(|only| only == name)).collect())
}

pub async fn models(data_dir: &Path, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    if let Some(ModelsAction::Import(import)) = args.action {
        return super::import::run(data_dir, import).await;
    }
    let platform = LocalPlatform::open(data_dir)?;
    let names = model_names(&platform, args.model.as_ref()).await?;
    if names.is_empty() && !args.json {
        println!("no models yet; train one with: cvops train --dataset NAME --wait");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        println!(
            "{:<16} {:>4}  {:<10} {:>14} {:>6}  {:<20} {:<16} {:<8} registered",
            "model", "ver", "stage", "score", "tested", "run", "snapshot", "trainer"
        );
    }
    for name in names {
        let production = registry::production(platform.table.as_ref(), &name).await?.map(|(alias, _)| alias);
        for version in registry::versions(platform.table.as_ref(), &name).await? {
            let stage = stage(&version, production.as_ref());
            let score = version.score();
            let tested = version.evaluation_score().map(|s| s.images);
            if args.json {
                let line = json!({
                    "model": version.model,
                    "version": version.version,
                    "stage": stage,
                    "status": version.status,
                    "task": version.task,
                    "metric": version.task.metric(),
                    "score": score,
                    // Kept for scripts written before detectors: the score, for a classifier.
                    "accuracy": score.filter(|_| version.task == Task::Classification),
                    "test_images": tested,
                    "per_class": version.evaluation.as_ref().map(|e| &e.per_class),
                    "detection": version.detection,
                    "lineage": version.lineage,
                    "gate": version.gate,
                    "artifact": version.artifact,
                    "input": version.input,
                    "labels": version.labels,
                    "reason_code": version.reason_code,
                    "reason": version.reason,
                    "registered_at": version.registered_at,
                });
                println!("{line}");
            } else {
                let lineage = version.lineage.as_ref();
                println!(
                    "{:<16} {:>4}  {:<10} {:>14} {:>6}  {:<20} {:<16} {:<8} {}",
                    version.model,
                    format!("v{}", version.version),
                    stage,
                    score.map(|s| format_score(version.task.metric(), s)).unwrap_or_else(|| "-".into()),
                    tested.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                    lineage.map(|l| l.run_id.as_str()).unwrap_or("-"),
                    lineage.map(|l| l.snapshot.as_str()).unwrap_or("-"),
                    lineage.map(|l| l.trainer_version.as_str()).unwrap_or("-"),
                    version.registered_at,
                );
                if let (Some(code), Some(reason)) = (&version.reason_code, &version.reason) {
                    println!("{:<22}{code}: {reason}", "");
                } else if let Some(gate) = version.gate.as_ref().filter(|g| !g.passed && stage == "candidate") {
                    println!("{:<22}{}: {}", "", gate.code.as_deref().unwrap_or("gate"), gate.explanation);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A score as people read it: accuracy in percent, mAP as COCO prints it.
pub fn format_value(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Accuracy => format!("{:.2}%", 100.0 * value),
        Metric::Map50 => format!("{value:.3}"),
    }
}

/// A score in the versions table: accuracy in percent, mAP named.
fn format_score(metric: Metric, value: f64) -> String {
    match metric {
        Metric::Accuracy => format_value(metric, value),
        Metric::Map50 => format!("mAP50 {}", format_value(metric, value)),
    }
}

pub async fn runs(data_dir: &Path, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let names = model_names(&platform, args.model.as_ref()).await?;
    let mut runs = Vec::new();
    for name in names {
        for item in platform.table.query_all(&run_pk(&name), RUN_SK_PREFIX).await? {
            runs.push(item.to_record::<RunRecord>()?);
        }
    }
    runs.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    if runs.is_empty() && !args.json {
        println!("no runs yet; start one with: cvops train --dataset NAME");
    } else if !args.json {
        println!("{:<20} {:<16} {:<12} {:<16} {:<10} {:<8} created", "run", "model", "dataset", "snapshot", "status", "reason");
    }
    for run in runs {
        if args.json {
            println!("{}", serde_json::to_string(&run)?);
        } else {
            println!(
                "{:<20} {:<16} {:<12} {:<16} {:<10} {:<8} {}",
                run.run_id,
                run.model,
                run.dataset,
                run.snapshot,
                format!("{:?}", run.status).to_lowercase(),
                run.reason.as_deref().unwrap_or("-"),
                run.created_at
            );
            if let Some(reason) = &run.status_reason {
                println!("{:<21}{reason}", "");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn promote(data_dir: &Path, args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let now = platform.clock.now().to_rfc3339();
    let alias = registry::promote(platform.table.as_ref(), &args.model, args.version, "manual promotion", &now).await?;
    let before = alias.previous.last().map(|v| format!(" (was v{v})")).unwrap_or_default();
    println!("{} production is now v{}{before}", args.model, alias.version);
    Ok(ExitCode::SUCCESS)
}

pub async fn gate(data_dir: &Path, args: GateArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let table = platform.table.as_ref();
    // The default floor is the model's task's: its newest version says which.
    let task = registry::versions(table, &args.model).await?.iter().rev().find(|v| v.lineage.is_some()).map(|v| v.task);
    if task.is_none() && args.min_test_images.is_some() && args.floor.is_none() {
        eprintln!(
            "{} has no registered version, so its task (and the default floor, accuracy or mAP@0.5) is not known yet; give --floor too",
            args.model
        );
        return Ok(ExitCode::from(2));
    }
    let task = task.unwrap_or_default();
    let default = LocalPlatform::register_config(&platform.settings)?.default_gate(task);
    let mut policy = registry::gate_policy(table, &args.model, default).await?;
    if let Some(floor) = args.floor {
        if !(0.0..=1.0).contains(&floor) {
            eprintln!("--floor {floor} is not a score; give a number between 0 and 1, such as 0.9");
            return Ok(ExitCode::from(2));
        }
        policy.floor = floor;
    }
    if let Some(min) = args.min_test_images {
        policy.min_test_images = min;
    }
    if args.floor.is_some() || args.min_test_images.is_some() {
        registry::set_gate_policy(table, &args.model, &policy).await?;
    }
    if args.json {
        let line = json!({"model": args.model, "metric": task.metric(), "floor": policy.floor, "min_test_images": policy.min_test_images});
        println!("{line}");
    } else {
        println!(
            "{}: promoted by itself at test {} >= {:.4} on at least {} test images, over a production version of the same task, labels and dataset",
            args.model,
            task.metric(),
            policy.floor,
            policy.min_test_images
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(data_dir: &Path, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let platform = LocalPlatform::open(data_dir)?;
    let now = platform.clock.now().to_rfc3339();
    let alias = registry::rollback(platform.table.as_ref(), &args.model, &now).await?;
    println!("{} production is back at v{} ({})", args.model, alias.version, alias.reason);
    Ok(ExitCode::SUCCESS)
}
