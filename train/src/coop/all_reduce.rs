//! Data-parallel ranks that sum their gradients every step. Rank 0's parameters are broadcast at
//! the start; stop requests ride with the gradients, so every rank stops after the same step.
//! Gradients in device memory are summed there by a device collective, bucket by bucket while
//! backward runs; host gradients go through the collective's host buffers after backward.

use std::time::Instant;

use shoal_common::spec::TrainConfig;

use super::local;
use super::overlap::Overlap;
use crate::collective::{Collective, CollectiveError};
use crate::data::Dataset;
use crate::distributed::{self, Buckets};
use crate::engine::{Cooperation, EvalSums, Placement, Plan, RunOptions, Step, StepOut, shard_sums};
use crate::error::Result;
use crate::model::Model;

/// Gradients summed across ranks by a collective.
pub struct AllReduce<'a> {
    collective: &'a mut dyn Collective,
    /// Set when there is more than one rank.
    buckets: Option<Buckets>,
    /// The training stream, when the gradients live in device memory and the collective sums
    /// them there: buckets are then queued while backward runs ([`Overlap`]).
    device_stream: Option<u64>,
}

impl<'a> AllReduce<'a> {
    pub fn new(collective: &'a mut dyn Collective) -> Self {
        Self { collective, buckets: None, device_stream: None }
    }
}

impl Cooperation for AllReduce<'_> {
    fn placement(&self) -> Placement {
        Placement::data_parallel(self.collective.rank(), self.collective.world_size())
    }

    fn join(&mut self, cfg: &TrainConfig, _: &Plan, model: &mut Model, _: u64, _: &RunOptions) -> Result<()> {
        if self.collective.world_size() > 1 {
            distributed::broadcast_params(model, &mut *self.collective)?;
            self.buckets = Some(Buckets::new(model, cfg.parallel.bucket_bytes));
            let stream = model.backend().stream_handle();
            self.device_stream = stream.filter(|_| self.collective.on_device().is_some());
        }
        Ok(())
    }

    fn stops_together(&self) -> bool {
        self.buckets.is_some()
    }

    fn step(&mut self, mut s: Step<'_>) -> Result<StepOut> {
        let (rank, world) = (self.collective.rank(), self.collective.world_size());
        let ranks_summed = if self.buckets.is_some() { world as f32 } else { 1.0 };
        let mut flag = 0.0;
        if let (Some(b), Some(stream)) = (self.buckets.as_ref(), self.device_stream) {
            let sums = self
                .collective
                .on_device()
                .ok_or(CollectiveError::Protocol { detail: "the collective no longer sums device memory".into() })?;
            let mut overlap = Overlap::new(b, stream);
            local::accumulate_observed(&mut s, rank, world, ranks_summed, &mut |m, first| {
                overlap.on_layer(m, first, &mut *sums)
            })?;
            let t0 = Instant::now();
            flag = overlap.finish(s.model, s.flag, sums)?;
            s.window.comm_since(t0);
        } else {
            local::accumulate(&mut s, rank, world, ranks_summed)?;
            if let Some(b) = self.buckets.as_mut() {
                let t0 = Instant::now();
                flag = b.all_reduce(s.model, &mut *self.collective, s.flag)?;
                s.window.comm_since(t0);
            }
        }
        let lr = s.opt.step(s.model.params_mut())?;
        s.model.zero_grad();
        let done = s.step + 1;
        let every = s.cfg.parallel.checksum_every;
        if self.buckets.is_some() && every > 0 && done.is_multiple_of(every) {
            let t0 = Instant::now();
            distributed::verify_in_step(s.model, &mut *self.collective, done)?;
            s.window.comm_since(t0);
        }
        Ok(StepOut { lr, flag })
    }

    fn evaluate(&mut self, model: &Model, val: &Dataset, threads: usize) -> Result<Option<EvalSums>> {
        Ok(Some(shard_sums(model, val, threads, Some(&mut *self.collective))?))
    }
}
