//! A single worker: no one to agree with, so stop requests are honoured between steps.

use super::local;
use crate::data::Dataset;
use crate::engine::{Cooperation, EvalSums, Placement, Step, StepOut, shard_sums};
use crate::error::Result;
use crate::model::Model;

/// Training on one worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alone;

impl Cooperation for Alone {
    fn placement(&self) -> Placement {
        Placement::data_parallel(0, 1)
    }

    fn stops_together(&self) -> bool {
        false
    }

    fn step(&mut self, mut s: Step<'_>) -> Result<StepOut> {
        local::accumulate(&mut s, 0, 1, 1.0)?;
        let lr = s.opt.step(s.model.params_mut())?;
        s.model.zero_grad();
        Ok(StepOut { lr, flag: 0.0 })
    }

    fn evaluate(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<Option<EvalSums>> {
        Ok(Some(shard_sums(model, val, threads, None)?))
    }
}
