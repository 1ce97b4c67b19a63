//! Data-parallel ranks synchronised through parameter servers: the servers own the parameters and
//! apply the optimizer; ranks push gradients and pull parameters. Rank 0 seeds the servers, stop
//! requests are honoured between steps, and only rank 0 evaluates (there is no collective to
//! combine shards).

use std::path::Path;
use std::time::Instant;

use shoal_common::spec::TrainConfig;

use super::local;
use crate::collective::ParamStore;
use crate::data::Dataset;
use crate::distributed;
use crate::engine::{Cooperation, EvalSums, Placement, Plan, RunOptions, Step, StepOut, shard_sums};
use crate::error::Result;
use crate::model::Model;

/// Parameters held by parameter servers.
pub struct ParamServer<'a> {
    store: &'a mut dyn ParamStore,
    /// The flat parameters last pulled.
    flat: Vec<f32>,
    total_steps: u64,
}

impl<'a> ParamServer<'a> {
    pub fn new(store: &'a mut dyn ParamStore) -> Self {
        Self { store, flat: Vec::new(), total_steps: 0 }
    }
}

impl Cooperation for ParamServer<'_> {
    fn placement(&self) -> Placement {
        Placement::data_parallel(self.store.rank(), self.store.world_size())
    }

    fn join(
        &mut self,
        _: &TrainConfig,
        plan: &Plan,
        model: &mut Model,
        start_step: u64,
        opts: &RunOptions,
    ) -> Result<()> {
        self.total_steps = plan.total_steps;
        self.flat = distributed::flat_params(model)?;
        if self.store.rank() == 0 {
            self.store.init(&self.flat, plan.total_steps, opts.resume_from.as_deref())?;
        }
        self.store.pull(start_step, &mut self.flat)?;
        distributed::set_flat_params(model, &self.flat)
    }

    fn stops_together(&self) -> bool {
        false
    }

    fn step(&mut self, mut s: Step<'_>) -> Result<StepOut> {
        // The servers average (sync) or apply each push (async) themselves: no 1/world here.
        local::accumulate(&mut s, self.store.rank(), self.store.world_size(), 1.0)?;
        let t0 = Instant::now();
        let grads = distributed::flat_grads(s.model)?;
        if self.store.overlaps() {
            // Push this step and pull the next parameters in the background while the next
            // step computes on the parameters of the previous exchange.
            self.store.start_exchange(s.step, grads)?;
            if self.store.finish_exchange(&mut self.flat, 1)? {
                distributed::set_flat_params(s.model, &self.flat)?;
            }
        } else {
            self.store.push(s.step, &grads)?;
            self.store.pull(s.step + 1, &mut self.flat)?;
            distributed::set_flat_params(s.model, &self.flat)?;
        }
        s.window.comm_since(t0);
        s.model.zero_grad();
        Ok(StepOut { lr: s.opt.skip(), flag: 0.0 })
    }

    fn evaluate(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<Option<EvalSums>> {
        if self.store.rank() != 0 {
            return Ok(None);
        }
        Ok(Some(shard_sums(model, val, threads, None)?))
    }

    fn save_extra(&mut self, dir: &Path) -> Result<()> {
        Ok(self.store.save(dir)?)
    }

    fn metrics(&mut self, _span_s: f64) -> Vec<(String, f64)> {
        self.store.take_metrics()
    }

    fn finish(&mut self, model: &mut Model, _wall_s: f64) -> Result<()> {
        // Land the exchanges still in flight, then take the servers' final parameters.
        if self.store.overlaps() {
            self.store.finish_exchange(&mut self.flat, 0)?;
        }
        self.store.pull(self.total_steps, &mut self.flat)?;
        distributed::set_flat_params(model, &self.flat)
    }
}
