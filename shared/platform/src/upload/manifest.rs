//! Manifests: a CSV (`path,label[,split]`) or JSON Lines file listing the images to upload, for
//! data that is not laid out in folders (a labelling tool's export, a query's result).
//!
//! Paths are relative to the manifest's folder (or absolute). A classified image goes to
//! `datasets/<d>/[<split>/]<label>/<file name>`; without a split, one is assigned from its
//! content hash. A JSON Lines line with `boxes` (YOLO's normalised `class cx cy w h`, as
//! `cvops export --format jsonl` writes them) makes a detection dataset: its images go to
//! `images/<split>/`, its boxes to `labels/<split>/<stem>.txt`, and the class names come from
//! the `data.yaml` beside the manifest. A split or label that does not fit the layout is still
//! uploaded, for ingest to refuse (`bad_key`) and quarantine.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use cvops_core::annotation::BoundingBox;
use cvops_core::key::{file_stem, DatasetName, CLASS_NAMES_FILE};
use cvops_ingest::data_yaml::{canonical_data_yaml, parse_data_yaml};

use super::layout::{Put, Source};
use crate::export::{JsonlLine, MANIFEST_FILE};

/// Whether `path` is a manifest file (by its extension), or a folder with `manifest.jsonl` at
/// its top (what `cvops export --format jsonl` writes).
pub fn is_manifest(path: &Path) -> bool {
    (path.is_file() && path.extension().is_some_and(|e| e == "csv" || e == "jsonl")) || path.join(MANIFEST_FILE).is_file()
}

pub fn plan_manifest(dataset: &DatasetName, manifest: &Path) -> anyhow::Result<Vec<Put>> {
    let inside = manifest.join(MANIFEST_FILE);
    let manifest = if manifest.is_dir() { inside.as_path() } else { manifest };
    let base = manifest.parent().unwrap_or(Path::new("."));
    let lines = if manifest.extension().is_some_and(|e| e == "csv") { read_csv(manifest)? } else { read_jsonl(manifest)? };
    if lines.is_empty() {
        bail!("{} lists no images", manifest.display());
    }
    let detection = lines.iter().any(|l| l.boxes.is_some());
    let mut puts = Vec::new();
    if detection {
        let yaml = base.join(CLASS_NAMES_FILE);
        let bytes = std::fs::read(&yaml).with_context(|| {
            format!("a manifest with boxes needs the class names in {} (`names: [a, b, ...]`)", yaml.display())
        })?;
        let source = match parse_data_yaml(&bytes) {
            Ok(data) => Source::Bytes(canonical_data_yaml(&data.names).into_bytes()),
            Err(_) => Source::File(yaml),
        };
        puts.push(Put { key: format!("datasets/{dataset}/{CLASS_NAMES_FILE}"), source });
    }
    for (number, line) in lines.into_iter().enumerate() {
        let path = resolve(base, &line.path);
        if !path.is_file() {
            bail!("line {} of {}: no file {}", number + 1, manifest.display(), path.display());
        }
        let file =
            path.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow!("{} has no UTF-8 file name", path.display()))?;
        match (detection, &line.boxes) {
            (true, boxes) => {
                let split = line.split.as_deref().ok_or_else(|| {
                    anyhow!(
                        "line {} of {}: an image with boxes needs a split (train, val or test)",
                        number + 1,
                        manifest.display()
                    )
                })?;
                let stem = file_stem(file);
                puts.push(Put { key: format!("datasets/{dataset}/images/{split}/{file}"), source: Source::File(path.clone()) });
                let text: String = boxes
                    .iter()
                    .flatten()
                    .map(|b| BoundingBox { class: b.class, cx: b.cx, cy: b.cy, w: b.w, h: b.h }.yolo_line_exact() + "\n")
                    .collect();
                puts.push(Put {
                    key: format!("datasets/{dataset}/labels/{split}/{stem}.txt"),
                    source: Source::Bytes(text.into_bytes()),
                });
            }
            (false, _) => {
                let label =
                    line.label.as_deref().ok_or_else(|| anyhow!("line {} of {}: no label", number + 1, manifest.display()))?;
                let key = match &line.split {
                    Some(split) => format!("datasets/{dataset}/{split}/{label}/{file}"),
                    None => format!("datasets/{dataset}/{label}/{file}"),
                };
                puts.push(Put { key, source: Source::File(path) });
            }
        }
    }
    Ok(puts)
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// `path,label[,split]` rows; a first row that names the columns is skipped.
fn read_csv(manifest: &Path) -> anyhow::Result<Vec<JsonlLine>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let mut lines = Vec::new();
    for (number, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} is not CSV", manifest.display()))?;
        if number == 0 && record.get(0).is_some_and(|c| c.eq_ignore_ascii_case("path")) {
            continue;
        }
        let (Some(path), Some(label)) = (record.get(0).filter(|p| !p.is_empty()), record.get(1).filter(|l| !l.is_empty())) else {
            bail!("line {} of {}: expected path,label[,split]", number + 1, manifest.display());
        };
        let split = record.get(2).filter(|s| !s.is_empty()).map(str::to_owned);
        lines.push(JsonlLine { path: path.to_owned(), label: Some(label.to_owned()), split, boxes: None });
    }
    Ok(lines)
}

fn read_jsonl(manifest: &Path) -> anyhow::Result<Vec<JsonlLine>> {
    let file = std::fs::File::open(manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let mut lines = Vec::new();
    for (number, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.with_context(|| format!("{} is not UTF-8 text", manifest.display()))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: JsonlLine = serde_json::from_str(&text).with_context(|| {
            format!(
                "line {} of {}: expected {{\"path\", \"label\"[, \"split\"]}} or {{\"path\", \"split\", \"boxes\"}}",
                number + 1,
                manifest.display()
            )
        })?;
        lines.push(line);
    }
    Ok(lines)
}
