//! The monitor's verdicts on real digits: traffic drawn from the training distribution (one image
//! in two of the sample set, held back from the baseline) stays OK in at least 95 of 100 seeded
//! windows of 1,000 requests (the monitor's default minimum), and the same traffic brightened by 8 grey levels (about 3% of the
//! range) is flagged DRIFT.

use std::collections::BTreeMap;
use std::path::Path;

use cvops_core::drift::{assess, Status, Thresholds};
use cvops_core::monitoring::{Aggregate, InputFeatures, Observation};
use cvops_core::snapshot::Baseline;
use cvops_core::stats::ImageStats;

/// Requests per trial window.
const WINDOW: usize = 1000;
const SHIFT: u8 = 8;

struct Sample {
    class: usize,
    features: InputFeatures,
}

fn features(grey: &image::GrayImage) -> InputFeatures {
    InputFeatures::of(&ImageStats::of(grey), grey.width(), grey.height())
}

/// `(label, grey image)` of a split, labels sorted.
fn split(name: &str) -> Vec<(usize, image::GrayImage)> {
    let dir = cvops_tests::platform::digits_dir().join(name);
    let mut labels: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    labels.sort();
    let mut out = Vec::new();
    for (class, label) in labels.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(label)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            out.push((class, image::open(Path::new(&file)).unwrap().to_luma8()));
        }
    }
    out
}

/// splitmix64: a seeded stream, no dependency.
struct Seeded(u64);
impl Seeded {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn window(pool: &[Sample], seed: u64) -> Aggregate {
    let mut rng = Seeded(seed);
    let mut aggregate = Aggregate::default();
    for _ in 0..WINDOW {
        let sample = &pool[rng.below(pool.len())];
        // A model as good as the trainer's: the true class, confidently.
        aggregate.observe(&Observation {
            latency_ms: 1.0,
            error: false,
            prediction: Some((sample.class, 0.98)),
            boxes: None,
            features: Some(sample.features),
        });
    }
    aggregate
}

#[test]
fn training_distribution_traffic_stays_ok_and_a_brightness_shift_is_flagged() {
    let all: Vec<(usize, image::GrayImage)> = ["train", "val", "test"].into_iter().flat_map(split).collect();
    let (held_back, train): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let held_back: Vec<(usize, image::GrayImage)> = held_back.into_iter().map(|(_, s)| s).collect();
    let train: Vec<(usize, image::GrayImage)> = train.into_iter().map(|(_, s)| s).collect();
    let mut baseline = Baseline::default();
    let mut trained: BTreeMap<String, u64> = BTreeMap::new();
    for (class, grey) in &train {
        baseline.add_features(&features(grey));
        *trained.entry(class.to_string()).or_default() += 1;
    }
    let labels: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    let clean: Vec<Sample> = held_back.iter().map(|(class, grey)| Sample { class: *class, features: features(grey) }).collect();
    let shifted: Vec<Sample> = held_back
        .iter()
        .map(|(class, grey)| {
            let mut brighter = grey.clone();
            brighter.pixels_mut().for_each(|p| p.0[0] = p.0[0].saturating_add(SHIFT));
            Sample { class: *class, features: features(&brighter) }
        })
        .collect();
    let thresholds = Thresholds::default();

    let mut ok = 0;
    let mut worst = Vec::new();
    for seed in 0..100 {
        let a = assess(&baseline, None, &labels, &trained, &window(&clean, seed), None, &thresholds);
        if a.status == Status::Ok {
            ok += 1;
        } else {
            worst.push(format!(
                "seed {seed}: {:?} {:?}",
                a.features.iter().map(|f| (f.feature.as_str(), f.psi, f.wasserstein_over_std)).collect::<Vec<_>>(),
                (a.prediction.psi, a.prediction.js_distance)
            ));
        }
    }
    assert!(ok >= 95, "only {ok} of 100 clean windows were OK: {worst:#?}");

    let mut flagged = 0;
    for seed in 0..100 {
        let a = assess(&baseline, None, &labels, &trained, &window(&shifted, seed), None, &thresholds);
        let brightness = a.features.iter().find(|f| f.feature == "brightness").unwrap();
        flagged += usize::from(a.status == Status::Drift && brightness.status == Status::Drift);
    }
    assert!(flagged >= 95, "a +{SHIFT} brightness shift was flagged in only {flagged} of 100 windows");
    println!("{ok} of 100 clean windows OK; a +{SHIFT} grey-level shift flagged DRIFT in {flagged} of 100");
}
