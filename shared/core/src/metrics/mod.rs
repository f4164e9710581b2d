//! Classification metrics: the confusion matrix and what is read off it. The trainer fills one
//! for the model card; register-model fills its own, independently, from the exported model.
//! [`detection`] is COCO's evaluation of boxes (mAP), as pycocotools computes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod detection;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Test images whose true label this is.
    pub support: u64,
}

/// An evaluation on one split: accuracy, per-class metrics, and the confusion matrix
/// (`confusion[true][predicted]`, both in `labels` order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Every test image evaluated, those whose label the model does not know included.
    pub images: u64,
    /// Test images whose true label is not among the model's labels: counted, and wrong.
    #[serde(default)]
    pub unknown_label: u64,
    pub accuracy: f64,
    pub labels: Vec<String>,
    pub per_class: BTreeMap<String, ClassMetrics>,
    pub confusion: Vec<Vec<u64>>,
}

/// Counts (true, predicted) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    labels: Vec<String>,
    matrix: Vec<Vec<u64>>,
    unknown_label: u64,
}

impl Confusion {
    pub fn new(labels: Vec<String>) -> Self {
        let n = labels.len();
        Self { labels, matrix: vec![vec![0; n]; n], unknown_label: 0 }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.matrix[truth][predicted] += 1;
    }

    /// A test image whose label the model does not know: whatever it predicts is wrong. Skipping
    /// it instead would score a model on the images it happens to know, and an evaluation of
    /// another task's test split on none of them.
    pub fn add_unknown_label(&mut self) {
        self.unknown_label += 1;
    }

    /// Adds one image whose true label is `truth` (by name) and predicted index `predicted`.
    pub fn add_named(&mut self, truth: &str, predicted: usize) {
        match self.labels.iter().position(|l| l == truth) {
            Some(index) => self.add(index, predicted),
            None => self.add_unknown_label(),
        }
    }

    pub fn total(&self) -> u64 {
        self.matrix.iter().flatten().sum::<u64>() + self.unknown_label
    }

    pub fn evaluation(&self) -> Evaluation {
        let n = self.labels.len();
        let total = self.total();
        let correct: u64 = (0..n).map(|i| self.matrix[i][i]).sum();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let per_class = (0..n)
            .map(|i| {
                let support: u64 = self.matrix[i].iter().sum();
                let predicted: u64 = (0..n).map(|t| self.matrix[t][i]).sum();
                let (precision, recall) = (ratio(self.matrix[i][i], predicted), ratio(self.matrix[i][i], support));
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                (self.labels[i].clone(), ClassMetrics { precision, recall, f1, support })
            })
            .collect();
        Evaluation {
            images: total,
            unknown_label: self.unknown_label,
            accuracy: ratio(correct, total),
            labels: self.labels.clone(),
            per_class,
            confusion: self.matrix.clone(),
        }
    }
}

impl Evaluation {
    /// The evaluation without its per-class metrics and confusion matrix.
    pub fn summary(&self) -> Evaluation {
        Evaluation { per_class: BTreeMap::new(), confusion: Vec::new(), labels: Vec::new(), ..self.clone() }
    }

    /// The confusion matrix as a text table, for terminals.
    pub fn confusion_table(&self) -> String {
        let width = self.labels.iter().map(|l| l.len()).max().unwrap_or(1).max(4);
        let mut out = format!("{:>width$}  predicted ->\n{:>width$}", "true", "");
        for label in &self.labels {
            out.push_str(&format!(" {label:>width$}"));
        }
        out.push('\n');
        for (label, row) in self.labels.iter().zip(&self.confusion) {
            out.push_str(&format!("{label:>width$}"));
            for count in row {
                out.push_str(&format!(" {count:>width$}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_off_the_matrix() {
        let mut c = Confusion::new(vec!["cat".into(), "dog".into()]);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1)] {
            c.add(t, p);
        }
        let e = c.evaluation();
        assert_eq!((e.images, e.accuracy), (4, 0.75));
        assert_eq!(e.per_class["cat"].recall, 2.0 / 3.0);
        assert_eq!(e.per_class["dog"].precision, 0.5);
        assert_eq!(e.confusion, vec![vec![2, 1], vec![0, 1]]);
        assert!(e.confusion_table().contains("cat"));
    }

    #[test]
    fn a_test_image_of_an_unknown_label_counts_and_is_wrong() {
        let mut c = Confusion::new(vec!["cat".into(), "dog".into()]);
        c.add_named("cat", 0);
        c.add_named("horse", 0);
        let e = c.evaluation();
        assert_eq!((e.images, e.unknown_label, e.accuracy), (2, 1, 0.5));
    }
}
