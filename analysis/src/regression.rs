//! Regression metrics from cell sums: MAE, RMSE, R², and the mean residual (bias).
//!
//! A row's cell is its target's bin and its residual's bin, both on a log scale around a centre
//! (`bin_of`), so rows in a cell have similar targets and residuals when the bootstrap draws
//! them; the metrics themselves read exact sums.

use crate::cells::{Registry, Summary};

/// Sums per cell: rows, y, y², residual, residual², |residual|.
const STATS: usize = 6;
const HALF_BINS: f64 = 127.0;

/// The cells of a regression task.
#[derive(Clone, Debug)]
pub struct Regression {
    /// Centre and scale of targets and of residuals, fixed before any row is seen (so that the
    /// shards of one file share cells).
    pub target: (f64, f64),
    pub residual: (f64, f64),
    registry: Registry,
}

/// A value's bin: sign and 8 bins per e-fold of `1 + |v - centre| / scale`, at most 127 each way.
pub fn bin_of(v: f64, (centre, scale): (f64, f64)) -> i64 {
    let d = (v - centre) / scale.max(1e-12);
    let b = ((d.abs()).ln_1p() * 8.0).min(HALF_BINS) as i64;
    if d < 0.0 { -b - 1 } else { b }
}

impl Regression {
    pub fn new(target: (f64, f64), residual: (f64, f64)) -> Self {
        Self { target, residual, registry: Registry::default() }
    }

    /// Files a row with prediction `pred` and target `y`, writing its sums into `stats`.
    pub fn row(&mut self, y: f64, pred: f64, stats: &mut [f64]) -> u32 {
        let e = pred - y;
        let key = ((bin_of(y, self.target) + 256) as u64) << 16 | (bin_of(e, self.residual) + 256) as u64;
        stats.copy_from_slice(&[1.0, y, y * y, e, e * e, e.abs()]);
        self.registry.cell(key)
    }

    /// The cells of `keys`, numbered in their order (the cells of merged shards).
    pub fn from_keys(target: (f64, f64), residual: (f64, f64), keys: &[u64]) -> Self {
        let mut r = Self::new(target, residual);
        for &k in keys {
            r.registry.cell(k);
        }
        r
    }

    /// Each cell's key, in cell order.
    pub fn keys(&self) -> &[u64] {
        &self.registry.keys
    }
}

impl Summary for Regression {
    fn stats(&self) -> usize {
        STATS
    }

    fn cells(&self) -> usize {
        self.registry.len()
    }

    fn names(&self) -> Vec<String> {
        ["mae", "rmse", "r2", "bias"].map(String::from).to_vec()
    }

    fn metrics(&self, sums: &[f64]) -> Vec<f64> {
        let mut t = [0.0; STATS];
        for cell in sums.chunks_exact(STATS) {
            for (a, b) in t.iter_mut().zip(cell) {
                *a += b;
            }
        }
        let [n, y, yy, e, ee, abs] = t;
        if n <= 0.0 {
            return vec![f64::NAN; 4];
        }
        let total = yy - y * y / n;
        let r2 = if total > 0.0 { 1.0 - ee / total } else { f64::NAN };
        vec![abs / n, (ee / n).sqrt(), r2, e / n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_computation() {
        // y = 1, 2, 3, 4; predictions 1.5, 2, 2, 5: residuals .5, 0, -1, 1.
        let mut r = Regression::new((2.5, 1.0), (0.0, 1.0));
        let mut sums = Vec::new();
        let mut cells = Vec::new();
        for (y, p) in [(1.0, 1.5), (2.0, 2.0), (3.0, 2.0), (4.0, 5.0)] {
            let mut s = [0.0; STATS];
            cells.push(r.row(y, p, &mut s));
            sums.extend(s);
        }
        assert_eq!(cells, vec![0, 1, 2, 3]);
        let m = r.metrics(&sums);
        assert_eq!(m[0], 2.5 / 4.0);
        assert_eq!(m[1], (2.25f64 / 4.0).sqrt());
        // Total sum of squares about the mean 2.5: 2.25 + .25 + .25 + 2.25 = 5.
        assert!((m[2] - (1.0 - 2.25 / 5.0)).abs() < 1e-12);
        assert_eq!(m[3], 0.5 / 4.0);
    }

    #[test]
    fn bins_are_symmetric_and_monotone() {
        let s = (0.0, 1.0);
        assert_eq!(bin_of(0.0, s), 0);
        assert_eq!(bin_of(-1e-9, s), -1);
        assert!(bin_of(10.0, s) > bin_of(1.0, s));
        assert_eq!(bin_of(1e300, s), 127);
        assert_eq!(bin_of(-1e300, s), -128);
    }
}
