//! The rows an explainer feeds the model: a row-major `f32` matrix, already prepared as the model
//! reads it (scaled, encoded), with one name per column, checked once so the explainers can index
//! it freely; and a seeded row sample for data too large to explain whole.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index;

use crate::error::{AnalysisError, Result};

/// Maps a value of feature `j` as the model reads it back to the data file's units (undoing the
/// training scaling, say), for the feature values that reports show.
pub type Units<'a> = &'a dyn Fn(usize, f32) -> f64;

/// `rows × names.len()` finite values, row-major, and the features' names.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    x: &'a [f32],
    rows: usize,
    names: &'a [String],
    units: Option<Units<'a>>,
}

impl<'a> Matrix<'a> {
    /// Checks that `x` holds `rows` rows of `names.len()` finite values. Errors name `--data`, or
    /// the feature holding a NaN or infinity (no model output or gradient is meaningful there).
    pub fn new(x: &'a [f32], rows: usize, names: &'a [String]) -> Result<Self> {
        let features = names.len();
        if features == 0 {
            return Err(AnalysisError::invalid("--data", "has no feature columns to explain"));
        }
        if rows == 0 {
            return Err(AnalysisError::invalid("--data", "has no rows to explain"));
        }
        if rows.checked_mul(features) != Some(x.len()) {
            return Err(AnalysisError::invalid(
                "--data",
                format!("{} values are not {rows} rows of {features} features", x.len()),
            ));
        }
        if let Some(at) = x.iter().position(|v| !v.is_finite()) {
            return Err(AnalysisError::column(
                &names[at % features],
                format!("holds {} at row {}; the model needs finite inputs", x[at], at / features + 1),
            ));
        }
        Ok(Self { x, rows, names, units: None })
    }

    /// The same rows, whose feature values reports show through `units`.
    pub fn with_units(self, units: Units<'a>) -> Self {
        Self { units: Some(units), ..self }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn features(&self) -> usize {
        self.names.len()
    }

    pub fn names(&self) -> &'a [String] {
        self.names
    }

    /// All values, row-major.
    pub fn values(&self) -> &'a [f32] {
        self.x
    }

    /// Row `i` (`i < rows`).
    pub fn row(&self, i: usize) -> &'a [f32] {
        let f = self.features();
        &self.x[i * f..(i + 1) * f]
    }

    /// Column `j` (`j < features`), in row order.
    pub fn column(&self, j: usize) -> Vec<f32> {
        self.x.iter().skip(j).step_by(self.features()).copied().collect()
    }

    /// `v`, a value of feature `j` as the model reads it, in the units reports show.
    pub fn shown(&self, j: usize, v: f32) -> f64 {
        match self.units {
            Some(units) => units(j, v),
            None => f64::from(v),
        }
    }

    /// The mean of every column: a baseline row for integrated gradients.
    pub fn column_means(&self) -> Vec<f32> {
        let mut sums = vec![0f64; self.features()];
        for row in self.x.chunks_exact(self.features()) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        sums.into_iter().map(|s| (s / self.rows as f64) as f32).collect()
    }

    /// The index of feature `name`; `field` is the option that named it, for the error.
    pub fn feature(&self, name: &str, field: &str) -> Result<usize> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            AnalysisError::invalid(
                field,
                format!("the model has no feature `{name}` (its features: {})", self.names.join(", ")),
            )
        })
    }

    /// The rows `rows`, in that order, as a new row-major buffer (build a [`Matrix`] on it).
    pub fn select(&self, rows: &[usize]) -> Vec<f32> {
        rows.iter().flat_map(|&i| self.row(i)).copied().collect()
    }
}

/// At most `limit` of `rows` row indices, in increasing order: all of them when there are no more
/// than `limit`, else a uniform sample without replacement drawn with `seed`. Explaining a sample
/// costs a fixed number of model calls however large the data is. `limit` is `--explain-rows`.
pub fn sample_rows(rows: usize, limit: usize, seed: u64) -> Result<Vec<usize>> {
    if limit == 0 {
        return Err(AnalysisError::invalid("--explain-rows", "must be at least 1"));
    }
    if rows <= limit {
        return Ok((0..rows).collect());
    }
    let mut picked = index::sample(&mut StdRng::seed_from_u64(seed), rows, limit).into_vec();
    // Sorted, so that a sample keeps the file's row order and reads it front to back.
    picked.sort_unstable();
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|j| format!("f{j}")).collect()
    }

    #[test]
    fn shapes_and_values_are_checked() {
        let n = names(2);
        let m = Matrix::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, &n).expect("3 × 2");
        assert_eq!((m.rows(), m.features()), (3, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert_eq!(m.column(1), vec![2.0, 4.0, 6.0]);
        // Means (1 + 3 + 5) / 3 and (2 + 4 + 6) / 3.
        assert_eq!(m.column_means(), vec![3.0, 4.0]);
        assert_eq!(m.select(&[2, 0]), vec![5.0, 6.0, 1.0, 2.0]);
        assert_eq!(m.feature("f1", "--explain-feature").expect("f1"), 1);
        let err = m.feature("zz", "--explain-feature").expect_err("missing");
        assert!(err.to_string().starts_with("--explain-feature: the model has no feature `zz`"), "{err}");
        let double = |_: usize, v: f32| 2.0 * f64::from(v);
        assert_eq!(m.with_units(&double).shown(0, 1.5), 3.0);
        assert_eq!(m.shown(0, 1.5), 1.5);

        let err = Matrix::new(&[1.0, 2.0, 3.0], 2, &n).err().expect("ragged");
        assert!(err.to_string().contains("3 values are not 2 rows of 2 features"), "{err}");
        let err = Matrix::new(&[], 0, &n).err().expect("empty");
        assert!(err.to_string().contains("no rows"), "{err}");
        let err = Matrix::new(&[1.0, f32::NAN], 1, &n).err().expect("NaN");
        assert!(err.to_string().starts_with("column `f1`: holds NaN at row 1"), "{err}");
    }

    #[test]
    fn samples_are_sorted_distinct_and_seeded() {
        assert_eq!(sample_rows(4, 10, 0).expect("all"), vec![0, 1, 2, 3]);
        let a = sample_rows(1000, 50, 3).expect("sample");
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[49] < 1000);
        assert_eq!(a, sample_rows(1000, 50, 3).expect("again"));
        assert_ne!(a, sample_rows(1000, 50, 4).expect("other seed"));
        assert!(sample_rows(10, 0, 0).is_err());
    }
}
