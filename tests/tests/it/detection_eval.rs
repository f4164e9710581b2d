//! The project's COCO evaluation against pycocotools' COCOeval on the same boxes: mAP@0.5:0.95,
//! mAP@0.5 and mAP@0.75 agree within 0.001. Run by the test script, which installs pycocotools
//! and names its Python in CVOPS_TEST_PYCOCOTOOLS; without it the comparison says it is skipped.

use std::path::Path;

use cvops_core::annotation::PixelBox;
use cvops_core::metrics::detection::{evaluate, Detection, GroundTruth};

/// A small deterministic generator (xorshift), so the test needs no dependency and fails the same
/// way every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The ground truth of detect-digits' val and test splits (COCO files), with every 25th box
/// made a crowd region.
fn ground_truth() -> (Vec<u64>, Vec<GroundTruth>, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samplesets/detect-digits/annotations");
    let (mut images, mut gts) = (Vec::new(), Vec::new());
    let (mut coco_images, mut coco_annotations) = (Vec::new(), Vec::new());
    for (offset, split) in [(0u64, "val"), (10_000, "test")] {
        let coco: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("instances_{split}.json"))).unwrap()).unwrap();
        for image in coco["images"].as_array().unwrap() {
            let id = image["id"].as_u64().unwrap() + offset;
            images.push(id);
            coco_images.push(serde_json::json!({"id": id, "width": image["width"], "height": image["height"], "file_name": image["file_name"]}));
        }
        for a in coco["annotations"].as_array().unwrap() {
            let b: Vec<f64> = a["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let crowd = (coco_annotations.len() + 1) % 25 == 0;
            let image = a["image_id"].as_u64().unwrap() + offset;
            let class = a["category_id"].as_u64().unwrap() as u32 - 1;
            gts.push(GroundTruth { image, class, bbox: PixelBox { x: b[0], y: b[1], width: b[2], height: b[3] }, crowd });
            coco_annotations.push(serde_json::json!({
                "id": coco_annotations.len() + 1, "image_id": image, "category_id": class + 1,
                "bbox": b, "area": b[2] * b[3], "iscrowd": u8::from(crowd)
            }));
        }
    }
    let categories: Vec<serde_json::Value> = (0..10).map(|c| serde_json::json!({"id": c + 1, "name": c.to_string()})).collect();
    let coco = serde_json::json!({"images": coco_images, "annotations": coco_annotations, "categories": categories});
    (images, gts, coco)
}

/// Predictions of a middling detector: most boxes found with jitter, some missed, some found
/// twice, some given the wrong class, false alarms, and scores that only loosely rank them.
fn predictions(images: &[u64], gts: &[GroundTruth], rng: &mut Rng) -> Vec<Detection> {
    let mut out = Vec::new();
    for g in gts {
        if rng.next() < 0.15 {
            continue;
        }
        let jitter = |rng: &mut Rng, v: f64, scale: f64| v + (rng.next() - 0.5) * scale;
        let s = g.bbox.width.max(g.bbox.height) * 0.3;
        let bbox = PixelBox {
            x: jitter(rng, g.bbox.x, s),
            y: jitter(rng, g.bbox.y, s),
            width: jitter(rng, g.bbox.width, s).max(1.0),
            height: jitter(rng, g.bbox.height, s).max(1.0),
        };
        let class = if rng.next() < 0.1 { (g.class + 1) % 10 } else { g.class };
        out.push(Detection { image: g.image, class, bbox, score: (0.3 + 0.7 * rng.next()).min(0.999) });
        if rng.next() < 0.1 {
            out.push(Detection { image: g.image, class, bbox, score: 0.2 * rng.next() });
        }
    }
    for &image in images {
        for _ in 0..(rng.next() * 3.0) as usize {
            let bbox = PixelBox {
                x: rng.next() * 80.0,
                y: rng.next() * 80.0,
                width: 4.0 + rng.next() * 30.0,
                height: 4.0 + rng.next() * 30.0,
            };
            out.push(Detection { image, class: (rng.next() * 10.0) as u32 % 10, bbox, score: 0.6 * rng.next() });
        }
    }
    // One detection on an image the ground truth does not list: left out by both.
    out.push(Detection { image: 999_999, class: 0, bbox: PixelBox { x: 0.0, y: 0.0, width: 5.0, height: 5.0 }, score: 0.9 });
    out
}

#[test]
fn map_agrees_with_pycocotools_on_the_same_boxes() {
    let Ok(python) = std::env::var("CVOPS_TEST_PYCOCOTOOLS") else {
        eprintln!("skipped: the comparison with pycocotools (set CVOPS_TEST_PYCOCOTOOLS to a Python with pycocotools)");
        return;
    };
    let (images, gts, coco) = ground_truth();
    let dir = tempfile::tempdir().unwrap();
    let gt_path = dir.path().join("gt.json");
    std::fs::write(&gt_path, coco.to_string()).unwrap();
    let script = "import sys, json, contextlib, io\nfrom pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval\nwith contextlib.redirect_stdout(io.StringIO()):\n    gt = COCO(sys.argv[1])\n    dt = gt.loadRes(sys.argv[2])\n    e = COCOeval(gt, dt, 'bbox')\n    e.evaluate(); e.accumulate(); e.summarize()\nprint(json.dumps(list(e.stats[:3])))\n";
    for seed in [1u64, 2, 3] {
        let detections = predictions(&images, &gts, &mut Rng(0x9E37_79B9_7F4A_7C15 ^ seed));
        let results: Vec<serde_json::Value> = detections
            .iter()
            .map(|d| {
                serde_json::json!({"image_id": d.image, "category_id": d.class + 1, "score": d.score,
                    "bbox": [d.bbox.x, d.bbox.y, d.bbox.width, d.bbox.height]})
            })
            .filter(|r| r["image_id"] != 999_999)
            .collect();
        let dt_path = dir.path().join("dt.json");
        std::fs::write(&dt_path, serde_json::to_vec(&results).unwrap()).unwrap();
        let output = std::process::Command::new(&python).args(["-c", script]).arg(&gt_path).arg(&dt_path).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stats: Vec<f64> = serde_json::from_slice(&output.stdout).unwrap();
        let ours = evaluate(&images, &gts, &detections);
        let largest =
            [ours.map - stats[0], ours.map50 - stats[1], ours.map75 - stats[2]].iter().fold(0f64, |m, d| m.max(d.abs()));
        eprintln!(
            "seed {seed}: ours {:.4} {:.4} {:.4}, pycocotools {:.4} {:.4} {:.4}, largest difference {largest:.1e}",
            ours.map, ours.map50, ours.map75, stats[0], stats[1], stats[2]
        );
        for (name, mine, theirs) in
            [("mAP", ours.map, stats[0]), ("mAP@0.5", ours.map50, stats[1]), ("mAP@0.75", ours.map75, stats[2])]
        {
            assert!((mine - theirs).abs() <= 0.001, "seed {seed}: {name} {mine} against pycocotools' {theirs}");
        }
        assert!(ours.map50 > 0.3 && ours.map50 < 0.95, "a middling detector: {ours:?}");
    }
}
