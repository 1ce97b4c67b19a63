//! Permutation feature importance: how much a model's score on labelled rows worsens when one
//! feature's column is shuffled across the rows, which breaks that feature's relation to the
//! label and to the other features while keeping its distribution. The model is never retrained;
//! the caller's `score` closure runs it on a whole matrix and computes the metric (accuracy, loss,
//! RMSE) against labels it holds, which stay with their rows.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::matrix::Matrix;
use super::stats::mean_std;
use crate::error::AnalysisError;

/// Most shuffles of one feature.
pub const MAX_REPEATS: usize = 1000;

/// One feature's importance over the repeats: the mean drop in score, its sample standard
/// deviation, and the normal 95% interval of the mean, `importance ± 1.96 · std / √repeats`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Importance {
    pub feature: String,
    pub importance: f64,
    pub std: f64,
    pub low: f64,
    pub high: f64,
}

/// Every feature's importance, most important first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PermutationImportance {
    /// The score on the rows as given, which every drop is measured from.
    pub score: f64,
    pub higher_is_better: bool,
    pub repeats: usize,
    pub seed: u64,
    pub importances: Vec<Importance>,
}

/// The seed of feature `j`'s shuffles: each feature's draws depend only on `seed` and its index,
/// so explaining a subset of the features gives them the same shuffles.
fn feature_seed(seed: u64, j: usize) -> u64 {
    seed ^ (j as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Shuffles each feature of `data` `repeats` times (Fisher–Yates over the rows) and scores the
/// model on every shuffled matrix with `score`. A feature's importance in one repeat is the drop
/// in score, `original − shuffled` when `higher_is_better`, else `shuffled − original`: positive
/// when the model relies on the feature, about zero when it ignores it (exactly zero when the
/// score does not read that column). Features are sorted by importance, highest first (NaN last).
///
/// `score` is called `1 + features · repeats` times, each time on all rows; for large data pass
/// a [`sample_rows`](super::sample_rows) subset. Errors: `repeats` outside 1 to [`MAX_REPEATS`]
/// (`--explain-repeats`), and whatever `score` returns.
pub fn permutation_importance<E: From<AnalysisError>>(
    data: &Matrix,
    mut score: impl FnMut(&[f32]) -> Result<f64, E>,
    higher_is_better: bool,
    repeats: usize,
    seed: u64,
) -> Result<PermutationImportance, E> {
    if !(1..=MAX_REPEATS).contains(&repeats) {
        return Err(
            AnalysisError::invalid("--explain-repeats", format!("must be 1 to {MAX_REPEATS}, not {repeats}")).into()
        );
    }
    let (rows, features) = (data.rows(), data.features());
    let mut work = data.values().to_vec();
    let original = score(&work)?;
    let mut importances = Vec::with_capacity(features);
    let mut drops = Vec::with_capacity(repeats);
    for (j, feature) in data.names().iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(feature_seed(seed, j));
        let mut column = data.column(j);
        drops.clear();
        for _ in 0..repeats {
            column.shuffle(&mut rng);
            for (i, &v) in column.iter().enumerate() {
                work[i * features + j] = v;
            }
            let shuffled = score(&work)?;
            drops.push(if higher_is_better { original - shuffled } else { shuffled - original });
        }
        // Put the column back before the next feature is shuffled.
        for i in 0..rows {
            work[i * features + j] = data.row(i)[j];
        }
        let (importance, std) = mean_std(&drops);
        let half = 1.96 * std / (repeats as f64).sqrt();
        importances.push(Importance {
            feature: feature.clone(),
            importance,
            std,
            low: importance - half,
            high: importance + half,
        });
    }
    // A stable sort, so equal importances keep the features' order; NaN sorts last.
    importances.sort_by(|a, b| match (a.importance.is_nan(), b.importance.is_nan()) {
        (false, false) => b.importance.total_cmp(&a.importance),
        (x, y) => x.cmp(&y),
    });
    Ok(PermutationImportance { score: original, higher_is_better, repeats, seed, importances })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 rows of (x0, x1) on a grid with x0 = ±(1 + i/200) and x1 independent of it; the label
    /// is the sign of x0, and the "model" predicts that sign, so it is always right.
    fn data() -> (Vec<f32>, Vec<bool>, Vec<String>) {
        let mut x = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200 {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            x.extend([sign * (1.0 + i as f32 / 200.0), ((i * 37) % 11) as f32]);
            labels.push(sign > 0.0);
        }
        (x, labels, vec!["x0".into(), "x1".into()])
    }

    fn accuracy(x: &[f32], labels: &[bool]) -> f64 {
        let right = x.chunks_exact(2).zip(labels).filter(|(row, y)| (row[0] > 0.0) == **y).count();
        right as f64 / labels.len() as f64
    }

    #[test]
    fn the_feature_the_model_reads_matters_and_the_other_does_not() {
        let (x, labels, names) = data();
        let m = Matrix::new(&x, 200, &names).expect("matrix");
        let mut calls = 0;
        let out = permutation_importance::<AnalysisError>(
            &m,
            |x| {
                calls += 1;
                Ok(accuracy(x, &labels))
            },
            true,
            10,
            7,
        )
        .expect("importance");
        assert_eq!(calls, 1 + 2 * 10);
        assert_eq!(out.score, 1.0);
        let [first, second] = &out.importances[..] else { panic!("two features: {out:?}") };
        // Shuffling the sign of x0 leaves each row right with probability about 1/2: a drop near
        // 1 − 1/2; x1 is never read, so its drop is exactly 0 in every repeat.
        assert_eq!(first.feature, "x0");
        assert!((first.importance - 0.5).abs() < 0.1, "{first:?}");
        assert!(first.std > 0.0 && first.low < first.importance && first.importance < first.high);
        let half = 1.96 * first.std / 10f64.sqrt();
        assert!((first.high - first.importance - half).abs() < 1e-12);
        assert_eq!((second.feature.as_str(), second.importance, second.std), ("x1", 0.0, 0.0));
        assert_eq!((second.low, second.high), (0.0, 0.0));

        // The same seed gives the same shuffles; a loss is turned around (lower is better).
        let again =
            permutation_importance::<AnalysisError>(&m, |x| Ok(accuracy(x, &labels)), true, 10, 7).expect("again");
        assert_eq!(again, out);
        let loss = permutation_importance::<AnalysisError>(&m, |x| Ok(1.0 - accuracy(x, &labels)), false, 10, 7)
            .expect("loss");
        assert!((loss.importances[0].importance - first.importance).abs() < 1e-12);
    }

    #[test]
    fn repeats_are_checked_and_score_errors_pass_through() {
        let (x, _, names) = data();
        let m = Matrix::new(&x, 200, &names).expect("matrix");
        let err = permutation_importance::<AnalysisError>(&m, |_| Ok(0.0), true, 0, 0).expect_err("0 repeats");
        assert!(err.to_string().starts_with("--explain-repeats: must be 1 to 1000"), "{err}");
        let err = permutation_importance(&m, |_| Err(AnalysisError::invalid("--artifact", "gone")), true, 1, 0)
            .expect_err("score fails");
        assert_eq!(err.to_string(), "--artifact: gone");
    }
}
