//! Progress bookkeeping: the sums of the steps since the previous report, and the totals the final
//! summary is built from.

use std::collections::VecDeque;
use std::time::Instant;

use crate::data::{Batch, Loader};
use crate::error::Result;

/// Steps whose mean loss makes up the summary's `last10_loss`.
const RECENT: usize = 10;

/// Sums over the steps since the previous report, and over the step being taken.
#[derive(Default)]
pub struct Window {
    pub(super) loss: f64,
    pub(super) rows: usize,
    pub(super) correct: f64,
    pub(super) wait_s: f64,
    pub(super) comm_s: f64,
    pub(super) started: Option<Instant>,
    step_loss: f64,
    step_rows: usize,
}

impl Window {
    /// The next batch from `loader`, counting the wait as data wait.
    pub fn next_batch(&mut self, loader: &Loader) -> Result<Batch> {
        let wait = Instant::now();
        let b = loader.next()?;
        self.started.get_or_insert(wait);
        self.wait_s += wait.elapsed().as_secs_f64();
        Ok(b)
    }

    /// Opens the window on a rank that reads no data.
    pub fn open(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    /// Adds a micro-batch (or a whole step's) loss sum, rows and correctly classified rows.
    pub fn record(&mut self, loss_sum: f64, rows: usize, correct: f64) {
        self.loss += loss_sum;
        self.rows += rows;
        self.correct += correct;
        self.step_loss += loss_sum;
        self.step_rows += rows;
    }

    /// Counts the time since `t0` as spent communicating with other ranks.
    pub fn comm_since(&mut self, t0: Instant) {
        self.comm_s += t0.elapsed().as_secs_f64();
    }

    /// The loss sum and rows recorded since the previous call.
    pub(super) fn take_step(&mut self) -> (f64, usize) {
        let out = (self.step_loss, self.step_rows);
        (self.step_loss, self.step_rows) = (0.0, 0);
        out
    }

    /// Seconds since the window opened (never zero).
    pub(super) fn span_s(&self) -> f64 {
        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9)
    }
}

/// Totals of the whole run.
pub(super) struct Totals {
    pub(super) first_loss: Option<f64>,
    recent: VecDeque<f64>,
    pub(super) samples: u64,
    /// When the warm-up ended, and the samples seen by then.
    steady_start: Option<(Instant, u64)>,
}

impl Totals {
    pub(super) fn new() -> Self {
        Self { first_loss: None, recent: VecDeque::with_capacity(RECENT), samples: 0, steady_start: None }
    }

    /// Adds a finished optimizer step.
    pub(super) fn add_step(&mut self, loss_sum: f64, rows: usize) {
        let mean = loss_sum / rows.max(1) as f64;
        self.samples += rows as u64;
        self.first_loss.get_or_insert(mean);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(mean);
    }

    /// Marks the end of the warm-up.
    pub(super) fn warmed_up(&mut self) {
        self.steady_start = Some((Instant::now(), self.samples));
    }

    pub(super) fn last_loss(&self) -> f64 {
        self.recent.back().copied().unwrap_or(f64::NAN)
    }

    pub(super) fn recent_loss(&self) -> f64 {
        self.recent.iter().sum::<f64>() / self.recent.len().max(1) as f64
    }

    /// Seconds since the warm-up ended, if it did.
    pub(super) fn steady_elapsed_s(&self) -> Option<f64> {
        self.steady_start.map(|(t0, _)| t0.elapsed().as_secs_f64().max(1e-9))
    }

    /// Samples per second and seconds after the warm-up (the whole run when it never ended).
    pub(super) fn steady(&self, elapsed_s: f64) -> (f64, f64) {
        match self.steady_start {
            Some((t0, s0)) => {
                let e = t0.elapsed().as_secs_f64().max(1e-9);
                ((self.samples - s0) as f64 / e, e)
            }
            None => (self.samples as f64 / elapsed_s.max(1e-9), elapsed_s),
        }
    }
}
