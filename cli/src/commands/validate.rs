//! `cvops validate [--json] FILE...`: the contract in DESIGN.md, on the validator ingest uses.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cvops_core::validate::{validate, ValidationLimits, ValidationReport};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object per line per file.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// The validation limits, from flags or the environment variables the functions read.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    #[arg(long, env = "CVOPS_MAX_BYTES", default_value_t = ValidationLimits::default().max_bytes)]
    pub max_bytes: u64,
    #[arg(long, env = "CVOPS_MAX_PIXELS", default_value_t = ValidationLimits::default().max_pixels)]
    pub max_pixels: u64,
    #[arg(long, env = "CVOPS_MAX_SIDE", default_value_t = ValidationLimits::default().max_side)]
    pub max_side: u32,
    #[arg(long, env = "CVOPS_MIN_SIDE", default_value_t = ValidationLimits::default().min_side)]
    pub min_side: u32,
    /// The decode budget: the most bytes an image's decoded pixels may take (width x height x
    /// channels x bytes per sample, from the header, before decoding).
    #[arg(long, env = "CVOPS_MAX_DECODED_BYTES", default_value_t = ValidationLimits::default().max_decoded_bytes)]
    pub max_decoded_bytes: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> ValidationLimits {
        ValidationLimits {
            max_bytes: self.max_bytes,
            max_pixels: self.max_pixels,
            max_side: self.max_side,
            min_side: self.min_side,
            max_decoded_bytes: self.max_decoded_bytes,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let limits = args.limits.limits();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let (mut any_invalid, mut unreadable) = (false, false);
    for path in &args.files {
        let report = match check_file(path, &limits) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("cvops validate: cannot read {}: {e}", path.display());
                unreadable = true;
                continue;
            }
        };
        any_invalid |= !report.is_valid();
        if args.json {
            writeln!(out, "{}", contract_json(path, &report))?;
        } else {
            writeln!(out, "{}", human_line(path, &report))?;
        }
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else if any_invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads at most the byte limit; a larger file is reported `too_large` with its hash streamed.
pub fn check_file(path: &Path, limits: &ValidationLimits) -> io::Result<ValidationReport> {
    let mut file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut data = Vec::new();
    (&mut file).take(limits.max_bytes + 1).read_to_end(&mut data)?;
    if data.len() as u64 <= limits.max_bytes {
        return Ok(validate(&data, limits));
    }
    let mut hasher = Sha256::new();
    hasher.update(&data);
    drop(data);
    let copied = io::copy(&mut file, &mut hasher)?;
    let size = limits.max_bytes + 1 + copied;
    let mut report = ValidationReport::facts_unknown(size, hex::encode(hasher.finalize()));
    report.rejection = Some(ValidationReport::over_byte_limit(size, limits));
    Ok(report)
}

/// The stable JSON line: `path`, `valid`, `reason`, `message`, `format`, `width`, `height`,
/// `sha256`, and more facts after them.
pub fn contract_json(path: &Path, report: &ValidationReport) -> serde_json::Value {
    let stats = report.stats;
    json!({
        "path": path.display().to_string(),
        "valid": report.is_valid(),
        "reason": report.rejection.as_ref().map(|r| r.reason.as_str()),
        "message": report.rejection.as_ref().map(|r| r.message.as_str()),
        "format": report.format.map(|f| f.as_str()),
        "width": report.width,
        "height": report.height,
        "sha256": report.sha256,
        "bytes": report.bytes,
        "color_type": report.color_type,
        "bit_depth": report.bit_depth,
        "brightness": stats.map(|s| s.brightness),
        "contrast": stats.map(|s| s.contrast),
        "sharpness": stats.map(|s| s.sharpness),
        "phash": stats.map(|s| format!("{:016x}", s.phash)),
    })
}

fn human_line(path: &Path, report: &ValidationReport) -> String {
    match &report.rejection {
        None => format!(
            "ok        {}  {} {}x{} {}",
            path.display(),
            report.format.map(|f| f.as_str()).unwrap_or("?"),
            report.width.unwrap_or(0),
            report.height.unwrap_or(0),
            report.color_type.as_deref().unwrap_or("")
        ),
        Some(rejection) => format!("REJECTED  {}  {}: {}", path.display(), rejection.reason, rejection.message),
    }
}
