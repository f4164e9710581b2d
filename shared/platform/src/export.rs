//! `cvops export`: a snapshot written out as files a team trains from elsewhere.
//!
//! - `imagefolder` (classification): the images at their dataset paths, `<split>/<label>/<file>`.
//! - `yolo` (detection): `data.yaml`, `images/<split>/`, `labels/<split>/<stem>.txt`.
//! - `coco` (detection): `annotations/instances_<split>.json` (pixel boxes, category ids 1 to
//!   n in class order) beside the images in `images/<split>/`.
//! - `jsonl` (both): `manifest.jsonl`, a line per image (`path`, and `label` or `boxes`), beside
//!   the images (and, for boxes, `data.yaml`), the manifest `cvops upload` reads.
//!
//! Every image keeps the path it has in the dataset (a val carved from train stays in train's
//! folder and is carved again the same way), and boxes are written with every digit they
//! need, so uploading an export into a dataset of the same name gives the same snapshot id.
//! Each image is checked against the snapshot's sha256 as it is copied; the export never holds
//! more than one manifest part and, for COCO, its image and annotation tables.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use cvops_core::annotation::LabeledBox;
use cvops_core::catalog::{dataset_names, dataset_pk};
use cvops_core::key::{file_stem, DATASETS_PREFIX};
use cvops_core::ports::{ObjectStore, Table};
use cvops_core::snapshot::{descriptor_key, snapshot_sk, ManifestLine, Snapshot};
use cvops_core::validate::ValidationLimits;
use cvops_ingest::data_yaml::canonical_data_yaml;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MANIFEST_FILE: &str = "manifest.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Imagefolder,
    Yolo,
    Coco,
    Jsonl,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "imagefolder" => Some(Self::Imagefolder),
            "yolo" => Some(Self::Yolo),
            "coco" => Some(Self::Coco),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imagefolder => "imagefolder",
            Self::Yolo => "yolo",
            Self::Coco => "coco",
            Self::Jsonl => "jsonl",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSummary {
    pub snapshot: String,
    pub dataset: String,
    pub format: &'static str,
    pub out: PathBuf,
    pub images: u64,
    pub boxes: u64,
}

/// One line of a JSON Lines manifest.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JsonlLine {
    /// The image, relative to the manifest's folder.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// train, val (valid, validation) or test; absent: split by content hash (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// A detection image's boxes (an empty list: a background image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boxes: Option<Vec<JsonlBox>>,
}

/// A box of a JSON Lines manifest: YOLO's normalised numbers, and the class name to read by.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JsonlBox {
    pub class: u32,
    #[serde(default)]
    pub label: Option<String>,
    pub cx: f64,
    pub cy: f64,
    pub w: f64,
    pub h: f64,
}

/// The dataset a snapshot id belongs to (ids are per dataset; this asks each dataset once).
pub async fn find_snapshot(table: &dyn Table, id: &str) -> anyhow::Result<String> {
    for dataset in dataset_names(table).await? {
        if table.get(&dataset_pk(&dataset), &snapshot_sk(id)).await?.is_some() {
            return Ok(dataset);
        }
    }
    Err(anyhow!("no snapshot {id:?}; `cvops snapshot --dataset D` makes one and prints its id"))
}

/// Writes snapshot `id` into `out` (which must be absent or empty) as `format`.
pub async fn export(
    table: &dyn Table,
    objects: &dyn ObjectStore,
    raw_bucket: &str,
    store_bucket: &str,
    id: &str,
    format: ExportFormat,
    out: &Path,
) -> anyhow::Result<ExportSummary> {
    let dataset = find_snapshot(table, id).await?;
    let descriptor = objects.get(store_bucket, &descriptor_key(&dataset, id), 64 << 20).await?;
    let snapshot: Snapshot = serde_json::from_slice(&descriptor).context("the snapshot descriptor is malformed")?;
    match (format, snapshot.is_detection()) {
        (ExportFormat::Imagefolder, true) => bail!("snapshot {id} holds boxes; export it as yolo, coco or jsonl"),
        (ExportFormat::Yolo | ExportFormat::Coco, false) => {
            bail!("snapshot {id} holds classes, not boxes; export it as imagefolder or jsonl")
        }
        _ => {}
    }
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!("{} is not empty; export into a new folder", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let prefix = format!("{DATASETS_PREFIX}{dataset}/");
    let mut writer = Writer { out, format, names: &snapshot.labels, manifest: None, coco: BTreeMap::new(), boxes: 0 };
    if format == ExportFormat::Jsonl {
        writer.manifest = Some(std::io::BufWriter::new(std::fs::File::create(out.join(MANIFEST_FILE))?));
    }
    if snapshot.is_detection() && format != ExportFormat::Coco {
        std::fs::write(out.join(cvops_core::key::CLASS_NAMES_FILE), canonical_data_yaml(&snapshot.labels))?;
    }
    let limits = ValidationLimits::default();
    let mut images = 0;
    for part in &snapshot.parts {
        let data = objects.get(store_bucket, part, 64 << 20).await?;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line: ManifestLine =
                serde_json::from_slice(line).with_context(|| format!("manifest part {part} is malformed"))?;
            let relative = line.key.strip_prefix(&prefix).ok_or_else(|| anyhow!("{} is outside {prefix}", line.key))?.to_owned();
            let bytes = objects
                .get(raw_bucket, &line.key, limits.max_bytes)
                .await
                .with_context(|| format!("cannot read {}", line.key))?;
            if hex::encode(Sha256::digest(&bytes)) != line.sha256 {
                bail!("{} changed since snapshot {id} was taken; snapshot the dataset again", line.key);
            }
            writer.image(&relative, &line, &bytes)?;
            images += 1;
        }
    }
    writer.finish()?;
    Ok(ExportSummary {
        snapshot: id.to_owned(),
        dataset,
        format: format.as_str(),
        out: out.to_owned(),
        images,
        boxes: writer.boxes,
    })
}

/// A COCO file being filled: one per split folder.
#[derive(Default, Serialize)]
struct CocoOut {
    images: Vec<serde_json::Value>,
    annotations: Vec<serde_json::Value>,
}

struct Writer<'a> {
    out: &'a Path,
    format: ExportFormat,
    names: &'a [String],
    manifest: Option<std::io::BufWriter<std::fs::File>>,
    coco: BTreeMap<String, CocoOut>,
    boxes: u64,
}

impl Writer<'_> {
    fn image(&mut self, relative: &str, line: &ManifestLine, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.out.join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a folder"))?;
        std::fs::write(&path, bytes)?;
        let boxes = line.boxes.as_deref().unwrap_or_default();
        self.boxes += boxes.len() as u64;
        // Detection paths are images/<folder>/<file>: the folder and the file's stem.
        let mut parts = relative.split('/');
        let (folder, file) = (parts.nth(1).unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
        let stem = file_stem(&file).to_owned();
        match self.format {
            ExportFormat::Imagefolder => {}
            ExportFormat::Yolo => {
                let labels = self.out.join("labels").join(&folder);
                std::fs::create_dir_all(&labels)?;
                let text: String = boxes.iter().map(|b| b.yolo_line_exact() + "\n").collect();
                std::fs::write(labels.join(format!("{stem}.txt")), text)?;
            }
            ExportFormat::Coco => {
                let (width, height) = image::ImageReader::new(std::io::Cursor::new(bytes))
                    .with_guessed_format()?
                    .into_dimensions()
                    .with_context(|| format!("cannot read the size of {relative}"))?;
                let coco = self.coco.entry(folder).or_default();
                let image_id = coco.images.len() + 1;
                coco.images.push(serde_json::json!({"id": image_id, "file_name": file, "width": width, "height": height}));
                for b in boxes {
                    let p = b.in_pixels(width, height);
                    let id = coco.annotations.len() + 1;
                    coco.annotations.push(serde_json::json!({
                        "id": id, "image_id": image_id, "category_id": b.class + 1,
                        "bbox": [p.x, p.y, p.width, p.height], "area": p.width * p.height, "iscrowd": 0
                    }));
                }
            }
            ExportFormat::Jsonl => {
                let jsonl = JsonlLine {
                    path: relative.to_owned(),
                    label: (!line.label.is_empty()).then(|| line.label.clone()),
                    // The split folder the image's path has: images/<folder>/<file> for boxes,
                    // <split>/<label>/<file> for classes (none when split by content hash).
                    split: match &line.boxes {
                        Some(_) => Some(folder.clone()),
                        None => {
                            (relative.split('/').count() == 3).then(|| relative.split('/').next().unwrap_or_default().to_owned())
                        }
                    },
                    boxes: line.boxes.as_ref().map(|boxes| {
                        boxes
                            .iter()
                            .map(|b| JsonlBox {
                                class: b.class,
                                label: Some(LabeledBox::new(b, self.names, 1, 1).label),
                                cx: b.cx,
                                cy: b.cy,
                                w: b.w,
                                h: b.h,
                            })
                            .collect()
                    }),
                };
                let manifest = self.manifest.as_mut().expect("a JSON Lines export has a manifest");
                serde_json::to_writer(&mut *manifest, &jsonl)?;
                manifest.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(manifest) = self.manifest.as_mut() {
            manifest.flush()?;
        }
        if self.format == ExportFormat::Coco {
            std::fs::create_dir_all(self.out.join("annotations"))?;
            let categories: Vec<serde_json::Value> = self
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| serde_json::json!({"id": i + 1, "name": name, "supercategory": "none"}))
                .collect();
            for (folder, coco) in &self.coco {
                let file = serde_json::json!({
                    "info": {"description": "exported by cvops"},
                    "images": coco.images, "annotations": coco.annotations, "categories": categories,
                });
                let path = self.out.join("annotations").join(format!("instances_{folder}.json"));
                std::fs::write(path, serde_json::to_vec(&file)?)?;
            }
        }
        Ok(())
    }
}
