//! The layouts a dataset folder comes in, and the plan of raw-bucket keys each becomes.
//!
//! - `imagefolder`: `<split>/<label>/<file>` or `<label>/<file>`, put as it is.
//! - `yolo`: a `data.yaml` (or any `*.yaml` with `names`) beside `images/<split>/` and
//!   `labels/<split>/` (Ultralytics), or beside `<split>/images/` and `<split>/labels/`
//!   (Roboflow's export). Splits are found by their folder names (train, val, valid,
//!   validation, test), not by the paths in the YAML: Roboflow's point outside the folder.
//!   Everything lands in the raw bucket's detection layout (`cvops_core::key::RawKey`), the
//!   class names first, then each image followed by its label file, then label files with no
//!   image (kept, and counted as such).
//! - `coco` ([`super::coco`]) and `voc` ([`super::voc`]): converted into the same detection
//!   layout, each annotation a YOLO line, so a dataset is one thing in the bucket whatever it
//!   came as, and the same images and boxes give the same snapshot.
//!
//! A file that fits no layout is still uploaded under the key it would have had, so that ingest
//! refuses it with its code and it is quarantined, not lost on the laptop.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use cvops_core::key::{file_stem, DatasetName, Split, CLASS_NAMES_FILE};
use cvops_ingest::data_yaml::{canonical_data_yaml, parse_data_yaml};

use super::files_under;

/// The layouts `cvops upload --format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    Imagefolder,
    Yolo,
    Coco,
    Voc,
    /// A CSV or JSON Lines file listing the images (see [`super::manifest`]).
    Manifest,
}

impl DatasetFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "imagefolder" => Some(Self::Imagefolder),
            "yolo" => Some(Self::Yolo),
            "coco" => Some(Self::Coco),
            "voc" => Some(Self::Voc),
            "manifest" => Some(Self::Manifest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imagefolder => "imagefolder",
            Self::Yolo => "yolo",
            Self::Coco => "coco",
            Self::Voc => "voc",
            Self::Manifest => "manifest",
        }
    }

    /// The layout of `dir`: a manifest when it is a `.csv` or `.jsonl` file or holds
    /// `manifest.jsonl`, YOLO when a YAML file with `names` sits at its top, then COCO when
    /// it holds COCO files, VOC when it has `Annotations/` and `JPEGImages/`, else imagefolder.
    pub fn detect(dir: &Path) -> Self {
        if super::manifest::is_manifest(dir) {
            Self::Manifest
        } else if yaml_files(dir).iter().any(|path| std::fs::read(path).is_ok_and(|bytes| parse_data_yaml(&bytes).is_ok())) {
            Self::Yolo
        } else if !super::coco::coco_files(dir).is_empty() {
            Self::Coco
        } else if super::voc::is_voc(dir) {
            Self::Voc
        } else {
            Self::Imagefolder
        }
    }
}

/// What one put carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// One object to put: its key in the raw bucket and where its bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub key: String,
    pub source: Source,
}

/// The puts that upload `dir` into `dataset` in `format`, in order.
pub fn plan(dataset: &DatasetName, dir: &Path, format: DatasetFormat) -> anyhow::Result<Vec<Put>> {
    match format {
        DatasetFormat::Imagefolder => plan_imagefolder(dataset, dir),
        DatasetFormat::Yolo => plan_yolo(dataset, dir),
        DatasetFormat::Coco => plan_converted(dataset, super::coco::convert(dir)?),
        DatasetFormat::Voc => plan_converted(dataset, super::voc::convert(dir)?),
        DatasetFormat::Manifest => super::manifest::plan_manifest(dataset, dir),
    }
}

/// A detection dataset read from another format: its class names and, per image, its split
/// folder, file name, where it is on disk (none when missing: its label file is then one without an image)
/// and its YOLO label lines (none: no label file, a background image).
#[derive(Debug, Default)]
pub struct Converted {
    pub names: Vec<String>,
    pub images: Vec<ConvertedImage>,
}

#[derive(Debug)]
pub struct ConvertedImage {
    /// The split folder, as the source names it (`valid` stays `valid`).
    pub folder: String,
    pub file: String,
    pub path: Option<PathBuf>,
    pub lines: Option<Vec<String>>,
}

fn plan_converted(dataset: &DatasetName, converted: Converted) -> anyhow::Result<Vec<Put>> {
    if converted.names.is_empty() {
        bail!("no classes found: the annotations name no category; check the files, or pass --format");
    }
    let names = canonical_data_yaml(&converted.names).into_bytes();
    let mut puts = vec![Put { key: format!("datasets/{dataset}/{CLASS_NAMES_FILE}"), source: Source::Bytes(names) }];
    let mut seen = BTreeSet::new();
    for image in converted.images {
        let folder = image.folder;
        let file = image.file.replace('/', "_");
        if !seen.insert((folder.clone(), file.clone())) {
            continue;
        }
        if let Some(path) = image.path {
            puts.push(Put { key: format!("datasets/{dataset}/images/{folder}/{file}"), source: Source::File(path) });
        }
        if let Some(lines) = image.lines {
            let stem = file_stem(&file);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            puts.push(Put {
                key: format!("datasets/{dataset}/labels/{folder}/{stem}.txt"),
                source: Source::Bytes(text.into_bytes()),
            });
        }
    }
    Ok(puts)
}

fn plan_imagefolder(dataset: &DatasetName, dir: &Path) -> anyhow::Result<Vec<Put>> {
    let files = files_under(dir)?;
    if files.is_empty() {
        bail!("no files under {}; lay them out as <split>/<label>/<file> or <label>/<file>", dir.display());
    }
    files
        .into_iter()
        .map(|path| {
            let relative = relative_key(dir, &path)?;
            Ok(Put { key: format!("datasets/{dataset}/{relative}"), source: Source::File(path) })
        })
        .collect()
}

fn plan_yolo(dataset: &DatasetName, dir: &Path) -> anyhow::Result<Vec<Put>> {
    let yamls = yaml_files(dir);
    let Some(yaml) = yamls.first() else {
        bail!("no data.yaml at the top of {}; a YOLO dataset names its classes there (`names: [a, b, ...]`)", dir.display());
    };
    // Prefer the YAML that parses; a broken one is still uploaded, for ingest to quarantine.
    let parsed = yamls.iter().find_map(|path| std::fs::read(path).ok().and_then(|b| parse_data_yaml(&b).ok()));
    let names_put = match parsed {
        Some(data) => Source::Bytes(canonical_data_yaml(&data.names).into_bytes()),
        None => Source::File(yaml.clone()),
    };
    let mut puts = vec![Put { key: format!("datasets/{dataset}/{CLASS_NAMES_FILE}"), source: names_put }];
    let mut splits = 0;
    for (folder, images, labels) in split_folders(dir) {
        splits += 1;
        let mut stems_with_images = BTreeSet::new();
        let image_files = if images.is_dir() { files_under(&images)? } else { Vec::new() };
        for image in image_files {
            let file = flat_name(&images, &image)?;
            let stem = file_stem(&file).to_owned();
            puts.push(Put { key: format!("datasets/{dataset}/images/{folder}/{file}"), source: Source::File(image) });
            let label = labels.join(format!("{stem}.txt"));
            if label.is_file() && stems_with_images.insert(stem.clone()) {
                puts.push(Put { key: format!("datasets/{dataset}/labels/{folder}/{stem}.txt"), source: Source::File(label) });
            }
        }
        let label_files = if labels.is_dir() { files_under(&labels)? } else { Vec::new() };
        for label in label_files {
            let file = flat_name(&labels, &label)?;
            let stem = file.strip_suffix(".txt").unwrap_or(&file);
            if !stems_with_images.contains(stem) {
                puts.push(Put { key: format!("datasets/{dataset}/labels/{folder}/{file}"), source: Source::File(label) });
            }
        }
    }
    if splits == 0 {
        bail!(
            "no split folders in {}: a YOLO dataset has images/<split>/ and labels/<split>/ (or <split>/images/ and <split>/labels/), split being train, val (valid, validation) or test",
            dir.display()
        );
    }
    Ok(puts)
}

/// `(folder name, images dir, labels dir)` of each split found, in either layout.
fn split_folders(dir: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    let mut found = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    for name in &names {
        if Split::parse(name).is_some() && dir.join(name).join("images").is_dir() {
            found.push((name.clone(), dir.join(name).join("images"), dir.join(name).join("labels")));
        }
    }
    let mut folders: Vec<String> = std::fs::read_dir(dir.join("images"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| Split::parse(name).is_some())
        .collect();
    folders.sort();
    for name in folders {
        found.push((name.clone(), dir.join("images").join(&name), dir.join("labels").join(&name)));
    }
    found
}

/// The YAML files at the top of `dir`, `data.yaml` first.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort_by_key(|p| (p.file_name().is_none_or(|n| n != CLASS_NAMES_FILE), p.clone()));
    files
}

/// A file's name under a split folder. Detection keys have no sub-folders, so a nested file
/// keeps its path with `_` for `/`; its label file must follow the same name.
fn flat_name(folder: &Path, path: &Path) -> anyhow::Result<String> {
    Ok(relative_key(folder, path)?.replace('/', "_"))
}

fn relative_key(dir: &Path, path: &Path) -> anyhow::Result<String> {
    let relative = path.strip_prefix(dir).with_context(|| format!("{} is outside {}", path.display(), dir.display()))?;
    let relative = relative.to_str().ok_or_else(|| anyhow!("{} is not valid UTF-8; rename it", relative.display()))?;
    Ok(relative.replace(std::path::MAIN_SEPARATOR, "/"))
}
