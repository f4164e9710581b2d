//! `cvops predict FILE|DIR... --model M [--version V] [--json]`: predictions without writing a
//! client. Each image goes through the endpoint's own prediction (`cvops_infer::predict`: the
//! same loading, sha256 check, preprocessing and answer), in this process, so the labels and
//! boxes are exactly what `POST /v1/models/{name}/predict` would answer.
//!
//! `--json` prints one JSON object a line per file: `path` and the endpoint's answer, or `path`
//! and `error` (`{"code", "message"}`) for a file that is not an image it can read. Exit 0 when
//! every file got a prediction, 1 when any did not, 2 on misuse (no such model or version).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cvops_infer::predict::{predict, PredictQuery};
use cvops_infer::{ApiError, Models, ModelsError};
use cvops_platform::{LocalPlatform, MODELS_BUCKET};
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image files, or folders searched for images (recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The model; its production version answers unless --version pins one.
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub version: Option<u32>,
    /// A classifier's answers per image.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// A detector's score threshold [default: the version's, 0.25 unless its card says].
    #[arg(long)]
    pub score_threshold: Option<f32>,
    /// A detector's NMS IoU threshold [default: the version's, 0.7].
    #[arg(long)]
    pub iou_threshold: Option<f32>,
    /// A detector's most boxes per image [default: the version's, 300].
    #[arg(long)]
    pub max_detections: Option<u32>,
    /// One JSON object per line per file.
    #[arg(long)]
    pub json: bool,
}

/// What an image file is named like.
const IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "pnm"];

/// The files of `paths`: files as given, folders searched, in name order.
fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
                let entry = entry?;
                let extension = entry.path().extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
                if entry.file_type().is_file() && extension.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str())) {
                    out.push(entry.into_path());
                }
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn query(args: &Args) -> Result<PredictQuery, ApiError> {
    let mut pairs = HashMap::new();
    let mut set = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            pairs.insert(name.to_owned(), value);
        }
    };
    set("version", args.version.map(|v| v.to_string()));
    set("top_k", args.top_k.map(|k| k.to_string()));
    set("score_threshold", args.score_threshold.map(|v| v.to_string()));
    set("iou_threshold", args.iou_threshold.map(|v| v.to_string()));
    set("max_detections", args.max_detections.map(|v| v.to_string()));
    PredictQuery::parse(&pairs)
}

/// One line of text for an answer: the top labels, or the boxes.
fn summary(answer: &Value) -> String {
    let score = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
    if let Some(predictions) = answer["predictions"].as_array() {
        let top: Vec<String> =
            predictions.iter().map(|p| format!("{} {:.3}", p["label"].as_str().unwrap_or("?"), score(p))).collect();
        return top.join(", ");
    }
    let detections = answer["detections"].as_array().map(Vec::as_slice).unwrap_or_default();
    let boxes: Vec<String> = detections
        .iter()
        .map(|d| {
            let b = &d["box"];
            let n = |k: &str| b[k].as_f64().unwrap_or(0.0);
            let label = d["label"].as_str().unwrap_or("?");
            format!("{label} {:.3} at [{:.0}, {:.0}, {:.0}x{:.0}]", score(d), n("x"), n("y"), n("width"), n("height"))
        })
        .collect();
    format!("{} boxes{}{}", detections.len(), if boxes.is_empty() { "" } else { ": " }, boxes.join(", "))
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let query = match query(&args) {
        Ok(query) => query,
        Err(e) => {
            eprintln!("{}", e.message);
            return Ok(ExitCode::from(2));
        }
    };
    let platform = LocalPlatform::open(data_dir)?;
    let models = Models::new(&platform.ports, MODELS_BUCKET.into(), Duration::from_secs(3600));
    let served = match models.resolve(&args.model, query.version).await {
        Ok(served) => served,
        Err(ModelsError::UnknownModel(model)) => {
            eprintln!("there is no model {model}; `cvops models` lists them");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("{e}; `cvops models {}` lists its versions", args.model);
            return Ok(ExitCode::from(2));
        }
    };
    let limits = platform.infer_config()?.limits();
    let paths = files(&args.paths)?;
    if paths.is_empty() {
        eprintln!("no image files under {}", args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
        return Ok(ExitCode::from(2));
    }
    let mut failed = 0usize;
    for path in &paths {
        let shown = path.display().to_string();
        // Refused from its size, before a byte is read, as the endpoint refuses a body.
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let read = if size > limits.max_bytes { Ok(None) } else { std::fs::read(path).map(Some) };
        let result = match read {
            Ok(None) => Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("{size} bytes, over the endpoint's {} byte limit", limits.max_bytes),
            )),
            Ok(Some(bytes)) => {
                let (served, query) = (Arc::clone(&served), query.clone());
                tokio::task::spawn_blocking(move || predict(&served, &bytes, &query, &limits, false).map(|p| p.answer)).await?
            }
            Err(e) => Err(ApiError::malformed(format!("cannot read the file: {e}"))),
        };
        match (result, args.json) {
            (Ok(answer), true) => {
                let mut line = json!({"path": shown});
                line.as_object_mut().expect("an object").extend(answer.as_object().cloned().unwrap_or_default());
                println!("{line}");
            }
            (Ok(answer), false) => println!("{shown}: {}", summary(&answer)),
            (Err(e), json) => {
                failed += 1;
                if json {
                    println!("{}", json!({"path": shown, "error": {"code": e.code, "message": e.public_message()}}));
                } else {
                    println!("{shown}: {}: {}", e.code, e.public_message());
                }
            }
        }
    }
    if !args.json {
        let (model, version) = (&served.record.model, served.record.version);
        eprintln!("{} files, {} predicted by {model} v{version}, {failed} failed", paths.len(), paths.len() - failed);
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
