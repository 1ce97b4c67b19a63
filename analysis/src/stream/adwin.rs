//! ADWIN, the adaptive windowing change detector of Bifet and Gavaldà (2007), in its ADWIN2 form:
//! a window of the recent stream kept as an exponential histogram, cut whenever an older and a
//! newer part of it have means too far apart to be the same distribution.
//!
//! The window is held as buckets of 2^k values (their sum and their sum of squared deviations),
//! at most [`MAX_BUCKETS`] = 5 per size, the two oldest of a size merged when a sixth arrives: the
//! memory and the time per check are O(log W) for a window of W values. Every [`CLOCK`] = 32
//! values the window is checked at every bucket boundary that leaves both parts at least
//! [`MIN_WINDOW`] = 5 values: with n₀ and n₁ values, means μ₀ and μ₁, 1/m = 1/n₀ + 1/n₁, the
//! window's variance σ²_W and δ' = δ/ln W, the parts differ when
//!
//!   |μ₀ − μ₁| > ε = √(2/m · σ²_W · ln(2/δ')) + 2/(3m) · ln(2/δ').
//!
//! While a cut is found the oldest bucket is dropped and the check repeated; any cut is a drift.
//! The default δ is 0.002. The bound assumes values in [0, 1] (errors or scaled losses). NaN
//! values are ignored.

use std::collections::VecDeque;

use super::Detector;

pub const MAX_BUCKETS: usize = 5;
pub const CLOCK: u64 = 32;
pub const MIN_WINDOW: usize = 5;

/// 2^level values: their sum and their sum of squared deviations from their mean.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    total: f64,
    variance: f64,
}

/// ADWIN's window and settings.
#[derive(Clone, Debug)]
pub struct Adwin {
    delta: f64,
    /// `levels[k]` holds buckets of 2^k values, oldest first.
    levels: Vec<VecDeque<Bucket>>,
    width: usize,
    total: f64,
    variance: f64,
    time: u64,
}

impl Default for Adwin {
    fn default() -> Self {
        Adwin::new(0.002)
    }
}

impl Adwin {
    /// An empty window with confidence `delta`.
    pub fn new(delta: f64) -> Self {
        Adwin { delta, levels: Vec::new(), width: 0, total: 0.0, variance: 0.0, time: 0 }
    }

    /// The number of values in the window.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The window's mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.width == 0 { 0.0 } else { self.total / self.width as f64 }
    }

    /// The window's (population) variance.
    pub fn variance(&self) -> f64 {
        if self.width == 0 { 0.0 } else { self.variance / self.width as f64 }
    }

    fn insert(&mut self, x: f64) {
        if self.width > 0 {
            let w = self.width as f64;
            self.variance += w * (x - self.total / w).powi(2) / (w + 1.0);
        }
        self.width += 1;
        self.total += x;
        if self.levels.is_empty() {
            self.levels.push(VecDeque::new());
        }
        self.levels[0].push_back(Bucket { total: x, variance: 0.0 });
        let mut level = 0;
        while level < self.levels.len() && self.levels[level].len() > MAX_BUCKETS {
            let (Some(a), Some(b)) = (self.levels[level].pop_front(), self.levels[level].pop_front()) else {
                break;
            };
            let n = (1u64 << level) as f64;
            let d = a.total / n - b.total / n;
            let merged = Bucket { total: a.total + b.total, variance: a.variance + b.variance + n * d * d / 2.0 };
            if level + 1 == self.levels.len() {
                self.levels.push(VecDeque::new());
            }
            self.levels[level + 1].push_back(merged);
            level += 1;
        }
    }

    /// Drops the oldest bucket (the first of the largest size).
    fn drop_oldest(&mut self) {
        while self.levels.last().is_some_and(VecDeque::is_empty) {
            self.levels.pop();
        }
        let top = self.levels.len().saturating_sub(1);
        let Some(b) = self.levels.get_mut(top).and_then(VecDeque::pop_front) else {
            return;
        };
        let n = 1usize << top;
        self.width = self.width.saturating_sub(n);
        self.total -= b.total;
        if self.width == 0 {
            (self.total, self.variance) = (0.0, 0.0);
        } else {
            let (nf, w) = (n as f64, self.width as f64);
            let d = b.total / nf - self.total / w;
            self.variance = (self.variance - b.variance - nf * w * d * d / (nf + w)).max(0.0);
        }
        while self.levels.last().is_some_and(VecDeque::is_empty) {
            self.levels.pop();
        }
    }

    /// Whether some split of the window has an older and a newer part with distinct means.
    fn has_cut(&self) -> bool {
        if self.width < 2 * MIN_WINDOW {
            return false;
        }
        let w = self.width as f64;
        let log_term = (2.0 * w.ln() / self.delta).ln();
        let var = self.variance / w;
        let (mut n0, mut u0) = (0usize, 0.0);
        for (level, buckets) in self.levels.iter().enumerate().rev() {
            for b in buckets {
                n0 += 1 << level;
                u0 += b.total;
                let n1 = self.width - n0;
                if n1 < MIN_WINDOW {
                    return false;
                }
                if n0 < MIN_WINDOW {
                    continue;
                }
                let (a, c) = (n0 as f64, n1 as f64);
                let inv_m = 1.0 / a + 1.0 / c;
                let eps = (2.0 * inv_m * var * log_term).sqrt() + 2.0 / 3.0 * inv_m * log_term;
                if (u0 / a - (self.total - u0) / c).abs() > eps {
                    return true;
                }
            }
        }
        false
    }
}

impl Detector for Adwin {
    fn update(&mut self, x: f64) -> bool {
        if x.is_nan() {
            return false;
        }
        self.insert(x);
        self.time += 1;
        if !self.time.is_multiple_of(CLOCK) {
            return false;
        }
        let mut cut = false;
        while self.has_cut() {
            cut = true;
            self.drop_oldest();
        }
        cut
    }

    fn name(&self) -> &'static str {
        "adwin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::{CHANGE, alarms_of, errors, stationary, stationary_seeded};

    #[test]
    fn detects_the_change_and_shrinks_the_window() {
        let stream = errors();
        let mut a = Adwin::default();
        let rows = alarms_of(&mut a, &stream[..CHANGE + 300]);
        assert!(rows.iter().all(|&r| r >= CHANGE), "{rows:?}");
        assert!(rows.first().is_some_and(|&r| r < CHANGE + 150), "{rows:?}");
        // What is left is the new regime: about 0.5 errors, far fewer values than 2300.
        assert!(a.width() < 600 && (a.mean() - 0.5).abs() < 0.1, "{} {}", a.width(), a.mean());
        assert!(alarms_of(&mut Adwin::default(), &stationary()).is_empty());
        for seed in 0..20 {
            assert!(alarms_of(&mut Adwin::default(), &stationary_seeded(seed)).is_empty(), "seed {seed}");
        }
    }

    #[test]
    fn the_histogram_keeps_exact_totals_in_few_buckets() {
        let mut a = Adwin::default();
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i % 4 == 0)).collect();
        for &x in &values {
            assert!(!a.update(x));
        }
        assert_eq!(a.width(), 1000);
        assert!((a.mean() - 0.25).abs() < 1e-12);
        assert!((a.variance() - 0.1875).abs() < 1e-9, "{}", a.variance());
        let sizes: usize = a.levels.iter().enumerate().map(|(k, b)| b.len() << k).sum();
        assert_eq!(sizes, 1000);
        assert!(a.levels.iter().all(|b| b.len() <= MAX_BUCKETS) && a.levels.len() <= 10);
        a.drop_oldest();
        assert!(a.width() < 1000 && a.variance() >= 0.0);
        assert!(!a.update(f64::NAN));
    }
}
