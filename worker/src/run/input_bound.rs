//! Tells a job once when its training waits for data: when two progress windows in a row spent
//! more than 10% of their step time waiting for the next batch, and that wait is long enough
//! (0.5 ms a step) to be the loader's fault rather than the hand-over between threads, which
//! tiny models on busy CPUs always show.

use shoal_train::TrainPoint;

const SHARE: f64 = 0.10;
const WAIT_PER_STEP_S: f64 = 0.000_5;
const WINDOWS: u32 = 2;

#[derive(Default)]
pub struct InputWatch {
    /// Step and elapsed seconds at the previous report.
    previous: Option<(u64, f64)>,
    /// Consecutive windows over the line.
    over: u32,
    told: bool,
}

impl InputWatch {
    /// The notice to give after this report, at most once per run.
    pub fn observe(&mut self, p: &TrainPoint, loader_threads: usize) -> Option<String> {
        let previous = self.previous.replace((p.step, p.elapsed_s));
        let (step, elapsed) = previous?;
        let steps = p.step.saturating_sub(step);
        if steps == 0 || self.told {
            return None;
        }
        let wait_per_step = p.data_wait_share * (p.elapsed_s - elapsed).max(0.0) / steps as f64;
        if p.data_wait_share > SHARE && wait_per_step >= WAIT_PER_STEP_S {
            self.over += 1;
        } else {
            self.over = 0;
        }
        if self.over < WINDOWS {
            return None;
        }
        self.told = true;
        Some(format!(
            "rank {} waited for data {:.0}% of its step time (about {:.1} ms a step) up to step {}: the input \
             pipeline is the bottleneck; try more dataset.loader_threads (now {loader_threads}) or a larger \
             dataset.prefetch",
            p.rank,
            p.data_wait_share * 100.0,
            wait_per_step * 1e3,
            p.step
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(step: u64, elapsed_s: f64, share: f64) -> TrainPoint {
        TrainPoint { step, elapsed_s, data_wait_share: share, ..TrainPoint::default() }
    }

    #[test]
    fn a_sustained_long_wait_is_told_once_and_short_hand_overs_never() {
        let mut w = InputWatch::default();
        // 100 steps a second, 30% waiting: 3 ms a step.
        assert_eq!(w.observe(&point(100, 1.0, 0.3), 2), None, "the first report has no window");
        assert_eq!(w.observe(&point(200, 2.0, 0.3), 2), None, "one window is not yet sustained");
        let told = w.observe(&point(300, 3.0, 0.3), 2).expect("told");
        assert!(told.contains("30% of its step time") && told.contains("loader_threads (now 2)"), "{told}");
        assert_eq!(w.observe(&point(400, 4.0, 0.3), 2), None, "only once");

        // 10,000 steps a second, 15% waiting: 15 µs a step, the hand-over between threads.
        let mut fast = InputWatch::default();
        for i in 1..10 {
            assert_eq!(fast.observe(&point(i * 10_000, i as f64, 0.15), 1), None);
        }
        // Over the line, then under it, then over: never two windows in a row.
        let mut flicker = InputWatch::default();
        for (i, share) in [0.3, 0.3, 0.05, 0.3, 0.05, 0.3].into_iter().enumerate() {
            let i = i as u64 + 1;
            assert_eq!(flicker.observe(&point(i * 100, i as f64, share), 1), None, "window {i}");
        }
    }
}
