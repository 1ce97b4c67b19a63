//! What `shoal analyze-data FILE` reports: statistics per column of a table, and the variance
//! its numeric columns' principal components explain, to choose a `pca` or `whiten` size.
//!
//! A NaN cell of a numeric column counts as missing, as does an empty cell of a categorical one;
//! the statistics are over the other cells. Quantiles interpolate linearly between order
//! statistics (numpy's and pandas' default), and the standard deviation has divisor n − 1.

use serde::Serialize;

use super::eigen::Eigen;
use super::linalg::{covariance, scale_of};
use super::pca::Shares;
use crate::drift::sort::sorted;
use crate::error::{AnalysisError, Result};
use crate::frame::{Column, Frame};

/// The most frequent values listed per categorical column.
pub const TOP_LEVELS: usize = 10;

/// The principal components whose loadings [`explained_variance`] reports.
pub const LOADED_COMPONENTS: usize = 5;

/// Every column's statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataProfile {
    pub rows: usize,
    pub columns: Vec<ColumnProfile>,
}

/// One column's statistics, tagged `"kind": "numeric"` or `"categorical"`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnProfile {
    Numeric(NumericProfile),
    Categorical(CategoricalProfile),
}

/// A numeric column's statistics; those of no values (or, for `std`, of one) are `None`, as are a
/// mean and standard deviation made infinite by an infinite cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NumericProfile {
    pub column: String,
    /// Cells with a value (not NaN).
    pub count: usize,
    pub missing: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub p25: Option<f64>,
    pub median: Option<f64>,
    pub p75: Option<f64>,
    pub max: Option<f64>,
    /// Distinct values (exact: the values are sorted for the quantiles anyway; −0 and 0 are one).
    pub distinct: usize,
    pub zeros: usize,
}

/// A categorical column's statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CategoricalProfile {
    pub column: String,
    /// Cells that are not empty.
    pub count: usize,
    pub missing: usize,
    /// Distinct non-empty values.
    pub distinct: usize,
    /// The [`TOP_LEVELS`] most frequent values, most frequent first (ties in value order).
    pub top: Vec<ValueCount>,
}

/// A value and the cells holding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    pub value: String,
    pub count: usize,
}

/// The principal components of some numeric columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    pub columns: Vec<String>,
    /// Rows used: those with a value in every column.
    pub rows: usize,
    /// Rows left out for a missing (NaN) value.
    pub skipped_rows: usize,
    /// Whether the columns were standardized first (PCA of the correlation matrix).
    pub standardized: bool,
    /// Descending: the variance along each component.
    pub eigenvalues: Vec<f64>,
    /// Each eigenvalue's share of their sum.
    pub explained_ratio: Vec<f64>,
    pub cumulative_ratio: Vec<f64>,
    /// For the first [`LOADED_COMPONENTS`] components, the unit direction's weight on each
    /// column (in `columns` order), largest-magnitude weight positive.
    pub loadings: Vec<Vec<f64>>,
}

/// Every column's statistics.
pub fn profile(frame: &Frame) -> DataProfile {
    let columns = frame
        .names
        .iter()
        .zip(&frame.columns)
        .map(|(name, col)| match col {
            Column::Numeric(v) => ColumnProfile::Numeric(numeric(name, v)),
            Column::Categorical { codes, levels } => ColumnProfile::Categorical(categorical(name, codes, levels)),
        })
        .collect();
    DataProfile { rows: frame.rows, columns }
}

fn numeric(name: &str, v: &[f64]) -> NumericProfile {
    let s = sorted(v.iter().copied().filter(|x| !x.is_nan()).collect());
    let n = s.len();
    let finite = |x: f64| Some(x).filter(|x| x.is_finite());
    let mean = (n > 0).then(|| s.iter().sum::<f64>() / n as f64);
    let std = mean.filter(|m| n > 1 && m.is_finite()).map(|m| {
        let ss: f64 = s.iter().map(|x| (x - m).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    let quantile = |q: f64| {
        (n > 0).then(|| {
            let pos = q * (n - 1) as f64;
            let (lo, frac) = (pos.floor() as usize, pos.fract());
            if frac == 0.0 { s[lo] } else { s[lo] + frac * (s[lo + 1] - s[lo]) }
        })
    };
    NumericProfile {
        column: name.to_owned(),
        count: n,
        missing: v.len() - n,
        mean: mean.and_then(finite),
        std: std.and_then(finite),
        min: s.first().copied(),
        p25: quantile(0.25),
        median: quantile(0.5),
        p75: quantile(0.75),
        max: s.last().copied(),
        distinct: s.windows(2).filter(|w| w[0] != w[1]).count() + usize::from(n > 0),
        zeros: s.iter().filter(|&&x| x == 0.0).count(),
    }
}

fn categorical(name: &str, codes: &[u32], levels: &[String]) -> CategoricalProfile {
    let mut counts = vec![0usize; levels.len()];
    codes.iter().for_each(|&c| counts[c as usize] += 1);
    let mut used: Vec<(usize, usize)> =
        counts.iter().copied().enumerate().filter(|&(l, n)| n > 0 && !levels[l].is_empty()).collect();
    let missing = codes.len() - used.iter().map(|&(_, n)| n).sum::<usize>();
    let distinct = used.len();
    // Levels are sorted, so a stable sort by count leaves ties in value order.
    used.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let top = used.iter().take(TOP_LEVELS).map(|&(l, count)| ValueCount { value: levels[l].clone(), count }).collect();
    CategoricalProfile { column: name.to_owned(), count: codes.len() - missing, missing, distinct, top }
}

/// The principal components of the numeric `columns` (all numeric columns if `None`), of their
/// correlation matrix when `standardize` (a column constant in the data keeps scale 1, as in the
/// `standardize` transform, and so explains nothing). A categorical column named in `columns` is
/// an error naming it; so is an infinite cell. Rows with a NaN in any chosen column are skipped.
pub fn explained_variance(frame: &Frame, columns: Option<&[String]>, standardize: bool) -> Result<Explained> {
    let names: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => {
            frame.names.iter().zip(&frame.columns).filter(|(_, c)| c.is_numeric()).map(|(n, _)| n.clone()).collect()
        }
    };
    if names.is_empty() {
        return Err(AnalysisError::invalid("--columns", "no numeric column to analyse"));
    }
    let cols = names.iter().map(|n| frame.numeric(n, "--columns")).collect::<Result<Vec<_>>>()?;
    if let Some((n, _)) = names.iter().zip(&cols).find(|(_, c)| c.iter().any(|x| x.is_infinite())) {
        return Err(AnalysisError::column(n, "holds an infinite value; principal components need finite numbers"));
    }
    let d = names.len();
    let mut x = Vec::with_capacity(frame.rows * d);
    for r in 0..frame.rows {
        if cols.iter().all(|c| !c[r].is_nan()) {
            x.extend(cols.iter().map(|c| c[r]));
        }
    }
    let rows = x.len() / d;
    if rows < 2 {
        return Err(AnalysisError::invalid(
            "data",
            format!("has {rows} rows with a value in every analysed column; at least 2 are needed"),
        ));
    }
    let m = covariance(&x, rows, d)?;
    let mut cov = m.covariance;
    if standardize {
        let s: Vec<f64> = (0..d).map(|i| scale_of(cov[i * d + i], m.mean[i])).collect();
        (0..d * d).for_each(|k| cov[k] /= s[k / d] * s[k % d]);
    }
    let e = Eigen::symmetric(&cov, d)?;
    let Shares { values: eigenvalues, ratio: explained_ratio, cumulative: cumulative_ratio, .. } =
        Shares::of(&e.values);
    Ok(Explained {
        columns: names,
        rows,
        skipped_rows: frame.rows - rows,
        standardized: standardize,
        eigenvalues,
        explained_ratio,
        cumulative_ratio,
        loadings: (0..d.min(LOADED_COMPONENTS)).map(|j| e.vector(j)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cols: Vec<(&str, Column)>) -> Frame {
        let rows = cols[0].1.len();
        let (names, columns) = cols.into_iter().map(|(n, c)| (n.to_owned(), c)).unzip();
        Frame { names, columns, rows }
    }

    #[test]
    fn statistics_of_a_hand_checked_table() {
        let f = frame(vec![
            ("x", Column::Numeric(vec![4.0, 0.0, f64::NAN, 2.0, 0.0, 9.0])),
            ("g", Column::categorical(&["b", "a", "", "b", "c", "b"])),
        ]);
        let p = profile(&f);
        // x's values sorted: 0, 0, 2, 4, 9. Mean 15/5 = 3; squared deviations 9, 9, 1, 1, 36
        // sum 56, std √(56/4) = √14. Quantile positions q·4: p25 at 1 → 0, median at 2 → 2,
        // p75 at 3 → 4.
        let ColumnProfile::Numeric(x) = &p.columns[0] else { panic!("x is numeric") };
        assert_eq!((x.count, x.missing, x.distinct, x.zeros), (5, 1, 4, 2));
        assert_eq!(
            (x.mean, x.min, x.p25, x.median, x.p75, x.max),
            (Some(3.0), Some(0.0), Some(0.0), Some(2.0), Some(4.0), Some(9.0))
        );
        assert!((x.std.expect("std") - 14f64.sqrt()).abs() < 1e-15);
        // g: b three times, a and c once each (a first on the tie), one empty cell.
        let ColumnProfile::Categorical(g) = &p.columns[1] else { panic!("g is categorical") };
        assert_eq!((g.count, g.missing, g.distinct), (5, 1, 3));
        let top: Vec<(&str, usize)> = g.top.iter().map(|v| (v.value.as_str(), v.count)).collect();
        assert_eq!(top, [("b", 3), ("a", 1), ("c", 1)]);
        // Interpolated quantiles: 1, 2, 3, 4 has p25 at position 0.75 → 1.75.
        let q = numeric("q", &[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((q.p25, q.median, q.p75), (Some(1.75), Some(2.5), Some(3.25)));
        let empty = numeric("e", &[f64::NAN]);
        assert_eq!((empty.count, empty.mean, empty.std, empty.median, empty.distinct), (0, None, None, None, 0));
        let json = serde_json::to_value(&p.columns[1]).expect("json");
        assert_eq!(json["kind"], "categorical");
        assert_eq!(json["top"][0]["value"], "b");
    }

    #[test]
    fn explained_variance_of_two_correlated_columns() {
        // y = 2x exactly, z independent of both: the covariance [[v, 2v, 0], [2v, 4v, 0], [0, 0, w]]
        // with v = var(x) = 5/3 and w = var(z) = 1/3 has eigenvalues 5v, w, 0. Standardized, the
        // correlation [[1, 1, 0], [1, 1, 0], [0, 0, 1]] has 2, 1, 0 and first direction (1, 1, 0)/√2.
        let x = [1.0, 2.0, 3.0, 4.0];
        let f = frame(vec![
            ("x", Column::Numeric(x.to_vec())),
            ("y", Column::Numeric(x.iter().map(|v| 2.0 * v).collect())),
            ("z", Column::Numeric(vec![0.0, 1.0, 1.0, 0.0])),
            ("g", Column::categorical(&["a", "b", "a", "b"])),
        ]);
        let e = explained_variance(&f, None, false).expect("raw");
        assert_eq!(e.columns, ["x", "y", "z"]);
        let (v, w) = (5.0 / 3.0, 1.0 / 3.0);
        for (got, want) in e.eigenvalues.iter().zip([5.0 * v, w, 0.0]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let e = explained_variance(&f, None, true).expect("standardized");
        for (got, want) in e.cumulative_ratio.iter().zip([2.0 / 3.0, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(e.loadings[0].iter().zip([h, h, 0.0]).all(|(a, b)| (a - b).abs() < 1e-12), "{:?}", e.loadings[0]);
        assert_eq!(e.loadings.len(), 3);
        let err = explained_variance(&f, Some(&["x".into(), "g".into()]), true).expect_err("categorical");
        assert!(err.to_string().starts_with("column `g`: must hold numbers"), "{err}");
        // The f64 mean of three 0.1s is an ulp above 0.1: the constant column must still count as
        // constant (scale 1, no variance), not be scaled up to a column of unit variance.
        let c = frame(vec![("a", Column::Numeric(vec![1.0, 2.0, 4.0])), ("c", Column::Numeric(vec![0.1; 3]))]);
        let e = explained_variance(&c, None, true).expect("constant column");
        assert!((e.eigenvalues[0] - 1.0).abs() < 1e-12 && e.eigenvalues[1] < 1e-12, "{:?}", e.eigenvalues);
        // A NaN row is skipped, not an error.
        let g =
            frame(vec![("a", Column::Numeric(vec![1.0, f64::NAN, 3.0])), ("b", Column::Numeric(vec![1.0, 5.0, 2.0]))]);
        let e = explained_variance(&g, None, false).expect("skips NaN");
        assert_eq!((e.rows, e.skipped_rows), (2, 1));
    }
}
