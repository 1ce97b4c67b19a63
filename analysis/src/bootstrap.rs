//! Bootstrap confidence intervals, drawn on cells: resampling n rows with replacement gives each
//! row a count that is close to Poisson(1) and independent of the others (the Poisson bootstrap),
//! so a cell of n rows gets Poisson(n) copies and its sums scale with them. One resample costs
//! one draw per cell instead of one per row; a slice and the rest of the data are resampled
//! together, so differences between them get intervals too.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson};
use serde::Serialize;

use crate::cells::{Grouped, Summary};

/// A metric's value and its bootstrap 95% interval (percentiles 2.5 and 97.5).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// True when the interval lies wholly above or below zero.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// Every resample's metrics for every group, and for the rest of the data beside each group.
pub struct Draws {
    resamples: usize,
    groups: usize,
    metrics: usize,
    /// `resamples × groups × metrics`.
    values: Vec<f64>,
    rest: Vec<f64>,
}

/// Draws `resamples` bootstrap resamples of every group of `grouped`.
pub fn resample(summary: &dyn Summary, grouped: &Grouped, resamples: usize, seed: u64) -> Draws {
    let (cells, stats) = (grouped.cells, grouped.stats);
    let metrics = summary.names().len();
    let mut rng = StdRng::seed_from_u64(seed);
    // One distribution per occupied cell, built once.
    let occupied: Vec<(usize, Poisson<f64>)> = (0..grouped.groups * cells)
        .filter_map(|gc| {
            let n = grouped.sums[gc * stats];
            (n > 0.0).then(|| Poisson::new(n).ok().map(|p| (gc, p))).flatten()
        })
        .collect();
    let mut drawn = vec![0.0; grouped.sums.len()];
    let mut values = Vec::with_capacity(resamples * grouped.groups * metrics);
    let mut rest = Vec::with_capacity(values.capacity());
    for _ in 0..resamples {
        drawn.fill(0.0);
        for (gc, poisson) in &occupied {
            let at = gc * stats;
            let scale = poisson.sample(&mut rng) / grouped.sums[at];
            for k in 0..stats {
                drawn[at + k] = grouped.sums[at + k] * scale;
            }
        }
        let draw = Grouped { sums: std::mem::take(&mut drawn), ..grouped.clone_shape() };
        let total = draw.total();
        for g in 0..grouped.groups {
            values.extend(summary.metrics(draw.group(g)));
            if grouped.groups > 1 {
                rest.extend(summary.metrics(&crate::cells::minus(&total, draw.group(g))));
            }
        }
        drawn = draw.sums;
    }
    Draws { resamples, groups: grouped.groups, metrics, values, rest }
}

/// Percentiles 2.5 and 97.5 of the finite values (NaN when none is).
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    (at(0.025), at(0.975))
}

impl Draws {
    fn at(&self, of: &[f64], b: usize, g: usize, m: usize) -> f64 {
        of[(b * self.groups + g) * self.metrics + m]
    }

    /// Metric `m` of group `g`, `value` being its estimate on the data itself.
    pub fn interval(&self, g: usize, m: usize, value: f64) -> Interval {
        let (low, high) = percentiles((0..self.resamples).map(|b| self.at(&self.values, b, g, m)).collect());
        Interval { value, low, high }
    }

    /// Group `g` minus the rest of the data, for metric `m` (`value` on the data itself).
    pub fn against_rest(&self, g: usize, m: usize, value: f64) -> Interval {
        let d = (0..self.resamples).map(|b| self.at(&self.values, b, g, m) - self.at(&self.rest, b, g, m));
        let (low, high) = percentiles(d.collect());
        Interval { value, low, high }
    }

    /// Group `g` minus group `base`, for metric `m` (`value` on the data itself).
    pub fn against_group(&self, g: usize, base: usize, m: usize, value: f64) -> Interval {
        let d = (0..self.resamples).map(|b| self.at(&self.values, b, g, m) - self.at(&self.values, b, base, m));
        let (low, high) = percentiles(d.collect());
        Interval { value, low, high }
    }

    /// Group `g`'s metric `m` over base's, for metric `m` (`value` on the data itself).
    pub fn ratio_to_group(&self, g: usize, base: usize, m: usize, value: f64) -> Interval {
        let d = (0..self.resamples).map(|b| self.at(&self.values, b, g, m) / self.at(&self.values, b, base, m));
        let (low, high) = percentiles(d.collect());
        Interval { value, low, high }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classification::Classification;

    /// `n` rows of which the first `right` are classified right, in `groups` groups by row % groups.
    fn rows(n: usize, right: impl Fn(usize) -> bool, groups: usize) -> (Classification, Grouped) {
        let mut cls = Classification::new(vec!["a".into(), "b".into()]);
        let mut stats = vec![[0.0; 3]; n];
        let cells: Vec<u32> = (0..n)
            .map(|i| {
                let p = if right(i) { 0.8 } else { 0.3 };
                cls.row(1, &[1.0 - p, p], &mut stats[i])
            })
            .collect();
        let g = Grouped::build(
            groups,
            cls.cells(),
            3,
            n,
            |i| Some((i % groups) as u32),
            &cells,
            |i, s| {
                s.copy_from_slice(&stats[i]);
            },
        );
        (cls, g)
    }

    #[test]
    fn accuracy_interval_matches_the_binomial_standard_error() {
        // 400 rows, 300 right: the normal approximation gives 0.75 ± 1.96 √(.75 · .25 / 400)
        // = 0.75 ± 0.0424.
        let (cls, g) = rows(400, |i| i % 4 != 0, 1);
        let draws = resample(&cls, &g, 2000, 7);
        let ci = draws.interval(0, 0, 0.75);
        assert!((ci.low - 0.7076).abs() < 0.01, "{ci:?}");
        assert!((ci.high - 0.7924).abs() < 0.01, "{ci:?}");
    }

    #[test]
    fn a_worse_group_differs_from_the_rest_and_an_equal_one_does_not() {
        // Group 0 (rows 0, 2, 4, ...) is right half the time, group 1 always: 0.5 vs 1.0.
        let (cls, g) = rows(600, |i| i % 2 == 1 || i % 4 == 0, 2);
        let draws = resample(&cls, &g, 500, 1);
        assert!(draws.against_rest(0, 0, -0.5).high < 0.0);
        assert!(draws.against_group(1, 0, 0, 0.5).low > 0.0);
        // Two groups alike (every fourth row wrong in each).
        let (cls, g) = rows(800, |i| i % 8 != 0 && i % 8 != 1, 2);
        let draws = resample(&cls, &g, 500, 1);
        assert!(!draws.against_rest(0, 0, 0.0).excludes_zero());
    }
}
