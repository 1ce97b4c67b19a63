//! Step windows as spans, when the worker exports spans: one span from one progress report to the
//! next, under the rank's span, so a trace shows each stretch of steps with how long it took, its
//! loss, throughput and share of time spent communicating. Nothing is made when spans are off.

use shoal_train::TrainPoint;
use tracing::field::Empty;

#[derive(Default)]
pub struct StepWindows {
    open: Option<tracing::Span>,
}

impl StepWindows {
    /// Opens the first window, starting after `done` steps (0, or where a resumed run restarts).
    pub fn start(&mut self, done: u64) {
        self.open = Self::window(done + 1);
    }

    /// Closes the open window at a progress report and opens the next.
    pub fn progress(&mut self, p: &TrainPoint) {
        if let Some(span) = self.open.take() {
            span.record("steps.last", p.step);
            span.record("loss", p.loss);
            span.record("samples_per_s", p.samples_per_s);
            span.record("comm_share", p.comm_share);
        }
        if p.step < p.total_steps {
            self.open = Self::window(p.step + 1);
        }
    }

    fn window(first: u64) -> Option<tracing::Span> {
        shoal_common::telemetry::exporting().then(|| {
            tracing::info_span!(
                "steps",
                steps.first = first,
                steps.last = Empty,
                loss = Empty,
                samples_per_s = Empty,
                comm_share = Empty
            )
        })
    }
}
