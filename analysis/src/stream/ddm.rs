//! DDM, the drift detection method of Gama, Medas, Castillo and Rodrigues (2004), for a stream of
//! errors (1 for a wrong prediction, 0 for a right one).
//!
//! After i values the error rate is pᵢ and its standard deviation sᵢ = √(pᵢ(1 − pᵢ)/i). Once 30
//! values have been seen the detector keeps the point where pᵢ + sᵢ was smallest, (p_min, s_min).
//! It warns while pᵢ + sᵢ ≥ p_min + 2·s_min and signals drift when pᵢ + sᵢ ≥ p_min + 3·s_min,
//! then starts afresh, as if the stream began at the next value.
//!
//! Two choices beyond the paper: a minimum is only taken where sᵢ > 0, since an error rate of
//! exactly 0 (a clean start) has no spread and would turn the first error into a drift; and
//! values are read as error indicators, clamped to [0, 1], NaN values ignored.

use super::Detector;

/// Values seen before the minimum is tracked and alarms can be raised, by default.
pub const MIN_INSTANCES: u64 = 30;
pub const WARNING_LEVEL: f64 = 2.0;
pub const DRIFT_LEVEL: f64 = 3.0;

/// DDM's state.
#[derive(Clone, Debug)]
pub struct Ddm {
    /// Values seen before the minimum is tracked and alarms can be raised.
    pub min_instances: u64,
    n: u64,
    errors: f64,
    p_min: f64,
    s_min: f64,
    warning: bool,
}

impl Default for Ddm {
    fn default() -> Self {
        Ddm::new(MIN_INSTANCES)
    }
}

impl Ddm {
    /// A detector that waits for `min_instances` values before it judges.
    pub fn new(min_instances: u64) -> Self {
        Ddm { min_instances, n: 0, errors: 0.0, p_min: f64::INFINITY, s_min: f64::INFINITY, warning: false }
    }

    /// Whether the last value left the detector at its warning level.
    pub fn warning(&self) -> bool {
        self.warning
    }

    /// The error rate since the last drift (0 before any value).
    pub fn error_rate(&self) -> f64 {
        if self.n == 0 { 0.0 } else { self.errors / self.n as f64 }
    }
}

impl Detector for Ddm {
    fn update(&mut self, x: f64) -> bool {
        if x.is_nan() {
            return false;
        }
        self.n += 1;
        self.errors += x.clamp(0.0, 1.0);
        let i = self.n as f64;
        let p = self.errors / i;
        let s = (p * (1.0 - p) / i).sqrt();
        if self.n < self.min_instances {
            return false;
        }
        if s > 0.0 && p + s <= self.p_min + self.s_min {
            (self.p_min, self.s_min) = (p, s);
        }
        if !self.p_min.is_finite() {
            return false;
        }
        if p + s >= self.p_min + DRIFT_LEVEL * self.s_min {
            *self = Ddm::new(self.min_instances);
            return true;
        }
        self.warning = p + s >= self.p_min + WARNING_LEVEL * self.s_min;
        false
    }

    fn name(&self) -> &'static str {
        "ddm"
    }

    fn warning(&self) -> bool {
        self.warning
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::{CHANGE, alarms_of, errors, stationary};

    #[test]
    fn detects_the_change_and_not_before() {
        let rows = alarms_of(&mut Ddm::default(), &errors());
        assert!(rows.iter().all(|&r| r >= CHANGE), "{rows:?}");
        assert!(rows.first().is_some_and(|&r| r < CHANGE + 300), "{rows:?}");
        assert!(alarms_of(&mut Ddm::default(), &stationary()).is_empty());
    }

    #[test]
    fn warns_before_it_drifts_and_ignores_a_clean_start() {
        let mut d = Ddm::default();
        // 100 clean values, then one error: no spread at the minimum yet, so no alarm.
        assert!(!(0..100).any(|_| d.update(0.0)));
        assert!(!d.update(1.0));
        let mut d = Ddm::default();
        let mut warned = None;
        for i in 0..10_000 {
            let x = if i < 1000 { f64::from(i % 10 == 0) } else { f64::from(i % 2 == 0) };
            if d.update(x) {
                assert!(warned.is_some_and(|w| w < i), "drift at {i}, warned {warned:?}");
                assert!(!d.warning() && d.error_rate() == 0.0);
                return;
            }
            if d.warning() && warned.is_none() {
                warned = Some(i);
            }
        }
        panic!("no drift");
    }
}
