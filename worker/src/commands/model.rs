//! The model's side of `monitor`: its outputs on the reference, read once, against its outputs on
//! each current window: the drift of its predictions, of its margin density (the share of
//! samples near the decision boundary, after Alibi Detect's margin-density drift), and the
//! change detectors over its stream of errors, warmed up on the reference's errors when the
//! reference is labelled so that they start from the model's known level.

use std::path::Path;

use serde::Serialize;
use shoal_analysis::drift::{ColumnDrift, column_drift};
use shoal_analysis::stream::{Alarm, Scanner};
use shoal_analysis::{Column, Frame};
use shoal_train::compress::{Artifact, softmax_rows};
use shoal_train::data::Preparation;

use super::monitor::MonitorArgs;
use shoal_worker::analysis::Failure;
use shoal_worker::analysis::table::{Table, Truth, job_label, outputs};

/// Points of the error-rate series in a report (aggregated, never one per row).
const SERIES_POINTS: usize = 200;
/// The reference quantile of absolute errors past which a regression prediction is an error.
const TOLERANCE_QUANTILE: f64 = 0.9;

/// The model's outputs reduced to what monitoring compares.
struct Outputs {
    /// The predicted class's name, or the predicted value.
    prediction: Column,
    /// 1 where the two most likely classes are within the margin (classification only).
    in_margin: Option<Column>,
    /// 1 for a wrong prediction, per row, where the data has labels.
    errors: Option<Vec<f64>>,
}

/// A model being monitored, with its reference outputs.
pub struct Monitored {
    artifact: Artifact,
    prep: Preparation,
    label: Option<String>,
    ignore: Vec<String>,
    margin: f64,
    /// For regression: the absolute error past which a prediction is wrong.
    tolerance: Option<f64>,
    reference: Outputs,
    scanner: Scanner,
    warmed_up: bool,
}

/// Margin density in the reference and the current data, and the drift test between them.
#[derive(Clone, Debug, Serialize)]
pub struct MarginDensity {
    pub margin: f64,
    pub reference: f64,
    pub current: f64,
    pub drift: ColumnDrift,
}

/// One point of the error-rate series: the rate over the rows up to `row`.
#[derive(Clone, Debug, Serialize)]
pub struct RatePoint {
    pub row: usize,
    pub rate: f64,
}

/// The error stream of one window and the alarms raised on it.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorStream {
    pub rows: usize,
    pub error_rate: f64,
    /// The reference's error rate, when it has labels (the detectors were warmed up on it).
    pub reference_error_rate: Option<f64>,
    /// For regression: the absolute error past which a prediction counts as an error.
    pub tolerance: Option<f64>,
    pub detectors: Vec<&'static str>,
    /// Rows count from the start of this window.
    pub alarms: Vec<Alarm>,
    pub series: Vec<RatePoint>,
}

/// What monitoring found on the model for one window.
#[derive(Clone, Debug, Serialize)]
pub struct ModelDrift {
    pub artifact: String,
    pub format: &'static str,
    pub prediction: ColumnDrift,
    /// Classification models only.
    pub margin_density: Option<MarginDensity>,
    /// Where the window has labels.
    pub errors: Option<ErrorStream>,
}

impl ModelDrift {
    /// What drifted, for the window's reasons.
    pub fn reasons(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.prediction.drifted {
            out.push("prediction");
        }
        if self.margin_density.as_ref().is_some_and(|m| m.drift.drifted) {
            out.push("margin_density");
        }
        if self.errors.as_ref().is_some_and(|e| e.alarms.iter().any(|a| a.kind == "drift")) {
            out.push("errors");
        }
        out
    }

    pub fn summarize(&self) {
        eprintln!(
            "  predictions: {} {:.4}{}",
            self.prediction.test.name(),
            self.prediction.statistic,
            if self.prediction.drifted { ", drifted" } else { "" }
        );
        if let Some(m) = &self.margin_density {
            eprintln!(
                "  margin density {:.4} (reference {:.4}){}",
                m.current,
                m.reference,
                if m.drift.drifted { ", drifted" } else { "" }
            );
        }
        if let Some(e) = &self.errors {
            eprintln!("  error rate {:.4} over {} rows", e.error_rate, e.rows);
            for a in e.alarms.iter().filter(|a| a.kind == "drift") {
                eprintln!("  {} alarm at row {}", a.detector, a.row);
            }
        }
    }
}

impl Monitored {
    /// Opens the artifact and runs it on the reference data.
    pub fn open(artifact: &Path, frame: &Frame, args: &MonitorArgs) -> Result<Self, Failure> {
        let job = Artifact::job_of(artifact)?;
        let prep = Preparation::of_artifact(artifact, &job)?;
        let named = args.label_column.clone();
        let label = named.clone().or_else(|| job_label(&job));
        let mut ignore = args.ignore.clone();
        ignore.extend(label.clone());
        if let Some(t) = args.error_tolerance
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Failure::usage("--error-tolerance", format!("must be a number >= 0, got {t}")));
        }
        // A label the job names but the reference lacks is simply absent; one named here must be
        // there.
        let present = label.as_deref().filter(|l| named.is_some() || frame.names.iter().any(|n| n == l));
        let table = Table::of(frame.clone(), "--reference", &prep, present, &ignore)?;
        let artifact = Artifact::open(artifact, prep.outputs(table.features.len()), None)?;
        if !prep.regression && artifact.outputs < 2 {
            return Err(Failure::usage("--artifact", "a classification model must have at least two outputs"));
        }
        let raw = run(&artifact, &prep, &table)?;
        let tolerance = match (&table.truth, prep.regression) {
            (_, false) => None,
            (_, true) if args.error_tolerance.is_some() => args.error_tolerance,
            (Some(Truth::Values(t)), true) => Some(quantile_abs_error(&raw, t, TOLERANCE_QUANTILE)),
            (_, true) => None,
        };
        let mut monitored = Monitored {
            label,
            ignore,
            margin: args.margin,
            tolerance,
            reference: Outputs { prediction: Column::Numeric(Vec::new()), in_margin: None, errors: None },
            scanner: Scanner::new(true),
            warmed_up: false,
            prep,
            artifact,
        };
        monitored.reference = monitored.reduce(&raw, table.truth.as_ref());
        if let Some(e) = &monitored.reference.errors {
            monitored.scanner.warm_up(e);
            monitored.warmed_up = true;
        }
        Ok(monitored)
    }

    /// The label column, when the model's job or `--label-column` names one.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The model's drift on a window's data.
    pub fn judge(&mut self, frame: Frame) -> Result<ModelDrift, Failure> {
        let present = self.label.as_deref().filter(|l| frame.names.iter().any(|n| n == l));
        let table = Table::of(frame, "--current", &self.prep, present, &self.ignore)?;
        let raw = run(&self.artifact, &self.prep, &table)?;
        let current = self.reduce(&raw, table.truth.as_ref());
        let prediction = column_drift("prediction", &self.reference.prediction, &current.prediction, None)?;
        let margin_density = match (&self.reference.in_margin, &current.in_margin) {
            (Some(r), Some(c)) => Some(MarginDensity {
                margin: self.margin,
                reference: mean(r),
                current: mean(c),
                drift: column_drift("margin_density", r, c, None)?,
            }),
            _ => None,
        };
        let errors = current.errors.map(|e| ErrorStream {
            rows: e.len(),
            error_rate: e.iter().sum::<f64>() / e.len().max(1) as f64,
            reference_error_rate: self.reference.errors.as_ref().map(|r| r.iter().sum::<f64>() / r.len().max(1) as f64),
            tolerance: self.tolerance,
            detectors: self.scanner.detectors(),
            alarms: self.scanner.feed(&e),
            series: series(&e),
        });
        Ok(ModelDrift {
            artifact: self.artifact.path.display().to_string(),
            format: self.artifact.format.name(),
            prediction,
            margin_density,
            errors,
        })
    }

    /// Predictions, margins and errors from the model's raw outputs.
    fn reduce(&self, raw: &[f32], truth: Option<&Truth>) -> Outputs {
        let k = self.artifact.outputs;
        if self.prep.regression {
            let values: Vec<f64> = raw.iter().map(|&v| f64::from(v)).collect();
            let errors = match (truth, self.tolerance) {
                (Some(Truth::Values(t)), Some(tol)) => {
                    Some(values.iter().zip(t).map(|(p, y)| f64::from((p - y).abs() > tol)).collect())
                }
                _ => None,
            };
            return Outputs { prediction: Column::Numeric(values), in_margin: None, errors };
        }
        let mut probs = raw.to_vec();
        softmax_rows(&mut probs, k);
        let names: Vec<String> = self.prep.classes.clone().unwrap_or_else(|| (0..k).map(|c| c.to_string()).collect());
        let mut predicted = Vec::with_capacity(probs.len() / k);
        let mut in_margin = Vec::with_capacity(probs.len() / k);
        for p in probs.chunks_exact(k) {
            let (top, second) = top_two(p);
            predicted.push(top);
            in_margin.push(f64::from(p[top] - p[second] < self.margin as f32));
        }
        let errors = match truth {
            Some(Truth::Classes(labels)) => {
                Some(predicted.iter().zip(labels).map(|(&p, &l)| f64::from(p != l as usize)).collect())
            }
            _ => None,
        };
        let cells: Vec<&str> = predicted.iter().map(|&c| names[c].as_str()).collect();
        Outputs { prediction: Column::categorical(&cells), in_margin: Some(Column::Numeric(in_margin)), errors }
    }
}

/// The model's raw outputs on a table's rows.
fn run(artifact: &Artifact, prep: &Preparation, table: &Table) -> Result<Vec<f32>, Failure> {
    let x = table.prepared(prep, &table.raw)?;
    outputs(artifact, &x, table.rows)
}

/// The indices of the largest and the second largest of `p` (at least two values).
fn top_two(p: &[f32]) -> (usize, usize) {
    let (mut a, mut b) = if p[1] > p[0] { (1, 0) } else { (0, 1) };
    for (i, &v) in p.iter().enumerate().skip(2) {
        if v > p[a] {
            (a, b) = (i, a);
        } else if v > p[b] {
            b = i;
        }
    }
    (a, b)
}

fn mean(c: &Column) -> f64 {
    match c {
        Column::Numeric(v) => v.iter().sum::<f64>() / v.len().max(1) as f64,
        Column::Categorical { .. } => f64::NAN,
    }
}

/// The `q` quantile of the absolute errors of `predicted` against `targets`.
fn quantile_abs_error(predicted: &[f32], targets: &[f64], q: f64) -> f64 {
    let mut e: Vec<f64> = predicted.iter().zip(targets).map(|(&p, y)| (f64::from(p) - y).abs()).collect();
    e.sort_by(f64::total_cmp);
    if e.is_empty() {
        return 0.0;
    }
    e[((e.len() - 1) as f64 * q).round() as usize]
}

/// The error rate over consecutive blocks of rows, at most [`SERIES_POINTS`] of them.
fn series(errors: &[f64]) -> Vec<RatePoint> {
    let block = errors.len().div_ceil(SERIES_POINTS).max(1);
    errors
        .chunks(block)
        .enumerate()
        .map(|(i, c)| RatePoint { row: i * block + c.len() - 1, rate: c.iter().sum::<f64>() / c.len() as f64 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_two_and_series() {
        assert_eq!(top_two(&[0.1, 0.7, 0.2]), (1, 2));
        assert_eq!(top_two(&[0.5, 0.1, 0.1, 0.3]), (0, 3));
        assert_eq!(top_two(&[0.2, 0.8]), (1, 0));
        let s = series(&(0..1000).map(|i| f64::from(i >= 500)).collect::<Vec<_>>());
        assert_eq!(s.len(), 200);
        assert_eq!((s[0].row, s[0].rate), (4, 0.0));
        assert_eq!((s[199].row, s[199].rate), (999, 1.0));
        assert_eq!(quantile_abs_error(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0], 1.0), 2.0);
    }
}
