//! The Page–Hinkley test for an increase in a stream's mean (Page 1954), with river's defaults:
//! at least 30 values, δ = 0.005, threshold λ = 50, forgetting factor α = 1 − 0.0001.
//!
//! With x̄_T the running mean of the values since the last drift, the cumulative deviation is
//! m_T = α·m_(T−1) + (x_T − x̄_T − δ), and M_T = min_(t≤T) m_t. Drift is signalled when
//! m_T − M_T > λ after at least 30 values, and the test starts afresh. δ is the size of change
//! tolerated; α slowly forgets old deviations so that the sum cannot drift without bound. Only
//! increases are detected (more errors, higher loss), not decreases. NaN values are ignored.

use super::Detector;

/// Page–Hinkley's settings and state.
#[derive(Clone, Debug)]
pub struct PageHinkley {
    pub min_instances: u64,
    pub delta: f64,
    pub threshold: f64,
    pub alpha: f64,
    n: u64,
    mean: f64,
    sum: f64,
    min_sum: f64,
}

impl Default for PageHinkley {
    fn default() -> Self {
        PageHinkley::new(30, 0.005, 50.0, 1.0 - 0.0001)
    }
}

impl PageHinkley {
    pub fn new(min_instances: u64, delta: f64, threshold: f64, alpha: f64) -> Self {
        PageHinkley { min_instances, delta, threshold, alpha, n: 0, mean: 0.0, sum: 0.0, min_sum: f64::INFINITY }
    }

    /// m_T − M_T, the statistic compared with the threshold.
    pub fn statistic(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.sum - self.min_sum }
    }

    fn reset(&mut self) {
        *self = PageHinkley::new(self.min_instances, self.delta, self.threshold, self.alpha);
    }
}

impl Detector for PageHinkley {
    fn update(&mut self, x: f64) -> bool {
        if x.is_nan() {
            return false;
        }
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.sum = self.alpha * self.sum + (x - self.mean - self.delta);
        self.min_sum = self.min_sum.min(self.sum);
        if self.n >= self.min_instances && self.sum - self.min_sum > self.threshold {
            self.reset();
            return true;
        }
        false
    }

    fn name(&self) -> &'static str {
        "page_hinkley"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::{CHANGE, alarms_of, errors};

    #[test]
    fn detects_the_change_and_not_before() {
        let rows = alarms_of(&mut PageHinkley::default(), &errors());
        assert!(rows.iter().all(|&r| r >= CHANGE), "{rows:?}");
        assert!(rows.first().is_some_and(|&r| r < CHANGE + 300), "{rows:?}");
    }

    #[test]
    fn follows_the_recursion() {
        let mut p = PageHinkley::new(2, 0.5, 1.0, 1.0);
        // x = 0: mean 0, m = −0.5, M = −0.5. x = 2: mean 1, m = −0.5 + 0.5 = 0, stat 0.5.
        assert!(!p.update(0.0));
        assert!(!p.update(2.0));
        assert_eq!(p.statistic(), 0.5);
        // x = 4: mean 2, m = 0 + 1.5 = 1.5, stat 2 > 1: drift, and a fresh start.
        assert!(p.update(4.0));
        assert_eq!(p.statistic(), 0.0);
        assert!(!p.update(f64::NAN));
    }
}
