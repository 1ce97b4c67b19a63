//! Sensitivity curves (partial dependence): the model's prediction as one feature sweeps a grid
//! across its range while every row keeps its other features. At each grid value every row is
//! predicted with that feature set to the value; the curve is the mean over the rows (partial
//! dependence), with the 10th and 90th percentiles of the rows' predictions (the spread of the
//! individual curves) around it.

use serde::Serialize;

use super::matrix::Matrix;
use super::stats::quantile;
use crate::error::AnalysisError;

/// Most grid values per feature.
pub const MAX_POINTS: usize = 1000;

/// Where a feature's grid values lie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grid {
    /// Quantiles 0.01 to 0.99 of the column, evenly spaced in probability: dense where the data
    /// is, and not stretched by outliers.
    #[default]
    Quantiles,
    /// From the column's minimum to its maximum in equal steps.
    Range,
}

/// How curves are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SensitivityConfig {
    /// Grid values per feature before equal ones merge (`--explain-points`).
    pub points: usize,
    pub grid: Grid,
    /// Rows per `predict` call (`--explain-batch-rows`).
    pub batch_rows: usize,
}

impl Default for SensitivityConfig {
    fn default() -> Self {
        Self { points: 20, grid: Grid::Quantiles, batch_rows: 4096 }
    }
}

impl SensitivityConfig {
    pub fn validate(&self) -> Result<(), AnalysisError> {
        if !(2..=MAX_POINTS).contains(&self.points) {
            return Err(AnalysisError::invalid("--explain-points", format!("must be 2 to {MAX_POINTS}")));
        }
        if self.batch_rows == 0 {
            return Err(AnalysisError::invalid("--explain-batch-rows", "must be at least 1"));
        }
        Ok(())
    }
}

/// One feature's curve: at `values[k]`, the rows' mean prediction `mean[k]`, and its 10th and
/// 90th percentiles over the rows `low[k]` and `high[k]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Curve {
    pub feature: String,
    /// Increasing, in the units [`Matrix::shown`] gives.
    pub values: Vec<f64>,
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

/// The grid of one column: `config.points` values, equal ones merged. Quantiles are taken by
/// nearest rank, so that they are values the column holds: a 0/1 column keeps 0 and 1, never a
/// value between that the model has not seen.
fn grid(column: &[f32], config: &SensitivityConfig) -> Vec<f32> {
    let mut sorted = column.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let last = (config.points - 1) as f64;
    let (lo, hi) = (f64::from(sorted[0]), f64::from(sorted[sorted.len() - 1]));
    let mut out: Vec<f32> = (0..config.points)
        .map(|k| {
            let p = k as f64 / last;
            match config.grid {
                Grid::Quantiles => {
                    let rank = ((0.01 + 0.98 * p) * (sorted.len() - 1) as f64).round() as usize;
                    sorted[rank.min(sorted.len() - 1)]
                }
                Grid::Range => (lo + (hi - lo) * p) as f32,
            }
        })
        .collect();
    out.dedup();
    out
}

/// The curves of `features` (indices into `data`'s columns), with `predict(rows, n) → n
/// predictions` (a regression value, or the probability of the class of interest).
///
/// Each feature costs `points × rows` predicted rows, so for large data pass a
/// [`sample_rows`](super::sample_rows) subset. Grid values are shown in `data`'s units
/// ([`Matrix::with_units`]). Errors: a bad `config`; no feature, or one out of range
/// (`--explain-features`); a closure answering with the wrong number of predictions (named
/// `predict`); and whatever `predict` returns.
pub fn sensitivity<E: From<AnalysisError>>(
    data: &Matrix,
    features: &[usize],
    mut predict: impl FnMut(&[f32], usize) -> Result<Vec<f64>, E>,
    config: &SensitivityConfig,
) -> Result<Vec<Curve>, E> {
    config.validate()?;
    let width = data.features();
    if features.is_empty() {
        return Err(AnalysisError::invalid("--explain-features", "names no feature to draw").into());
    }
    if let Some(bad) = features.iter().find(|&&j| j >= width) {
        return Err(AnalysisError::invalid(
            "--explain-features",
            format!("feature {bad} is not one of the model's {width}"),
        )
        .into());
    }
    let rows = data.rows();
    let mut curves = Vec::with_capacity(features.len());
    let mut buf = Vec::new();
    for &j in features {
        let values = grid(&data.column(j), config);
        // Expanded row e is row e % rows with feature j at values[e / rows].
        let total = values.len() * rows;
        let mut predictions = Vec::with_capacity(total);
        let mut from = 0;
        while from < total {
            let n = config.batch_rows.min(total - from);
            buf.clear();
            for e in from..from + n {
                let at = buf.len();
                buf.extend_from_slice(data.row(e % rows));
                buf[at + j] = values[e / rows];
            }
            let got = predict(&buf, n)?;
            if got.len() != n {
                return Err(AnalysisError::invalid(
                    "predict",
                    format!("answered {} predictions for {n} rows", got.len()),
                )
                .into());
            }
            predictions.extend(got);
            from += n;
        }
        let mut curve = Curve {
            feature: data.names()[j].clone(),
            values: values.iter().map(|&v| data.shown(j, v)).collect(),
            mean: Vec::with_capacity(values.len()),
            low: Vec::with_capacity(values.len()),
            high: Vec::with_capacity(values.len()),
        };
        for at in predictions.chunks_exact_mut(rows) {
            curve.mean.push(at.iter().sum::<f64>() / rows as f64);
            at.sort_unstable_by(f64::total_cmp);
            curve.low.push(quantile(at, 0.1));
            curve.high.push(quantile(at, 0.9));
        }
        curves.push(curve);
    }
    Ok(curves)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 101 rows: x0 = 0, 0.1, ..., 10 and x1 = (7i mod 101) / 10, a shuffle of the same values.
    fn data() -> (Vec<f32>, Vec<String>) {
        let x = (0..101).flat_map(|i| [i as f32 / 10.0, ((7 * i) % 101) as f32 / 10.0]).collect();
        (x, vec!["x0".into(), "x1".into()])
    }

    fn linear(x: &[f32], _: usize) -> Result<Vec<f64>, AnalysisError> {
        Ok(x.chunks_exact(2).map(|r| 2.0 * f64::from(r[0]) + f64::from(r[1])).collect())
    }

    #[test]
    fn a_linear_model_gives_a_line_of_its_slope() {
        let (x, names) = data();
        let m = Matrix::new(&x, 101, &names).expect("matrix");
        let config = SensitivityConfig { points: 11, grid: Grid::Range, batch_rows: 300 };
        let curves = sensitivity(&m, &[0, 1], linear, &config).expect("curves");
        let c = &curves[0];
        assert_eq!(c.feature, "x0");
        // Range 0..10 in 11 steps; f = 2 x0 + x1 with x1 held, so the mean at v is
        // 2v + mean(x1) = 2v + 5, and the percentiles are 2v + those of x1 (1 and 9).
        assert_eq!(c.values.len(), 11);
        for k in 0..11 {
            let v = c.values[k];
            assert!((v - k as f64).abs() < 1e-6, "{c:?}");
            assert!((c.mean[k] - (2.0 * v + 5.0)).abs() < 1e-5, "{c:?}");
            assert!((c.low[k] - (2.0 * v + 1.0)).abs() < 1e-5 && (c.high[k] - (2.0 * v + 9.0)).abs() < 1e-5);
        }
        for k in 1..11 {
            let slope = (c.mean[k] - c.mean[k - 1]) / (c.values[k] - c.values[k - 1]);
            assert!((slope - 2.0).abs() < 1e-5, "{slope}");
        }
        // Over x1 the slope is 1 and the level 2 · mean(x0) = 10.
        let d = &curves[1];
        assert!((d.mean[0] - (d.values[0] + 10.0)).abs() < 1e-5, "{d:?}");
        assert!((d.mean[10] - d.mean[0] - (d.values[10] - d.values[0])).abs() < 1e-5);
    }

    #[test]
    fn quantile_grids_merge_ties_and_show_units() {
        let (x, names) = data();
        let m = Matrix::new(&x, 101, &names).expect("matrix");
        // Quantiles .01 and .99 of 0..=10 by tenths: 0.1 and 9.9.
        let c = &sensitivity(&m, &[0], linear, &SensitivityConfig::default()).expect("curves")[0];
        assert_eq!(c.values.len(), 20);
        assert!((c.values[0] - 0.1).abs() < 1e-6 && (c.values[19] - 9.9).abs() < 1e-6, "{c:?}");
        // A 0/1 column keeps two grid values; values are shown as the units closure maps them.
        let binary: Vec<f32> = (0..40).flat_map(|i| [(i % 2) as f32, 1.0]).collect();
        let plus = |_: usize, v: f32| f64::from(v) + 100.0;
        let m = Matrix::new(&binary, 40, &names).expect("binary").with_units(&plus);
        let c = &sensitivity(&m, &[0], linear, &SensitivityConfig::default()).expect("binary curve")[0];
        assert_eq!(c.values, vec![100.0, 101.0]);
        assert_eq!(c.mean, vec![1.0, 3.0]);
    }

    #[test]
    fn bad_options_and_answers_are_refused() {
        let (x, names) = data();
        let m = Matrix::new(&x, 101, &names).expect("matrix");
        let base = SensitivityConfig::default();
        let err = sensitivity(&m, &[0], linear, &SensitivityConfig { points: 1, ..base }).expect_err("1 point");
        assert!(err.to_string().starts_with("--explain-points"), "{err}");
        let err = sensitivity(&m, &[2], linear, &base).expect_err("no feature 2");
        assert!(err.to_string().starts_with("--explain-features: feature 2"), "{err}");
        assert!(sensitivity(&m, &[], linear, &base).is_err());
        let short = |_: &[f32], n: usize| Ok::<_, AnalysisError>(vec![0.0; n - 1]);
        let err = sensitivity(&m, &[0], short, &base).expect_err("short");
        assert!(err.to_string().starts_with("predict: answered"), "{err}");
    }
}
