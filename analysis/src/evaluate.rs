//! Evaluation of a model's outputs overall and per slice: every metric with its bootstrap 95%
//! interval, and per slice the difference to the rest of the data with its interval; a slice
//! differs significantly in a metric when that interval excludes zero.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::{Interval, resample};
use crate::cells::{Grouped, Summary};
use crate::classification::Classification;
use crate::error::{AnalysisError, Result};
use crate::regression::Regression;
use crate::slice::Slicing;

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

fn mean_sd(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt().max(1e-12))
}

/// The cells of the task the outputs are for.
enum Cells {
    Classes(Classification),
    Values(Regression),
}

impl Cells {
    fn summary(&self) -> &dyn Summary {
        match self {
            Cells::Classes(c) => c,
            Cells::Values(r) => r,
        }
    }

    fn confusion(&self, sums: &[f64]) -> Option<Vec<Vec<f64>>> {
        match self {
            Cells::Classes(c) => Some(c.confusion(sums)),
            Cells::Values(_) => None,
        }
    }
}

/// Files every row into its cell: the cells, each row's cell and its sums (`rows × stats`).
fn summarize(scored: &Scored) -> Result<(Cells, Vec<u32>, Vec<f64>)> {
    match scored {
        Scored::Classes { classes, labels, probs } => {
            let k = classes.len();
            if k < 2 || probs.len() != labels.len() * k {
                return Err(AnalysisError::invalid(
                    "--data",
                    format!("{} probabilities for {} rows of {k} classes", probs.len(), labels.len()),
                ));
            }
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
                return Err(AnalysisError::invalid(
                    "--label-column",
                    format!("label {bad} is not a class of the model (it has {k}: 0 to {})", k - 1),
                ));
            }
            let mut cls = Classification::new(classes.clone());
            let mut stats = vec![0.0; labels.len() * 3];
            let cells = labels
                .iter()
                .zip(probs.chunks_exact(k))
                .zip(stats.chunks_exact_mut(3))
                .map(|((&y, p), s)| cls.row(y, p, s))
                .collect();
            Ok((Cells::Classes(cls), cells, stats))
        }
        Scored::Values { targets, predictions } => {
            let target = mean_sd(targets.iter().copied());
            let residual = (0.0, mean_sd(targets.iter().zip(predictions).map(|(y, p)| p - y)).1);
            let mut reg = Regression::new(target, residual);
            let mut stats = vec![0.0; targets.len() * 6];
            let cells = targets
                .iter()
                .zip(predictions)
                .zip(stats.chunks_exact_mut(6))
                .map(|((&y, &p), s)| reg.row(y, p, s))
                .collect();
            Ok((Cells::Values(reg), cells, stats))
        }
    }
}

/// Metrics of `scored` overall and for each slice of every slicing, with `resamples` bootstrap
/// resamples (seeded by `seed`).
pub fn evaluate(scored: &Scored, slicings: &[Slicing], resamples: usize, seed: u64) -> Result<Evaluation> {
    let rows = scored.rows();
    if rows == 0 {
        return Err(AnalysisError::invalid("--data", "has no rows to evaluate"));
    }
    if let Some(s) = slicings.iter().find(|s| s.codes.len() != rows) {
        return Err(AnalysisError::invalid(
            "--slice-by",
            format!("`{}` has {} rows, the data {rows}", s.name, s.codes.len()),
        ));
    }
    let (task, cells, stats) = summarize(scored)?;
    let summary = task.summary();
    let s = summary.stats();
    let names = summary.names();
    let row = |i: usize, out: &mut [f64]| out.copy_from_slice(&stats[i * s..(i + 1) * s]);
    let overall = Grouped::build(1, summary.cells(), s, rows, |_| Some(0), &cells, row);
    let point = summary.metrics(overall.group(0));
    let draws = resample(summary, &overall, resamples, seed);
    let metrics = names.iter().enumerate().map(|(m, n)| (n.clone(), draws.interval(0, m, point[m]))).collect();
    let mut sets = Vec::with_capacity(slicings.len());
    for (k, slicing) in slicings.iter().enumerate() {
        let grouped =
            Grouped::build(slicing.slices(), summary.cells(), s, rows, |i| Some(slicing.codes[i]), &cells, row);
        let draws = resample(summary, &grouped, resamples, seed.wrapping_add(k as u64 + 1));
        let total = grouped.total();
        let slices = (0..slicing.slices())
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
                SliceMetrics {
                    value: slicing.labels[g].clone(),
                    rows: grouped.rows(g) as usize,
                    metrics,
                    difference,
                    differs,
                }
            })
            .collect();
        sets.push(SliceSet { by: slicing.name.clone(), slices });
    }
    Ok(Evaluation {
        rows,
        task: if matches!(scored, Scored::Classes { .. }) { "classification" } else { "regression" },
        resamples,
        classes: match scored {
            Scored::Classes { classes, .. } => Some(classes.clone()),
            Scored::Values { .. } => None,
        },
        metrics,
        confusion: task.confusion(overall.group(0)),
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
        let slicing = Slicing { name: "region".into(), labels: vec!["north".into(), "south".into()], codes: region };
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
