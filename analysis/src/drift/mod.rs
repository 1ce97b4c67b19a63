//! Drift between a reference data set and a current one, column by column, following Evidently's
//! defaults: a test per column ([`choose`]: Kolmogorov–Smirnov, chi-square or Z for up to 1000
//! reference rows, normed Wasserstein or Jensen–Shannon past that; or any [`Test`] asked for),
//! whether each column drifted, and whether the data set did (at least half of its columns).
//!
//! Every column also gets a [`Histogram`] of both samples' shares on shared bins for a report's
//! chart: at most 50 bars, never rows. Row counts are of cells with a value (NaN cells are
//! skipped). One file per test; [`bins`] holds the shared histogram.

pub mod bins;
pub mod chi_square;
mod choice;
pub mod hellinger;
pub mod jensen_shannon;
pub mod ks;
pub mod psi;
mod sample;
pub mod sort;
pub mod wasserstein;
pub mod z;

use serde::Serialize;

pub use bins::Histogram;
pub use choice::{LARGE_REFERENCE, Test, choose};

use crate::error::{AnalysisError, Result};
use crate::frame::{Column, Frame};
use bins::Binned;
use sample::Sample;

/// The share of drifted columns at which the data set counts as drifted.
pub const DATASET_THRESHOLD: f64 = 0.5;

/// One column's drift test.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDrift {
    pub column: String,
    /// How the column was compared: `"numeric"` or `"categorical"`.
    pub kind: &'static str,
    pub test: Test,
    /// D, χ², z, or the distance.
    pub statistic: f64,
    /// For Kolmogorov–Smirnov, chi-square and Z.
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    pub reference_rows: usize,
    pub current_rows: usize,
    pub histogram: Histogram,
}

/// Every column's drift and the data set's.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetDrift {
    pub columns: Vec<ColumnDrift>,
    pub drifted_columns: usize,
    /// drifted_columns / columns.
    pub share: f64,
    pub threshold: f64,
    pub drifted: bool,
}

/// Tests column `name` of the reference against the current data with `test`, or the
/// [`choose`]n one. Errors name the column: an empty column; a column numeric in one data set
/// and not the other; Kolmogorov–Smirnov or Wasserstein on a categorical column; Z on more than
/// two categories; fewer than 5 reference values for Kolmogorov–Smirnov, chi-square or Z.
pub fn column_drift(name: &str, reference: &Column, current: &Column, test: Option<Test>) -> Result<ColumnDrift> {
    let bad = |reason: String| AnalysisError::column(name, reason);
    match (reference.is_numeric(), current.is_numeric()) {
        (true, false) => return Err(bad("is numeric in the reference but not in the current data".into())),
        (false, true) => return Err(bad("is numeric in the current data but not in the reference".into())),
        _ => {}
    }
    let test = test.unwrap_or_else(|| choose(reference, current));
    let as_categories = match reference {
        Column::Categorical { .. } if test.numeric_only() => {
            return Err(bad(format!("is categorical; the {} test needs a numeric column", test.label())));
        }
        Column::Categorical { .. } => true,
        Column::Numeric(v) => match test {
            Test::Ks | Test::Wasserstein => false,
            Test::ChiSquare | Test::Z => true,
            _ => sample::at_most_two_distinct(v),
        },
    };
    let sample = Sample::new(name, reference, current, as_categories)?;
    let (reference_rows, current_rows) = sample.sizes();
    if reference_rows < test.min_reference() {
        return Err(bad(format!(
            "has {reference_rows} values in the reference; the {} test needs at least {}",
            test.label(),
            test.min_reference()
        )));
    }
    let kind = if matches!(sample, Sample::Numeric { .. }) { "numeric" } else { "categorical" };
    let (binned, statistic, p_value) = score(name, test, sample)?;
    let threshold = test.default_threshold();
    let drifted = match p_value {
        Some(p) => p < threshold,
        None => statistic >= threshold,
    };
    Ok(ColumnDrift {
        column: name.to_owned(),
        kind,
        test,
        statistic,
        p_value,
        threshold,
        drifted,
        reference_rows,
        current_rows,
        histogram: binned.chart(),
    })
}

/// The shared bins, the statistic and the p-value of `test` on `sample`.
fn score(name: &str, test: Test, sample: Sample) -> Result<(Binned, f64, Option<f64>)> {
    let binned = match sample {
        Sample::Numeric { reference, current } if test.numeric_only() => {
            let (reference, current) = (sort::sorted(reference), sort::sorted(current));
            let binned = bins::numeric_sorted(&reference, &current);
            return Ok(match test {
                Test::Ks => {
                    let (d, p) = ks::test(&reference, &current);
                    (binned, d, Some(p))
                }
                _ => (binned, wasserstein::normed(&reference, &current), None),
            });
        }
        Sample::Numeric { reference, current } => bins::numeric(&reference, &current),
        Sample::Categorical { labels, reference, current } => Binned { edges: None, labels, reference, current },
    };
    let (r, c) = (&binned.reference, &binned.current);
    let (statistic, p_value) = match test {
        Test::ChiSquare if binned.edges.is_none() => {
            let (s, p) = chi_square::test(r, c);
            (s, Some(p))
        }
        Test::Z if binned.edges.is_none() => {
            if binned.labels.len() > 2 {
                return Err(AnalysisError::column(
                    name,
                    format!(
                        "has {} categories in the reference and current data together; the Z test takes at most 2 \
                         (use chi-square)",
                        binned.labels.len()
                    ),
                ));
            }
            let (z, p) = z::test(r, c);
            (z, Some(p))
        }
        Test::JensenShannon => (jensen_shannon::distance(&bins::shares(r), &bins::shares(c)), None),
        Test::Psi => (psi::index(&bins::shares(r), &bins::shares(c)), None),
        Test::Hellinger => (hellinger::distance(&bins::plain_shares(r), &bins::plain_shares(c)), None),
        _ => {
            return Err(AnalysisError::column(name, format!("cannot be compared by the {} test", test.label())));
        }
    };
    Ok((binned, statistic, p_value))
}

/// Tests `columns` (by default every reference column) of `reference` against `current`; each
/// must be in both. The data set drifts when at least [`DATASET_THRESHOLD`] of them drift.
pub fn dataset_drift(
    reference: &Frame,
    current: &Frame,
    columns: Option<&[String]>,
    test: Option<Test>,
) -> Result<DatasetDrift> {
    let names = columns.unwrap_or(&reference.names);
    if names.is_empty() {
        return Err(AnalysisError::invalid("--columns", "names no column to test"));
    }
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(AnalysisError::invalid("--columns", format!("names column `{name}` twice")));
        }
        let r = find(reference, name).ok_or_else(|| AnalysisError::column(name, "is not in the reference data"))?;
        let c = find(current, name).ok_or_else(|| AnalysisError::column(name, "is not in the current data"))?;
        out.push(column_drift(name, r, c, test)?);
    }
    let drifted_columns = out.iter().filter(|c| c.drifted).count();
    let share = drifted_columns as f64 / out.len() as f64;
    Ok(DatasetDrift {
        columns: out,
        drifted_columns,
        share,
        threshold: DATASET_THRESHOLD,
        drifted: share >= DATASET_THRESHOLD,
    })
}

/// The column `name` of `frame`.
fn find<'a>(frame: &'a Frame, name: &str) -> Option<&'a Column> {
    frame.names.iter().position(|n| n == name).and_then(|i| frame.columns.get(i))
}

#[cfg(test)]
pub(crate) mod tests;
