//! How many micro-batches and optimizer steps a run takes, and which epoch a step belongs to.

use shoal_common::spec::{Duration, TrainConfig};

use crate::data::steps_per_epoch;

/// Step counts of a run, in micro-batches and optimizer steps.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rows per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimizer step.
    pub accumulate: u64,
    /// Micro-batches in one epoch of this rank's shard.
    pub micro_per_epoch: u64,
    pub total_micro: u64,
    pub total_steps: u64,
    pub total_epochs: u64,
}

impl Plan {
    /// The plan for `world` data-parallel ranks sharing `train_rows` rows.
    pub fn new(cfg: &TrainConfig, train_rows: usize, world: usize) -> Self {
        let t = &cfg.training;
        let shard = train_rows.div_ceil(world.max(1));
        let batch = t.batch_size.min(shard).max(1);
        let accumulate = t.accumulate_steps.max(1) as u64;
        let micro_per_epoch = steps_per_epoch(shard, batch);
        let total_micro = match t.duration {
            Duration::Epochs(e) => e * micro_per_epoch,
            Duration::Steps(s) => s * accumulate,
        };
        Self {
            batch,
            accumulate,
            micro_per_epoch,
            total_micro,
            total_steps: total_micro.div_ceil(accumulate),
            total_epochs: total_micro.div_ceil(micro_per_epoch),
        }
    }

    /// 1-based epoch of the last micro-batch of optimizer step `done` (1-based).
    pub fn epoch_after(&self, done: u64) -> u64 {
        ((done * self.accumulate).min(self.total_micro) - 1) / self.micro_per_epoch + 1
    }

    /// Whether optimizer step `done` (1-based) finishes an epoch (or the run).
    pub fn ends_epoch(&self, done: u64) -> bool {
        let micro = (done * self.accumulate).min(self.total_micro);
        let before = ((done - 1) * self.accumulate).min(self.total_micro);
        micro / self.micro_per_epoch != before / self.micro_per_epoch || micro == self.total_micro
    }
}
