//! Reads a COCO detection dataset as `cvops upload --format coco` does, up to the puts it would
//! make (the class names, each image, each label file), without putting them: the import's
//! reading and conversion, timed alone. bench/coco_import.py runs it beside pycocotools.
//!
//!     cargo run --release -p cvops --example coco_import -- DIR

use std::time::Instant;

use cvops_core::key::DatasetName;
use cvops_platform::upload::{plan, DatasetFormat, Source};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: coco_import DIR"))?;
    let start = Instant::now();
    let puts = plan(&DatasetName::parse("bench").expect("a valid name"), dir.as_ref(), DatasetFormat::Coco)?;
    let (mut label_files, mut boxes) = (0u64, 0u64);
    for put in &puts {
        if let (true, Source::Bytes(text)) = (put.key.contains("/labels/"), &put.source) {
            label_files += 1;
            boxes += text.iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{{\"label_files\": {label_files}, \"boxes\": {boxes}, \"seconds\": {seconds:.3}}}");
    Ok(())
}
