//! Drift math and the verdicts the monitor gives: a window of traffic against the baseline of the
//! snapshot the serving model was trained on.
//!
//! - Input features (brightness, contrast, sharpness, width, height): the population stability
//!   index over the shared bins (WARN at 0.1, DRIFT at 0.25) and the Wasserstein-1 distance
//!   between the binned distributions, on the histogram's scale, divided by the baseline's
//!   standard deviation (DRIFT at 0.1).
//! - Predictions: PSI and the Jensen-Shannon distance (base 2, so 0 to 1) between the predicted
//!   classes and the training labels.
//! - Confidence: mean, share below the low-confidence threshold, change from the previous window.
//! - Service: requests, error rate, latency percentiles.
//!
//! Bins are smoothed with half a count each before PSI and JS (an empty bin would otherwise make
//! PSI infinite, and flag small windows for nothing); bins empty on both sides are left out. A window with fewer than `min_requests`
//! requests is `insufficient_data`: measured, never judged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::monitoring::{Aggregate, LOW_CONFIDENCE};
use crate::snapshot::{Baseline, BoxBaseline, Histogram};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InsufficientData,
    Ok,
    Warn,
    Drift,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InsufficientData => "INSUFFICIENT DATA",
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Drift => "DRIFT",
        }
    }

    fn from_levels(value: f64, warn: f64, drift: f64) -> Self {
        if value >= drift {
            Status::Drift
        } else if value >= warn {
            Status::Warn
        } else {
            Status::Ok
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub psi_warn: f64,
    pub psi_drift: f64,
    /// Wasserstein distance over the baseline's standard deviation.
    pub wasserstein_drift: f64,
    pub js_warn: f64,
    pub js_drift: f64,
    /// Fewer requests in a window than this: `insufficient_data`.
    pub min_requests: u64,
    /// A fall of the mean confidence from the previous window by this much: WARN, DRIFT.
    pub confidence_drop_warn: f64,
    pub confidence_drop_drift: f64,
    pub error_rate_warn: f64,
    pub error_rate_drift: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            psi_warn: 0.1,
            psi_drift: 0.25,
            wasserstein_drift: 0.1,
            js_warn: 0.1,
            js_drift: 0.2,
            // Below this, the Wasserstein distance's sampling noise alone reaches 0.1 sd in a
            // good share of windows (on the digits: 1 in 4 windows of 500 requests).
            min_requests: 1000,
            confidence_drop_warn: 0.05,
            confidence_drop_drift: 0.10,
            error_rate_warn: 0.01,
            error_rate_drift: 0.05,
        }
    }
}

/// Both distributions as proportions over the bins either of them uses, with half a count added
/// to each of those bins. Bins empty in both are left out: smoothing them would make two equal
/// distributions of different sizes look different.
fn smoothed(expected: &[f64], actual: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let used: Vec<(f64, f64)> =
        expected.iter().zip(actual).filter(|(e, a)| **e > 0.0 || **a > 0.0).map(|(e, a)| (*e, *a)).collect();
    let k = used.len() as f64;
    let (te, ta) = (used.iter().map(|u| u.0).sum::<f64>() + 0.5 * k, used.iter().map(|u| u.1).sum::<f64>() + 0.5 * k);
    used.iter().map(|(e, a)| ((e + 0.5) / te, (a + 0.5) / ta)).unzip()
}

/// Population stability index of `actual` against `expected` (counts over the same bins).
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let (e, a) = smoothed(expected, actual);
    e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum()
}

/// Jensen-Shannon distance, base 2: 0 for equal distributions, 1 for disjoint ones.
pub fn js_distance(expected: &[f64], actual: &[f64]) -> f64 {
    let (p, q) = smoothed(expected, actual);
    let kl = |x: &[f64], m: &[f64]| x.iter().zip(m).map(|(x, m)| if *x > 0.0 { x * (x / m).log2() } else { 0.0 }).sum::<f64>();
    let m: Vec<f64> = p.iter().zip(&q).map(|(p, q)| (p + q) / 2.0).collect();
    (0.5 * kl(&p, &m) + 0.5 * kl(&q, &m)).max(0.0).sqrt()
}

/// Wasserstein-1 distance between two histograms of one layout, in units of the scaled value,
/// divided by the standard deviation of `baseline` (on the same scale). 0 when the baseline has
/// no spread and the window sits in its bin.
pub fn wasserstein_over_std(baseline: &Histogram, window: &Histogram) -> f64 {
    let (nb, nw) = (baseline.total() as f64, window.total() as f64);
    if nb == 0.0 || nw == 0.0 {
        return 0.0;
    }
    let width = (baseline.high - baseline.low) / baseline.counts.len() as f64;
    let (mut cb, mut cw, mut distance) = (0.0, 0.0, 0.0);
    for (b, w) in baseline.counts.iter().zip(&window.counts) {
        cb += *b as f64 / nb;
        cw += *w as f64 / nw;
        distance += (cb - cw).abs() * width;
    }
    let centres = baseline.centres();
    let mean = baseline.counts.iter().zip(&centres).map(|(c, x)| *c as f64 * x).sum::<f64>() / nb;
    let variance = baseline.counts.iter().zip(&centres).map(|(c, x)| *c as f64 * (x - mean).powi(2)).sum::<f64>() / nb;
    // A baseline inside one bin still has a bin's worth of uncertainty: use at least that spread.
    let std = variance.sqrt().max(width / 12f64.sqrt());
    distance / std
}

fn as_f64(counts: &[u64]) -> Vec<f64> {
    counts.iter().map(|c| *c as f64).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub psi: f64,
    pub wasserstein_over_std: f64,
    pub status: Status,
    pub baseline: Histogram,
    pub window: Histogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionDrift {
    pub psi: f64,
    pub js_distance: f64,
    pub status: Status,
    /// Per label: training share and predictions in the window.
    pub training_share: BTreeMap<String, f64>,
    pub predicted: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceSummary {
    pub mean: Option<f64>,
    pub share_low: Option<f64>,
    pub threshold: f64,
    pub previous_mean: Option<f64>,
    pub change: Option<f64>,
    pub status: Status,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub status: Status,
}

/// Every metric of one window with its verdict, and the verdict of the whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub status: Status,
    pub features: Vec<FeatureDrift>,
    pub prediction: PredictionDrift,
    pub confidence: ConfidenceSummary,
    pub service: ServiceSummary,
}

/// The mean of a histogram, from its bin centres (exact to half a bin).
fn histogram_mean(h: &Histogram) -> Option<f64> {
    let total = h.total();
    (total > 0).then(|| h.counts.iter().zip(h.centres()).map(|(c, x)| *c as f64 * h.unscaled(x)).sum::<f64>() / total as f64)
}

/// Judges `window` against the training `baseline` and label counts (`labels[i]` is class i).
/// A detector's window is also judged against the snapshot's `boxes` baseline: boxes per image,
/// their size and aspect as features, the served boxes' classes against the training boxes'
/// (`training_counts` then counts boxes), and the boxes' scores as its confidence.
pub fn assess(
    baseline: &Baseline,
    boxes: Option<&BoxBaseline>,
    labels: &[String],
    training_counts: &BTreeMap<String, u64>,
    window: &Aggregate,
    previous: Option<&Aggregate>,
    thresholds: &Thresholds,
) -> Assessment {
    let enough = window.requests >= thresholds.min_requests;
    let judged = |status: Status| if enough { status } else { Status::InsufficientData };

    let mut pairs = vec![
        ("brightness", &baseline.brightness, &window.features.brightness),
        ("contrast", &baseline.contrast, &window.features.contrast),
        ("sharpness", &baseline.sharpness, &window.features.sharpness),
        ("width", &baseline.width, &window.features.width),
        ("height", &baseline.height, &window.features.height),
    ];
    if let Some(base) = boxes {
        pairs.extend([
            ("boxes_per_image", &base.boxes_per_image, &window.boxes.boxes_per_image),
            ("box_size", &base.relative_size, &window.boxes.relative_size),
            ("box_aspect", &base.log2_aspect, &window.boxes.log2_aspect),
        ]);
    }
    let features: Vec<FeatureDrift> = pairs
        .into_iter()
        .map(|(name, base, seen)| {
            // No decoded input in the window (every request failed): nothing to compare.
            let compared = seen.total() > 0 && base.total() > 0;
            let psi_value = if compared { psi(&as_f64(&base.counts), &as_f64(&seen.counts)) } else { 0.0 };
            let w = wasserstein_over_std(base, seen);
            let by_psi = Status::from_levels(psi_value, thresholds.psi_warn, thresholds.psi_drift);
            let by_w = if w >= thresholds.wasserstein_drift { Status::Drift } else { Status::Ok };
            FeatureDrift {
                feature: name.into(),
                psi: psi_value,
                wasserstein_over_std: w,
                status: judged(by_psi.max(by_w)),
                baseline: base.clone(),
                window: seen.clone(),
            }
        })
        .collect();

    let trained: Vec<f64> = labels.iter().map(|l| training_counts.get(l).copied().unwrap_or(0) as f64).collect();
    let served_classes = if boxes.is_some() { &window.boxes.per_class } else { &window.classes };
    let predicted: Vec<f64> = (0..labels.len()).map(|i| served_classes.get(&i).copied().unwrap_or(0) as f64).collect();
    let trained_total: f64 = trained.iter().sum::<f64>().max(1.0);
    let prediction_psi = psi(&trained, &predicted);
    let js = js_distance(&trained, &predicted);
    let prediction = PredictionDrift {
        psi: prediction_psi,
        js_distance: js,
        status: judged(Status::from_levels(prediction_psi, thresholds.psi_warn, thresholds.psi_drift).max(Status::from_levels(
            js,
            thresholds.js_warn,
            thresholds.js_drift,
        ))),
        training_share: labels.iter().zip(&trained).map(|(l, c)| (l.clone(), c / trained_total)).collect(),
        predicted: labels.iter().zip(&predicted).map(|(l, c)| (l.clone(), *c as u64)).collect(),
    };

    // A classifier's top score per answer; a detector's score per served box, over its images.
    let scores = |a: &Aggregate| if boxes.is_some() { a.boxes.confidence.clone() } else { a.confidence.clone() };
    let answered = if boxes.is_some() { window.boxes.images() } else { window.confidence.total() };
    let mean = histogram_mean(&scores(window));
    let previous_mean = previous.filter(|p| p.requests >= thresholds.min_requests).and_then(|p| histogram_mean(&scores(p)));
    let change = mean.zip(previous_mean).map(|(now, before)| now - before);
    let confidence =
        ConfidenceSummary {
            mean,
            share_low: (answered > 0).then(|| window.low_confidence as f64 / answered as f64),
            threshold: LOW_CONFIDENCE,
            previous_mean,
            change,
            status: judged(change.map_or(Status::Ok, |c| {
                Status::from_levels(-c, thresholds.confidence_drop_warn, thresholds.confidence_drop_drift)
            })),
            histogram: scores(window),
        };

    let error_rate = window.errors as f64 / window.requests.max(1) as f64;
    let service = ServiceSummary {
        requests: window.requests,
        errors: window.errors,
        error_rate,
        p50_ms: window.latency.quantile(0.50),
        p95_ms: window.latency.quantile(0.95),
        p99_ms: window.latency.quantile(0.99),
        status: judged(Status::from_levels(error_rate, thresholds.error_rate_warn, thresholds.error_rate_drift)),
    };

    let status = if enough {
        features
            .iter()
            .map(|f| f.status)
            .chain([prediction.status, confidence.status, service.status])
            .max()
            .unwrap_or(Status::Ok)
    } else {
        Status::InsufficientData
    };
    Assessment { status, features, prediction, confidence, service }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_distributions_have_no_drift_and_disjoint_ones_the_most() {
        let a = [10.0, 20.0, 30.0, 40.0];
        assert!(psi(&a, &a).abs() < 1e-12);
        assert!(js_distance(&a, &a).abs() < 1e-6);
        let (left, right) = ([1000.0, 0.0], [0.0, 1000.0]);
        assert!(psi(&left, &right) > 5.0);
        assert!(js_distance(&left, &right) > 0.99);
    }

    #[test]
    fn psi_matches_the_textbook_value() {
        // Expected 50/50, actual 60/40 (large counts, so the smoothing does not matter):
        // 0.1 ln(1.2) + (-0.1) ln(0.8) = 0.04055.
        let value = psi(&[50_000.0, 50_000.0], &[60_000.0, 40_000.0]);
        assert!((value - 0.040_55).abs() < 1e-4, "{value}");
    }

    #[test]
    fn a_shift_of_one_standard_deviation_measures_about_one() {
        let mut base = Histogram::new(crate::snapshot::Scale::Linear, 0.0, 100.0, 100);
        let mut shifted = base.clone();
        // Uniform on [20, 40): sd = 20 / sqrt(12) = 5.77; shift by that much.
        for i in 0..2000 {
            let x = 20.0 + 20.0 * (i as f64 + 0.5) / 2000.0;
            base.add(x);
            shifted.add(x + 5.77);
        }
        let w = wasserstein_over_std(&base, &shifted);
        assert!((w - 1.0).abs() < 0.05, "{w}");
    }

    #[test]
    fn a_small_window_is_measured_but_not_judged() {
        let baseline = Baseline::default();
        let window = Aggregate { requests: 5, ..Aggregate::default() };
        let a = assess(&baseline, None, &[], &BTreeMap::new(), &window, None, &Thresholds::default());
        assert_eq!(a.status, Status::InsufficientData);
        assert!(a.features.iter().all(|f| f.status == Status::InsufficientData));
    }

    #[test]
    fn a_detectors_boxes_are_judged_against_the_box_baseline() {
        use crate::annotation::BoundingBox;
        use crate::monitoring::{Observation, ObservedBox};
        // Trained on boxes a fifth of the image's side, two per image, classes 0 and 1.
        let mut base = BoxBaseline::new(2);
        let square = |class, cx| BoundingBox { class, cx, cy: 0.5, w: 0.2, h: 0.2 };
        for _ in 0..500 {
            base.add(&[square(0, 0.25), square(1, 0.75)], 100, 100);
        }
        let labels = vec!["a".to_string(), "b".to_string()];
        let counts = BTreeMap::from([("a".to_string(), 500), ("b".to_string(), 500)]);
        let served = |side: f64| {
            let mut window = Aggregate::default();
            for _ in 0..Thresholds::default().min_requests {
                let boxes = vec![ObservedBox::new(0, 0.9, side, side, 100, 100), ObservedBox::new(1, 0.8, side, side, 100, 100)];
                window.observe(&Observation {
                    latency_ms: 2.0,
                    error: false,
                    prediction: None,
                    boxes: Some(boxes),
                    features: None,
                });
            }
            assess(&Baseline::default(), Some(&base), &labels, &counts, &window, None, &Thresholds::default())
        };
        let status = |a: &Assessment, name: &str| a.features.iter().find(|f| f.feature == name).unwrap().status;
        let alike = served(20.0);
        assert_eq!(
            (status(&alike, "box_size"), status(&alike, "boxes_per_image"), alike.prediction.status),
            (Status::Ok, Status::Ok, Status::Ok)
        );
        assert!((alike.confidence.mean.unwrap() - 0.85).abs() < 0.03, "{:?}", alike.confidence.mean);
        let larger = served(60.0);
        assert_eq!(status(&larger, "box_size"), Status::Drift);
        assert_eq!(status(&larger, "box_aspect"), Status::Ok);
    }
}
