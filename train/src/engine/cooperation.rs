//! The interface between the step loop and the way ranks cooperate: alone, summing gradients with
//! all-reduce, through parameter servers, or as one stage of a pipeline. The loop owns the plan,
//! the model's optimizer state, reports, evaluation scheduling, checkpoints and the summary; a
//! [`Cooperation`] supplies only what differs.

use std::path::Path;

use shoal_common::spec::TrainConfig;

use super::eval::EvalSums;
use super::objective::Objective;
use super::plan::Plan;
use super::progress::Window;
use super::report::{RunOptions, StageStats};
use super::whole::whole_model;
use crate::data::{Batch, Dataset, Loader};
use crate::error::{Result, TrainError};
use crate::model::{DataShape, Model};
use crate::optim::Optimizer;

/// Where a rank sits among the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The rank its reports carry (rank 0 reports validation).
    pub rank: usize,
    /// Its data-parallel rank and the number of data-parallel ranks: which shard it reads.
    pub data_rank: usize,
    pub data_world: usize,
}

impl Placement {
    /// Data-parallel rank `rank` of `world`, reporting as itself.
    pub fn data_parallel(rank: usize, world: usize) -> Self {
        Self { rank, data_rank: rank, data_world: world }
    }
}

/// One optimizer step as the loop hands it to a [`Cooperation`].
pub struct Step<'a> {
    /// 0-based step index.
    pub step: u64,
    /// This rank's stop request for [`Cooperation::stops_together`] strategies (a
    /// `distributed::FLAG_*` value, 0 for none); 0 otherwise.
    pub flag: f32,
    pub cfg: &'a TrainConfig,
    pub plan: &'a Plan,
    pub threads: usize,
    pub model: &'a mut Model,
    pub opt: &'a mut Optimizer,
    /// The loss of each micro-batch.
    pub objective: &'a mut dyn Objective,
    /// Where the step's loss sums, rows and communication time go.
    pub window: &'a mut Window,
    pub(super) loader: Option<&'a Loader>,
}

impl Step<'_> {
    /// The next training batch, or `None` on a rank that reads no data (a later pipeline stage).
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        match self.loader {
            Some(l) => Ok(Some(self.window.next_batch(l)?)),
            None => {
                self.window.open();
                Ok(None)
            }
        }
    }
}

/// What a step produced besides the sums recorded in the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOut {
    /// The learning rate the step used.
    pub lr: f64,
    /// The stop request all ranks agreed on with this step (0 for none).
    pub flag: f32,
}

/// How this rank cooperates with the others. The loop calls, in order: [`placement`], [`build`],
/// (it resumes the checkpoint), [`join`], then per step [`step`] (and [`evaluate`], [`save_extra`],
/// [`metrics`] when due), then [`finish`], a last [`evaluate`] and [`save_extra`], and
/// [`stage_stats`] for the summary; [`abort`] on any error.
///
/// A new way of cooperating is one new implementation; a new loss (distillation, a penalty) is an
/// [`Objective`] instead and works with every implementation.
///
/// [`placement`]: Cooperation::placement
/// [`build`]: Cooperation::build
/// [`join`]: Cooperation::join
/// [`step`]: Cooperation::step
/// [`evaluate`]: Cooperation::evaluate
/// [`save_extra`]: Cooperation::save_extra
/// [`metrics`]: Cooperation::metrics
/// [`finish`]: Cooperation::finish
/// [`stage_stats`]: Cooperation::stage_stats
/// [`abort`]: Cooperation::abort
pub trait Cooperation {
    fn placement(&self) -> Placement;

    /// Whether this rank reads training batches.
    fn loads_data(&self) -> bool {
        true
    }

    /// Builds this rank's model, with its description for the `Started` report: by default the
    /// whole model (a pipeline stage builds only its units).
    fn build(
        &mut self,
        cfg: &TrainConfig,
        shape: &DataShape,
        _plan: &Plan,
        opts: &RunOptions,
    ) -> Result<(Model, String)> {
        whole_model(cfg, shape, opts)
    }

    /// Brings the built (and possibly resumed) model in line with the other ranks before the first
    /// step taken from `start_step`; by default there is nothing to do.
    fn join(
        &mut self,
        _cfg: &TrainConfig,
        _plan: &Plan,
        _model: &mut Model,
        _start: u64,
        _opts: &RunOptions,
    ) -> Result<()> {
        Ok(())
    }

    /// Whether stop requests ride with the step, so that every rank stops after the same step
    /// (true), or are honoured locally between steps (false).
    fn stops_together(&self) -> bool;

    /// The warm-up ended: steady-state counters start again.
    fn warmed_up(&mut self) {}

    /// Computes the step's gradients over its micro-batches, recording their loss in
    /// `step.window`, and applies them (or hands them to whoever does).
    fn step(&mut self, step: Step<'_>) -> Result<StepOut>;

    /// Validation sums over `val`, the same on every rank that returns them; `None` where this rank
    /// does not evaluate.
    fn evaluate(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<Option<EvalSums>>;

    /// Saves what this strategy keeps besides the model and optimizer into checkpoint `dir`.
    fn save_extra(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Further measurements for a progress report covering `span_s` seconds.
    fn metrics(&mut self, _span_s: f64) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// The last step is done (`wall_s`: seconds of the steps after the warm-up): land whatever is
    /// still in flight into `model`.
    fn finish(&mut self, _model: &mut Model, _wall_s: f64) -> Result<()> {
        Ok(())
    }

    /// How a pipeline stage spent its steps, for the summary.
    fn stage_stats(&self) -> Option<StageStats> {
        None
    }

    /// The run failed with `error`: tell whoever would otherwise wait for this rank.
    fn abort(&mut self, _error: &TrainError) {}
}
