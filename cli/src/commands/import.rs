//! `cvops models import NAME model.onnx --dataset D --labels FILE --input CxHxW [--task T]`: a
//! classifier (PyTorch, timm, Ultralytics' classify export...) or a detector (Ultralytics'
//! YOLOv8/YOLO11 export, or any graph giving boxes, scores and labels) trained elsewhere into the
//! registry, where it is verified, evaluated on the dataset's test split and gated like a model
//! trained here.
//!
//! A detector's defaults are Ultralytics': letterboxed, scaled to 0..1 with no mean or std.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use cvops_core::key::DatasetName;
use cvops_core::metrics::detection::DetectionEvaluation;
use cvops_core::preprocess::{InputSpec, ResizeMode};
use cvops_core::task::{OutputLayout, Task};
use cvops_platform::import::{import_model, ImportRequest};
use cvops_platform::LocalPlatform;
use cvops_register_model::Outcome;

use super::train::print_version;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model's name in the registry (a-z, 0-9, '-', '_').
    pub name: String,
    /// The ONNX file.
    pub file: PathBuf,
    /// The dataset whose test split judges it; its classes must be the labels'.
    #[arg(long)]
    pub dataset: String,
    /// A text file of class names, one a line, in the model's output order.
    #[arg(long)]
    pub labels: PathBuf,
    /// The input as channels x height x width, such as 3x224x224.
    #[arg(long, value_parser = parse_input)]
    pub input: (u8, u32, u32),
    /// Per-channel mean of inputs scaled to 0..1 [default: a classifier's ImageNet's for 3
    /// channels, else 0].
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation [default: a classifier's ImageNet's for 3 channels, else 1].
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// How images are fitted to the input: squash, letterbox or shorter-side-crop [default:
    /// squash for a classifier, letterbox for a detector].
    #[arg(long, value_parser = parse_resize)]
    pub resize: Option<ResizeMode>,
    /// classification or detection.
    #[arg(long, default_value = "classification", value_parser = parse_task)]
    pub task: Task,
    /// A detector's outputs: yolo (one [1, 4 + classes, N] output) or boxes_scores_labels
    /// [default: found from the graph's outputs].
    #[arg(long, value_parser = parse_layout)]
    pub output_layout: Option<OutputLayout>,
    #[arg(long)]
    pub json: bool,
}

fn parse_input(s: &str) -> Result<(u8, u32, u32), String> {
    let parts: Vec<&str> = s.split(['x', 'X', ',']).collect();
    match parts.as_slice() {
        [c, h, w] => Ok((
            c.parse().map_err(|_| format!("{c:?} is not a channel count"))?,
            h.parse().map_err(|_| format!("{h:?} is not a height"))?,
            w.parse().map_err(|_| format!("{w:?} is not a width"))?,
        )),
        _ => Err(format!("{s:?} is not CxHxW, such as 3x224x224")),
    }
}

fn parse_task(s: &str) -> Result<Task, String> {
    Task::parse(s).ok_or_else(|| format!("{s:?} is not a task; use classification or detection"))
}

fn parse_layout(s: &str) -> Result<OutputLayout, String> {
    match s {
        "yolo" => Ok(OutputLayout::Yolo),
        "boxes_scores_labels" | "boxes-scores-labels" => Ok(OutputLayout::BoxesScoresLabels),
        _ => Err(format!("{s:?} is not a detector's output layout; use yolo or boxes_scores_labels")),
    }
}

fn parse_resize(s: &str) -> Result<ResizeMode, String> {
    match s {
        "squash" => Ok(ResizeMode::Squash),
        "letterbox" => Ok(ResizeMode::Letterbox),
        "shorter-side-crop" | "shorter_side_crop" => Ok(ResizeMode::ShorterSideCrop),
        _ => Err(format!("{s:?} is not a resize mode; use squash, letterbox or shorter-side-crop")),
    }
}

/// ImageNet's normalisation, which torchvision and timm classifiers expect.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    if args.task == Task::Classification && args.output_layout.is_some() {
        bail!("--output-layout is a detector's; a classifier's output is one score per label");
    }
    DatasetName::parse(&args.name).map_err(|e| anyhow!("model name: {e}"))?;
    DatasetName::parse(&args.dataset).map_err(|e| anyhow!(e))?;
    let text = std::fs::read_to_string(&args.labels).with_context(|| format!("cannot read {}", args.labels.display()))?;
    let labels: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if labels.is_empty() {
        bail!("{} names no classes; write one class name a line, in the model's output order", args.labels.display());
    }
    let (channels, height, width) = args.input;
    let (default_mean, default_std) = if channels == 3 && args.task == Task::Classification {
        (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
    } else {
        (vec![0.0; channels as usize], vec![1.0; channels as usize])
    };
    let input = InputSpec {
        name: String::new(),
        width,
        height,
        channels,
        mean: args.mean.unwrap_or(default_mean),
        std: args.std.unwrap_or(default_std),
        resize: args.resize.unwrap_or(match args.task {
            Task::Classification => ResizeMode::Squash,
            Task::Detection => ResizeMode::Letterbox,
        }),
    };
    let platform = LocalPlatform::open(data_dir)?;
    super::catalog::require_dataset(platform.table.as_ref(), &args.dataset).await?;
    let request = ImportRequest {
        model: args.name.clone(),
        dataset: args.dataset.clone(),
        labels,
        input,
        task: args.task,
        output_layout: args.output_layout,
    };
    let outcome = import_model(&platform, &request, &args.file).await?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    }
    Ok(match outcome {
        Outcome::Registered { version, .. } => {
            if !args.json {
                print_version(&version);
                if let Some(detection) = &version.detection {
                    print_detection(detection);
                }
            }
            ExitCode::SUCCESS
        }
        Outcome::AlreadyRegistered { model, version } => {
            if !args.json {
                println!("{model} v{version}: this model was imported before, with the same labels, input and snapshot");
            }
            ExitCode::SUCCESS
        }
        Outcome::Rejected { version } => {
            if !args.json {
                eprintln!(
                    "{} v{} rejected: {}: {}",
                    version.model,
                    version.version,
                    version.reason_code.as_deref().unwrap_or("?"),
                    version.reason.as_deref().unwrap_or("")
                );
            }
            ExitCode::FAILURE
        }
        Outcome::Ignored { why, .. } => bail!("register-model ignored the import: {why}"),
    })
}

/// A detector's evaluation as COCO prints it: the three means, AP per class, and what the served
/// threshold keeps.
fn print_detection(e: &DetectionEvaluation) {
    println!("mAP@0.5:0.95 {:.3}  mAP@0.5 {:.3}  mAP@0.75 {:.3}  on {} test images", e.map, e.map50, e.map75, e.images);
    if let Some(served) = &e.served {
        println!(
            "at the served score threshold {:.2}: precision {:.3}, recall {:.3} (IoU 0.5)",
            served.score_threshold, served.precision, served.recall
        );
    }
    let width = e.labels.iter().map(String::len).max().unwrap_or(5).max(5);
    println!("{:>width$} {:>8} {:>13} {:>6}", "class", "AP@0.5", "AP@0.5:0.95", "boxes");
    for (class, ap) in &e.per_class {
        let name = e.labels.get(*class as usize).map_or_else(|| class.to_string(), String::clone);
        println!("{name:>width$} {:>8.3} {:>13.3} {:>6}", ap.ap50, ap.ap, ap.support);
    }
}
