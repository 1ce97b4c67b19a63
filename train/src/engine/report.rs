//! What the step loop tells its host and hands back: progress and validation points, checkpoints,
//! the final summary, and the options and stop requests that come in.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{self, Backend};

/// Why the host wants the loop to stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Stop now; the job was cancelled.
    Cancel,
    /// Finish the step, checkpoint, stop; the job will resume elsewhere.
    Drain,
}

/// Training progress since the previous report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainPoint {
    /// Steps completed.
    pub step: u64,
    pub total_steps: u64,
    /// 1-based epoch the last step belonged to.
    pub epoch: u64,
    pub total_epochs: u64,
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub samples_per_s: f64,
    pub lr: f64,
    pub elapsed_s: f64,
    /// Share of the window the step loop spent waiting for data.
    pub data_wait_share: f64,
    /// Share of the window spent in collectives with other ranks.
    pub comm_share: f64,
    /// The data-parallel rank reporting.
    pub rank: usize,
    /// Further measurements (parameter-server pushes/s, staleness, ...).
    pub extra: Vec<(String, f64)>,
}

/// A validation result.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalPoint {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub accuracy: Option<f64>,
    /// Coefficient of determination (regression only).
    pub r2: Option<f64>,
    pub elapsed_s: f64,
}

/// What the loop tells its host.
#[derive(Clone, Debug)]
pub enum Report {
    Started { total_steps: u64, steps_per_epoch: u64, params: usize, model: String, resumed_at: Option<u64> },
    Train(TrainPoint),
    Validation(EvalPoint),
    Checkpoint { step: u64, path: PathBuf },
}

/// The loop's view of whoever runs it.
pub trait Host {
    fn report(&mut self, report: Report);
    /// Polled between steps.
    fn stop(&self) -> Option<Stop>;
}

/// How to run a job.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where this job's checkpoints go; `None` disables them.
    pub checkpoint_dir: Option<PathBuf>,
    /// A checkpoint directory to resume from.
    pub resume_from: Option<PathBuf>,
    /// Matmul threads.
    pub threads: usize,
    /// The spec as TOML, saved with checkpoints.
    pub spec_toml: String,
    /// Checkpoints to keep.
    pub keep_checkpoints: usize,
    /// Steps excluded from the steady-state throughput in the summary.
    pub warmup_steps: u64,
    /// Where the model trains; `None` is the CPU.
    pub backend: Option<Arc<dyn Backend>>,
}

impl RunOptions {
    /// The backend the model is built on.
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone().unwrap_or_else(backend::cpu)
    }
}

/// How a finished run went.
#[derive(Clone, Debug)]
pub struct Summary {
    pub steps: u64,
    pub epochs: u64,
    pub first_loss: f64,
    pub last_loss: f64,
    /// Mean training loss of the last 10 steps.
    pub last10_loss: f64,
    pub validation: Option<EvalPoint>,
    /// Samples per second over the whole run.
    pub samples_per_s: f64,
    /// Samples per second after `warmup_steps`.
    pub steady_samples_per_s: f64,
    pub steady_elapsed_s: f64,
    pub elapsed_s: f64,
    pub checkpoint: Option<PathBuf>,
    /// How a pipeline stage spent the steps after `warmup_steps`.
    pub pipeline: Option<StageStats>,
    /// Figures a job kind adds to the result (a pruning job's sparsity per layer).
    pub extra: Vec<(String, f64)>,
}

/// How a run ended.
// Returned once per run: boxing the summary would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Outcome {
    Completed(Summary),
    Cancelled { step: u64 },
    Interrupted { step: u64, checkpoint: Option<PathBuf> },
}

/// How a stage spent its steps after the warm-up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageStats {
    pub stage: usize,
    pub stages: usize,
    /// Unit bounds of every stage.
    pub bounds: Vec<usize>,
    pub micro_batches: usize,
    pub steps: u64,
    /// Wall time of those steps.
    pub wall_s: f64,
    /// Forward (including the loss on the last stage) and backward compute (including any
    /// recomputation).
    pub forward_s: f64,
    pub backward_s: f64,
    pub forwards: u64,
    pub backwards: u64,
    /// Time blocked waiting for a neighbour's message.
    pub recv_wait_s: f64,
    /// Time in the optimizer step and the replicas' all-reduce.
    pub update_s: f64,
    /// Most activation bytes held at once (saved tensors, kept inputs, output gradients).
    pub peak_activation_bytes: usize,
}

impl StageStats {
    pub fn busy_s(&self) -> f64 {
        self.forward_s + self.backward_s
    }

    /// Idle share of the wall time.
    pub fn bubble(&self) -> f64 {
        if self.wall_s > 0.0 { (1.0 - self.busy_s() / self.wall_s).max(0.0) } else { 0.0 }
    }
}
