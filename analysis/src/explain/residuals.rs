//! Residual analysis for regression: residual = target − prediction, and against each feature its
//! correlation (Pearson's for a linear trend, Spearman's for any monotone one) and its mean within
//! quantile buckets of the feature. A model that has learnt all a feature tells leaves residuals
//! flat across it; a trend or a bowed bucket profile shows what is left to learn (or a shift in
//! that part of the data).

use serde::Serialize;

use super::matrix::Matrix;
use super::stats::{mean_std, pearson, ranks};
use crate::error::{AnalysisError, Result};

/// Most buckets per feature.
pub const MAX_BUCKETS: usize = 100;

/// The rows of one bucket: feature values from `low` to `high` (inclusive, in the units
/// [`Matrix::shown`] gives) and their mean residual.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResidualBucket {
    pub low: f64,
    pub high: f64,
    pub rows: usize,
    pub mean_residual: f64,
}

/// The residuals against one feature. A correlation is NaN (null in JSON) when the feature or
/// the residuals are constant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureResiduals {
    pub feature: String,
    pub pearson: f64,
    pub spearman: f64,
    /// In increasing feature values; their rows add up to all rows.
    pub buckets: Vec<ResidualBucket>,
}

/// The residuals overall and against every feature.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResidualAnalysis {
    pub rows: usize,
    /// Mean residual: the model's bias, with the sign of target − prediction.
    pub mean: f64,
    /// Sample standard deviation of the residuals.
    pub std: f64,
    pub per_feature: Vec<FeatureResiduals>,
}

/// The residuals `targets − predictions` (one of each per row of `data`) against every feature,
/// each feature cut into at most `buckets` buckets of about equal rows by its sorted values
/// (rows of equal value stay in one bucket, so a feature of few values has fewer buckets).
/// Errors: lengths that differ from the rows, non-finite targets (`--label-column`) or
/// predictions (`predictions`), and `buckets` outside 1 to [`MAX_BUCKETS`] (`--explain-buckets`).
pub fn residuals(data: &Matrix, targets: &[f64], predictions: &[f64], buckets: usize) -> Result<ResidualAnalysis> {
    let rows = data.rows();
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(AnalysisError::invalid("--explain-buckets", format!("must be 1 to {MAX_BUCKETS}")));
    }
    for (field, v) in [("--label-column", targets), ("predictions", predictions)] {
        if v.len() != rows {
            return Err(AnalysisError::invalid(field, format!("has {} values for {rows} rows", v.len())));
        }
        if let Some(at) = v.iter().position(|x| !x.is_finite()) {
            return Err(AnalysisError::invalid(field, format!("row {} holds {}, not a finite number", at + 1, v[at])));
        }
    }
    let residual: Vec<f64> = targets.iter().zip(predictions).map(|(y, p)| y - p).collect();
    let (mean, std) = mean_std(&residual);
    let residual_ranks = ranks(&residual);
    let per_feature = data
        .names()
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let column: Vec<f64> = data.column(j).into_iter().map(f64::from).collect();
            FeatureResiduals {
                feature: name.clone(),
                pearson: pearson(&column, &residual),
                spearman: pearson(&ranks(&column), &residual_ranks),
                buckets: cut(data, j, &column, &residual, buckets),
            }
        })
        .collect();
    Ok(ResidualAnalysis { rows, mean, std, per_feature })
}

/// Feature `j`'s rows (values `column`) in at most `buckets` runs of its sorted order, each ending
/// where a tie run ends, with their mean residual.
fn cut(data: &Matrix, j: usize, column: &[f64], residual: &[f64], buckets: usize) -> Vec<ResidualBucket> {
    let n = column.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| column[a].total_cmp(&column[b]));
    let mut out = Vec::with_capacity(buckets);
    let mut start = 0;
    for b in 1..=buckets {
        let mut end = (b * n).div_ceil(buckets).max(start);
        while end < n && end > 0 && column[order[end]] == column[order[end - 1]] {
            end += 1;
        }
        if end <= start {
            continue;
        }
        let members = &order[start..end];
        let sum: f64 = members.iter().map(|&i| residual[i]).sum();
        // The value as the model read it, shown in the caller's units.
        let shown = |i: usize| data.shown(j, data.row(i)[j]);
        out.push(ResidualBucket {
            low: shown(members[0]),
            high: shown(members[members.len() - 1]),
            rows: members.len(),
            mean_residual: sum / members.len() as f64,
        });
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations_and_buckets_match_a_hand_computation() {
        // Features x = 1..=6 and c = 3 (constant); targets 2, 4, 5, 4, 5, 7 and predictions
        // 1.5, 3, 4.5, 4.5, 6, 6.5 leave residuals r = .5, 1, .5, -.5, -1, .5 (mean 1/6).
        // Deviations of x: -2.5, -1.5, -.5, .5, 1.5, 2.5 (squares 17.5); of r: 1/3, 5/6, 1/3,
        // -2/3, -7/6, 1/3 (squares 17/6). Σ dx·dr = -5/6 - 5/4 - 1/6 - 1/3 - 7/4 + 5/6 = -3.5,
        // so Pearson = -3.5 / √(17.5 · 17/6) = -0.49705.
        let names = vec!["x".to_owned(), "c".to_owned()];
        let x: Vec<f32> = (1..=6).flat_map(|i| [i as f32, 3.0]).collect();
        let m = Matrix::new(&x, 6, &names).expect("matrix");
        let targets = [2.0, 4.0, 5.0, 4.0, 5.0, 7.0];
        let predictions = [1.5, 3.0, 4.5, 4.5, 6.0, 6.5];
        let r = residuals(&m, &targets, &predictions, 3).expect("residuals");
        assert_eq!(r.rows, 6);
        assert!((r.mean - 1.0 / 6.0).abs() < 1e-12);
        assert!((r.std - (17.0f64 / 6.0 / 5.0).sqrt()).abs() < 1e-12);
        let fx = &r.per_feature[0];
        assert!((fx.pearson - -3.5 / (17.5f64 * 17.0 / 6.0).sqrt()).abs() < 1e-12, "{fx:?}");
        assert!((fx.pearson - -0.497_05).abs() < 1e-5);
        // Ranks of r: .5 ×3 → 4, 1 → 6, -.5 → 2, -1 → 1: (4, 6, 4, 2, 1, 4) against 1..=6.
        let want = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[4.0, 6.0, 4.0, 2.0, 1.0, 4.0]);
        assert!((fx.spearman - want).abs() < 1e-12);
        // Three buckets of two rows: x in [1, 2] mean .75, [3, 4] mean 0, [5, 6] mean -.25.
        let got: Vec<_> = fx.buckets.iter().map(|b| (b.low, b.high, b.rows, b.mean_residual)).collect();
        assert_eq!(got, vec![(1.0, 2.0, 2, 0.75), (3.0, 4.0, 2, 0.0), (5.0, 6.0, 2, -0.25)]);
        // The constant feature: no correlation, one bucket of every row.
        let fc = &r.per_feature[1];
        assert!(fc.pearson.is_nan() && fc.spearman.is_nan());
        assert_eq!(fc.buckets.len(), 1);
        assert_eq!((fc.buckets[0].rows, fc.buckets[0].low), (6, 3.0));
    }

    #[test]
    fn buckets_keep_ties_together_and_add_up() {
        // 103 rows of x = i mod 7 (ties everywhere) into 10 buckets.
        let names = vec!["x".to_owned()];
        let x: Vec<f32> = (0..103).map(|i| (i % 7) as f32).collect();
        let m = Matrix::new(&x, 103, &names).expect("matrix");
        let y: Vec<f64> = (0..103).map(f64::from).collect();
        let r = residuals(&m, &y, &vec![0.0; 103], 10).expect("residuals");
        let b = &r.per_feature[0].buckets;
        assert_eq!(b.iter().map(|b| b.rows).sum::<usize>(), 103);
        assert!(b.len() <= 7 && b.iter().all(|b| b.low == b.high), "{b:?}");
        assert!(b.windows(2).all(|w| w[0].high < w[1].low));
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let names = vec!["x".to_owned()];
        let x = [1.0f32, 2.0];
        let m = Matrix::new(&x, 2, &names).expect("matrix");
        let err = residuals(&m, &[1.0], &[1.0, 2.0], 4).expect_err("short targets");
        assert!(err.to_string().starts_with("--label-column: has 1 values for 2 rows"), "{err}");
        let err = residuals(&m, &[1.0, 2.0], &[1.0, f64::NAN], 4).expect_err("NaN prediction");
        assert!(err.to_string().starts_with("predictions: row 2 holds NaN"), "{err}");
        let err = residuals(&m, &[1.0, 2.0], &[1.0, 2.0], 0).expect_err("0 buckets");
        assert!(err.to_string().starts_with("--explain-buckets"), "{err}");
    }
}
