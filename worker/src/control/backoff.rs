//! Exponential backoff with jitter for reconnecting: doubles from `base` up to `max`, each wait
//! drawn from the upper half of the current step so that many workers do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max: max.max(base), current: base }
    }

    pub fn next(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis() as u64))
    }

    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] <= Duration::from_millis(100) && waits[0] >= Duration::from_millis(50));
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(1000)));
        assert!(waits[7] >= Duration::from_millis(500), "capped step is 1000ms, wait at least half");
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
