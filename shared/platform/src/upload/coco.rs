//! COCO detection files into the raw bucket's detection layout.
//!
//! Found as Roboflow exports them (`<split>/_annotations.coco.json`, images beside it) or as COCO
//! ships them (`annotations/instances_<split>.json`, images in `<split>/` or `images/<split>/`;
//! `train2017` is train). The file is read as a stream into compact records (the image table,
//! and per annotation its image, category and box: about 60 bytes), never as a JSON tree, so a
//! file of a million boxes reads in tens of megabytes.
//!
//! Classes are the categories in id order. A category no annotation uses that is another's
//! supercategory (Roboflow's placeholder at id 0) is not a class. Every annotation becomes a
//! YOLO line, faults included, so that ingest refuses each with its code and quarantines it: a
//! box of zero size or outside the image keeps its numbers, an unknown category gets an index
//! past the names (`unknown_class`), a bbox that is not four numbers becomes a line naming the
//! annotation (`malformed_annotation`), and the annotations of an image id the file does not
//! list go, as such lines, to a label file with no image (`label_without_image`). Crowd regions (`iscrowd: 1`)
//! are kept as boxes of their class.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cvops_core::annotation::{BoundingBox, PixelBox};
use cvops_core::key::Split;
use serde::{Deserialize, Deserializer};

use super::layout::{Converted, ConvertedImage};

#[derive(Deserialize)]
struct CocoFile {
    #[serde(default)]
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
    #[serde(default)]
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    #[serde(default)]
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
    #[serde(deserialize_with = "lenient_bbox", default = "missing_bbox")]
    bbox: Result<[f64; 4], String>,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
    #[serde(default)]
    supercategory: Option<String>,
}

/// A bbox as four numbers, or what it was instead (kept for the refusal's text).
fn lenient_bbox<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Result<[f64; 4], String>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let numbers: Option<Vec<f64>> = value.as_array().map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect());
    Ok(match numbers {
        Some(n) if n.len() == 4 && value.as_array().is_some_and(|a| a.len() == 4) && n.iter().all(|v| v.is_finite()) => {
            Ok([n[0], n[1], n[2], n[3]])
        }
        _ => Err(value.to_string().chars().filter(|c| !c.is_whitespace()).take(60).collect()),
    })
}

fn missing_bbox() -> Result<[f64; 4], String> {
    Err("none".into())
}

/// The COCO files under `dir`, each with the split folder its images go to.
pub fn coco_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let roboflow = entry.path().join("_annotations.coco.json");
        if Split::parse(&name).is_some() && roboflow.is_file() {
            found.push((name, roboflow));
        }
    }
    for entry in std::fs::read_dir(dir.join("annotations")).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let folder = name.strip_prefix("instances_").and_then(|n| n.strip_suffix(".json")).and_then(split_folder);
        if let Some(folder) = folder {
            found.push((folder, entry.path()));
        }
    }
    found.sort();
    found
}

/// The split folder of `instances_<name>.json`: `train2017` is train, as COCO names it with the
/// year.
fn split_folder(name: &str) -> Option<String> {
    let folder = name.trim_end_matches(|c: char| c.is_ascii_digit());
    Split::parse(folder).map(|_| folder.to_owned())
}

pub fn convert(dir: &Path) -> anyhow::Result<Converted> {
    let files = coco_files(dir);
    if files.is_empty() {
        bail!(
            "no COCO files in {}: expected <split>/_annotations.coco.json (Roboflow) or annotations/instances_<split>.json",
            dir.display()
        );
    }
    let mut converted = Converted::default();
    let mut names: Option<Vec<(u64, String)>> = None;
    for (folder_name, path) in files {
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let coco: CocoFile = serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("{} is not a COCO file", path.display()))?;
        let used: BTreeSet<u64> = coco.annotations.iter().map(|a| a.category_id).collect();
        // A placeholder: unused, and the supercategory of another category (not of itself, as
        // CVAT and Label Studio write every category).
        let placeholder = |c: &CocoCategory| {
            !used.contains(&c.id)
                && coco.categories.iter().any(|other| other.id != c.id && other.supercategory.as_deref() == Some(c.name.as_str()))
        };
        let mut classes: Vec<(u64, String)> =
            coco.categories.iter().filter(|c| !placeholder(c)).map(|c| (c.id, c.name.clone())).collect();
        classes.sort();
        match &names {
            None => names = Some(classes.clone()),
            Some(first) if *first != classes => {
                bail!("{} has other categories than the first COCO file; one dataset has one set of classes", path.display())
            }
            Some(_) => {}
        }
        let index: BTreeMap<u64, u32> = classes.iter().enumerate().map(|(i, (id, _))| (*id, i as u32)).collect();
        let unknown: BTreeMap<u64, u32> = used
            .iter()
            .filter(|id| !index.contains_key(id))
            .enumerate()
            .map(|(k, id)| (*id, (classes.len() + k) as u32))
            .collect();

        let sizes: BTreeMap<u64, (u32, u32)> = coco.images.iter().map(|i| (i.id, (i.width, i.height))).collect();
        let mut lines: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (n, a) in coco.annotations.iter().enumerate() {
            let class = index.get(&a.category_id).or_else(|| unknown.get(&a.category_id)).copied().unwrap_or(u32::MAX);
            let id = a.id.unwrap_or(n as u64);
            let line = match (a.bbox.as_ref(), sizes.get(&a.image_id)) {
                (Ok(&[x, y, w, h]), Some(&(width, height))) => {
                    BoundingBox::from_pixels(class, PixelBox { x, y, width: w, height: h }, width, height).yolo_line()
                }
                // Without the image's size the box cannot be placed: kept as it was, refused.
                (Ok([x, y, w, h]), None) => {
                    format!("coco-annotation-{id} image_id={}:not_in_images bbox=[{x},{y},{w},{h}]", a.image_id)
                }
                (Err(what), _) => format!("coco-annotation-{id} bbox={what}"),
            };
            lines.entry(a.image_id).or_default().push(line);
        }
        let folder = path.parent().unwrap_or(dir);
        let mut names_seen = BTreeSet::new();
        for image in coco.images {
            let file = image.file_name.replace('\\', "/");
            let name = file.rsplit('/').next().unwrap_or(&file).to_owned();
            if !names_seen.insert(name.clone()) {
                bail!(
                    "{} lists two images named {name} in {folder_name}; a split folder holds one file of a name (rename one)",
                    path.display()
                );
            }
            let candidates = [
                folder.join(&file),
                dir.join(&folder_name).join(&file),
                dir.join(path_stem_folder(&path)).join(&file),
                dir.join("images").join(&folder_name).join(&file),
                dir.join("images").join(path_stem_folder(&path)).join(&file),
                dir.join("images").join(&file),
                dir.join(&file),
            ];
            let on_disk = candidates.into_iter().find(|p| p.is_file());
            let lines = lines.remove(&image.id);
            converted.images.push(ConvertedImage { folder: folder_name.clone(), file: name, path: on_disk, lines });
        }
        for (image_id, orphan) in lines {
            converted.images.push(ConvertedImage {
                folder: folder_name.clone(),
                file: format!("coco-image-{image_id}.jpg"),
                path: None,
                lines: Some(orphan),
            });
        }
    }
    converted.names = names.unwrap_or_default().into_iter().map(|(_, name)| name).collect();
    Ok(converted)
}

/// `instances_train2017.json` keeps its images in `train2017/`.
fn path_stem_folder(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem.strip_prefix("instances_").unwrap_or(stem).to_owned()
}
