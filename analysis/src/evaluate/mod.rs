//! Evaluation of a model's outputs overall and per slice: every metric with its bootstrap 95%
//! interval, and per slice the difference to the rest of the data with its interval; a slice
//! differs significantly in a metric when that interval excludes zero.

use std::collections::BTreeMap;

use serde::Serialize;

mod partial;

use crate::bootstrap::{Interval, resample};
use crate::cells::Grouped;
use crate::error::{AnalysisError, Result};
use crate::slice::Slicing;
use partial::Cells;
pub use partial::{Moments, Partial, Task};

/// A model's outputs on labelled rows.
#[derive(Clone, Debug)]
pub enum Scored {
    /// Class probabilities (`rows × classes.len()`, row-major) and true classes.
    Classes { classes: Vec<String>, labels: Vec<u32>, probs: Vec<f32> },
    /// Predicted and true values.
    Values { targets: Vec<f64>, predictions: Vec<f64> },
}

impl Scored {
    pub fn rows(&self) -> usize {
        match self {
            Scored::Classes { labels, .. } => labels.len(),
            Scored::Values { targets, .. } => targets.len(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SliceMetrics {
    pub value: String,
    pub rows: usize,
    pub metrics: BTreeMap<String, Interval>,
    /// This slice's metric minus the rest of the data's, with its interval.
    pub difference: BTreeMap<String, Interval>,
    /// Metrics whose difference to the rest is significant (its interval excludes zero).
    pub differs: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SliceSet {
    pub by: String,
    pub slices: Vec<SliceMetrics>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    /// `classification` or `regression`.
    pub task: &'static str,
    pub resamples: usize,
    pub classes: Option<Vec<String>>,
    pub metrics: BTreeMap<String, Interval>,
    /// Counts by true class (rows) and predicted class (columns).
    pub confusion: Option<Vec<Vec<f64>>>,
    pub slices: Vec<SliceSet>,
}

/// Metrics of `scored` overall and for each slice of every slicing, with `resamples` bootstrap
/// resamples (seeded by `seed`).
pub fn evaluate(scored: &Scored, slicings: &[Slicing], resamples: usize, seed: u64) -> Result<Evaluation> {
    evaluate_sums(&Partial::of(scored, slicings, &Moments::of(scored))?, resamples, seed)
}

/// Metrics from the sums of all the data (one shard, or every shard merged), with `resamples`
/// bootstrap resamples (seeded by `seed`).
pub fn evaluate_sums(partial: &Partial, resamples: usize, seed: u64) -> Result<Evaluation> {
    let rows = partial.rows;
    if rows == 0 {
        return Err(AnalysisError::invalid("--data", "has no rows to evaluate"));
    }
    let cells = Cells::of(&partial.task, &partial.keys);
    let summary = cells.summary();
    let (k, s) = (partial.keys.len(), partial.stats());
    let names = summary.names();
    let overall = Grouped { groups: 1, cells: k, stats: s, sums: partial.overall.clone() };
    let point = summary.metrics(overall.group(0));
    let draws = resample(summary, &overall, resamples, seed);
    let metrics = names.iter().enumerate().map(|(m, n)| (n.clone(), draws.interval(0, m, point[m]))).collect();
    let mut sets = Vec::with_capacity(partial.slicings.len());
    for (i, sliced) in partial.slicings.iter().enumerate() {
        let (grouped, labels) = sliced.grouped(k, s);
        let draws = resample(summary, &grouped, resamples, seed.wrapping_add(i as u64 + 1));
        let total = grouped.total();
        let slices = (0..grouped.groups)
            .map(|g| {
                let value = summary.metrics(grouped.group(g));
                let rest = summary.metrics(&crate::cells::minus(&total, grouped.group(g)));
                let mut metrics = BTreeMap::new();
                let mut difference = BTreeMap::new();
                let mut differs = Vec::new();
                for (m, n) in names.iter().enumerate() {
                    metrics.insert(n.clone(), draws.interval(g, m, value[m]));
                    let d = draws.against_rest(g, m, value[m] - rest[m]);
                    if d.excludes_zero() && d.value.is_finite() {
                        differs.push(n.clone());
                    }
                    difference.insert(n.clone(), d);
                }
                SliceMetrics { value: labels[g].clone(), rows: grouped.rows(g) as usize, metrics, difference, differs }
            })
            .collect();
        sets.push(SliceSet { by: sliced.by.clone(), slices });
    }
    let (task, classes) = match &partial.task {
        Task::Classes { classes } => ("classification", Some(classes.clone())),
        Task::Values { .. } => ("regression", None),
    };
    Ok(Evaluation {
        rows,
        task,
        resamples,
        classes,
        metrics,
        confusion: cells.confusion(overall.group(0)),
        slices: sets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_get_their_own_metrics_and_the_bad_one_is_flagged() {
        // 160 rows in two regions: north always right (p = .9 on the true class), south right
        // on 1 row in 4.
        let mut labels = Vec::new();
        let mut probs = Vec::new();
        let mut region = Vec::new();
        for i in 0..160u32 {
            let y = i % 2;
            let south = i % 4 >= 2;
            let right = !south || i % 16 < 4;
            let p1 = if right == (y == 1) { 0.9 } else { 0.1 };
            labels.push(y);
            probs.extend([1.0 - p1, p1]);
            region.push(u32::from(south));
        }
        let scored = Scored::Classes { classes: vec!["0".into(), "1".into()], labels, probs };
        let slicing = Slicing::new("region", vec!["north".into(), "south".into()], region);
        let e = evaluate(&scored, &[slicing], 400, 5).expect("evaluation");
        assert_eq!(e.rows, 160);
        // South: rows i % 16 in {2, 3}: right; {6, 7, 10, 11, 14, 15}: wrong. 2 of 8 right.
        let set = &e.slices[0];
        let (north, south) = (&set.slices[0], &set.slices[1]);
        assert_eq!((north.rows, south.rows), (80, 80));
        assert_eq!(north.metrics["accuracy"].value, 1.0);
        assert_eq!(south.metrics["accuracy"].value, 0.25);
        assert_eq!(e.metrics["accuracy"].value, 0.625);
        assert!(e.metrics["accuracy"].low < 0.625 && e.metrics["accuracy"].high > 0.625);
        assert_eq!(south.difference["accuracy"].value, -0.75);
        assert!(south.differs.contains(&"accuracy".to_owned()), "{:?}", south.differs);
        let c = e.confusion.as_ref().expect("confusion");
        assert_eq!(c[0][0] + c[1][1], 100.0);
    }

    #[test]
    fn labels_beyond_the_models_classes_are_refused() {
        let scored = Scored::Classes { classes: vec!["0".into(), "1".into()], labels: vec![0, 2], probs: vec![0.5; 4] };
        let err = evaluate(&scored, &[], 10, 1).expect_err("label 2 of 2 classes");
        assert!(err.to_string().starts_with("--label-column: label 2 is not a class"), "{err}");
    }

    #[test]
    fn regression_reports_its_metrics() {
        let targets: Vec<f64> = (0..100).map(f64::from).collect();
        let predictions: Vec<f64> =
            targets.iter().map(|y| y + if (*y as u32).is_multiple_of(2) { 1.0 } else { -1.0 }).collect();
        let e = evaluate(&Scored::Values { targets, predictions }, &[], 200, 1).expect("evaluation");
        assert_eq!(e.task, "regression");
        assert_eq!(e.metrics["mae"].value, 1.0);
        assert_eq!(e.metrics["rmse"].value, 1.0);
        assert_eq!(e.metrics["bias"].value, 0.0);
        // Variance of 0..99 is (100² - 1)/12 = 833.25 per row: R² = 1 - 1/833.25.
        assert!((e.metrics["r2"].value - (1.0 - 1.0 / 833.25)).abs() < 1e-9);
    }
}
