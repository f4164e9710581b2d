//! Pascal VOC into the raw bucket's detection layout: `Annotations/<id>.xml` beside
//! `JPEGImages/` and `ImageSets/Main/<split>.txt`.
//!
//! Boxes convert as Ultralytics converts VOC (1-based pixel corners: the centre moves up-left by
//! one pixel, the size is `xmax - xmin`). Classes are the object names sorted, unless a
//! `labels.txt` or `classes.txt` at the top names them in order. Images no split list names go
//! to train (val is then carved from train by the snapshot); images with no annotation file are
//! background images. `difficult` objects are kept. An
//! annotation file that cannot be read becomes one line naming it, so ingest refuses it as
//! `malformed_annotation` and keeps the image.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context};
use cvops_core::annotation::{BoundingBox, PixelBox};
use cvops_core::key::Split;

use super::layout::{Converted, ConvertedImage};

struct VocObject {
    name: String,
    corners: Option<[f64; 4]>,
}

struct VocFile {
    width: u32,
    height: u32,
    objects: Vec<VocObject>,
}

fn parse(text: &str) -> Result<VocFile, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
    let child_text = |node: roxmltree::Node<'_, '_>, name: &str| {
        node.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).map(|t| t.trim().to_owned())
    };
    let root = doc.root_element();
    let size = root.children().find(|c| c.has_tag_name("size"));
    let dim = |name| size.and_then(|s| child_text(s, name)).and_then(|t| t.parse::<f64>().ok()).unwrap_or(0.0) as u32;
    let objects = root
        .children()
        .filter(|c| c.has_tag_name("object"))
        .map(|o| {
            let corners = o.children().find(|c| c.has_tag_name("bndbox")).and_then(|b| {
                let v: Option<Vec<f64>> = ["xmin", "ymin", "xmax", "ymax"]
                    .iter()
                    .map(|n| child_text(b, n).and_then(|t| t.parse::<f64>().ok()).filter(|v| v.is_finite()))
                    .collect();
                v.map(|v| [v[0], v[1], v[2], v[3]])
            });
            VocObject { name: child_text(o, "name").unwrap_or_default(), corners }
        })
        .collect();
    Ok(VocFile { width: dim("width"), height: dim("height"), objects })
}

pub fn is_voc(dir: &Path) -> bool {
    dir.join("Annotations").is_dir() && dir.join("JPEGImages").is_dir()
}

pub fn convert(dir: &Path) -> anyhow::Result<Converted> {
    if !is_voc(dir) {
        bail!("{} is not a Pascal VOC folder: expected Annotations/ and JPEGImages/", dir.display());
    }
    let mut split_of: BTreeMap<String, Split> = BTreeMap::new();
    for (list, split) in [("train", Split::Train), ("val", Split::Val), ("test", Split::Test)] {
        let path = dir.join("ImageSets/Main").join(format!("{list}.txt"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            for id in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                split_of.entry(id.split_whitespace().next().unwrap_or(id).to_owned()).or_insert(split);
            }
        }
    }
    let mut parsed: Vec<(String, Result<VocFile, String>)> = Vec::new();
    let mut xmls: Vec<_> = std::fs::read_dir(dir.join("Annotations"))
        .with_context(|| format!("cannot read {}", dir.join("Annotations").display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    xmls.sort();
    for path in xmls {
        let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let file = std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
            if b.len() > 1 << 20 {
                return Err("over 1 MiB".into());
            }
            String::from_utf8(b).map_err(|_| "not UTF-8".to_owned()).and_then(|t| parse(&t))
        });
        parsed.push((id, file));
    }
    let names = match ["labels.txt", "classes.txt"].iter().find_map(|f| std::fs::read_to_string(dir.join(f)).ok()) {
        Some(text) => text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        None => {
            let all: BTreeSet<String> = parsed
                .iter()
                .filter_map(|(_, f)| f.as_ref().ok())
                .flat_map(|f| f.objects.iter().map(|o| o.name.clone()))
                .collect();
            all.into_iter().collect::<Vec<_>>()
        }
    };
    let index: BTreeMap<&str, u32> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u32)).collect();
    let mut converted = Converted { names: names.clone(), images: Vec::new() };
    for (id, file) in &parsed {
        let lines = match file {
            Ok(voc) => voc
                .objects
                .iter()
                .map(|o| {
                    let class = index.get(o.name.as_str()).copied().unwrap_or(names.len() as u32);
                    match o.corners {
                        Some([x0, y0, x1, y1]) => {
                            let (cx, cy) = ((x0 + x1) / 2.0 - 1.0, (y0 + y1) / 2.0 - 1.0);
                            let (w, h) = (x1 - x0, y1 - y0);
                            let b = PixelBox { x: cx - w / 2.0, y: cy - h / 2.0, width: w, height: h };
                            BoundingBox::from_pixels(class, b, voc.width, voc.height).yolo_line()
                        }
                        None => format!("voc-object-{} bndbox=unreadable", o.name.replace(char::is_whitespace, "_")),
                    }
                })
                .collect(),
            Err(why) => vec![format!("voc-file-{id}.xml unreadable:{}", why.replace(char::is_whitespace, "_"))],
        };
        let image =
            ["jpg", "jpeg", "png"].iter().map(|ext| dir.join("JPEGImages").join(format!("{id}.{ext}"))).find(|p| p.is_file());
        let name = image.as_ref().and_then(|p| p.file_name()).and_then(|n| n.to_str()).map_or(format!("{id}.jpg"), str::to_owned);
        let split = split_of.get(id).copied().unwrap_or(Split::Train);
        converted.images.push(ConvertedImage { folder: split.as_str().to_owned(), file: name, path: image, lines: Some(lines) });
    }
    // Images no annotation file describes: background images, not dropped.
    let described: BTreeSet<String> = parsed.iter().map(|(id, _)| id.clone()).collect();
    let mut images: Vec<_> =
        std::fs::read_dir(dir.join("JPEGImages"))?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    images.sort();
    for image in images {
        let (Some(id), Some(name)) = (image.file_stem().and_then(|s| s.to_str()), image.file_name().and_then(|s| s.to_str()))
        else {
            continue;
        };
        if !described.contains(id) {
            let split = split_of.get(id).copied().unwrap_or(Split::Train);
            converted.images.push(ConvertedImage {
                folder: split.as_str().to_owned(),
                file: name.to_owned(),
                path: Some(image.clone()),
                lines: None,
            });
        }
    }
    Ok(converted)
}
