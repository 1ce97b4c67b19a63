//! Data-parallel helpers of the step loop: gradient buckets and their all-reduce, the stop flag
//! that rides along with the gradients, parameter broadcast and checksums. The flat buffers are
//! gathered from and scattered to the model's backend.

use std::ops::Range;

use crate::collective::{Collective, CollectiveError, ReduceOp};
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::Param;

/// Stop-flag values summed across ranks: any drain stops everyone after the step; a cancel wins.
pub const FLAG_DRAIN: f32 = 1.0;
pub const FLAG_CANCEL: f32 = 1024.0;

/// Parameters grouped into buckets of about `bucket_bytes`, in the order backward produces them
/// (last layer first).
pub struct Buckets {
    /// Per bucket: the parameter indices it holds (walked from last to first) and its element count.
    groups: Vec<(Range<usize>, usize)>,
    buffer: Vec<f32>,
}

impl Buckets {
    pub fn new(model: &Model, bucket_bytes: usize) -> Self {
        let sizes: Vec<usize> = model.params().map(Param::elem_count).collect();
        let limit = (bucket_bytes / 4).max(1);
        let mut groups: Vec<(Range<usize>, usize)> = Vec::new();
        for i in (0..sizes.len()).rev() {
            match groups.last_mut() {
                Some((ids, len)) if *len + sizes[i] <= limit => {
                    ids.start = i;
                    *len += sizes[i];
                }
                _ => groups.push((i..i + 1, sizes[i])),
            }
        }
        if groups.is_empty() {
            groups.push((0..0, 0));
        }
        let largest = groups.iter().map(|g| g.1).max().unwrap_or(0);
        Self { groups, buffer: Vec::with_capacity(largest + 1) }
    }

    pub fn count(&self) -> usize {
        self.groups.len()
    }

    /// The parameter indices (in model order) of bucket `b`; buckets count from the last layer.
    pub fn params_of(&self, b: usize) -> Range<usize> {
        self.groups[b].0.clone()
    }

    /// How many buckets, counted from the first, hold only parameters with index `first_final` or
    /// above: those whose gradients are final once backward has reached parameter `first_final`.
    pub fn ready(&self, first_final: usize) -> usize {
        self.groups.iter().take_while(|(ids, _)| ids.start >= first_final).count()
    }

    /// Sums every gradient across ranks, in place, with `flag` appended to the last bucket.
    /// Returns the flag summed over ranks.
    pub fn all_reduce(&mut self, model: &mut Model, collective: &mut dyn Collective, flag: f32) -> Result<f32> {
        let backend = model.backend().clone();
        let mut params: Vec<&mut Param> = model.params_mut().collect();
        let mut total_flag = 0.0;
        let last = self.groups.len() - 1;
        for (b, (ids, len)) in self.groups.iter().enumerate() {
            let bucket = &mut params[ids.clone()];
            self.buffer.clear();
            backend.gather_grads(&mut bucket.iter().rev().map(|p| &**p), &mut self.buffer)?;
            debug_assert_eq!(self.buffer.len(), *len);
            if b == last {
                self.buffer.push(flag);
            }
            collective.all_reduce(&mut self.buffer, ReduceOp::Sum)?;
            if b == last {
                total_flag = self.buffer.pop().unwrap_or(0.0);
            }
            backend.scatter_grads(&mut bucket.iter_mut().rev().map(|p| &mut **p), &self.buffer)?;
        }
        Ok(total_flag)
    }
}

/// All parameters as one flat vector, in model order.
pub fn flat_params(model: &Model) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(model.param_count());
    model.backend().gather_values(&mut model.params(), &mut out)?;
    Ok(out)
}

/// All gradients as one flat vector (zeros where a parameter got none).
pub fn flat_grads(model: &Model) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(model.param_count());
    model.backend().gather_grads(&mut model.params(), &mut out)?;
    Ok(out)
}

/// Sets every parameter from a flat vector laid out as [`flat_params`] makes it.
pub fn set_flat_params(model: &mut Model, flat: &[f32]) -> Result<()> {
    if flat.len() < model.param_count() {
        return Err(TrainError::ParamVector { needed: model.param_count(), len: flat.len() });
    }
    let backend = model.backend().clone();
    backend.scatter_values(&mut model.params_mut(), flat)?;
    Ok(())
}

/// Makes every rank's parameters equal to rank 0's.
pub fn broadcast_params(model: &mut Model, collective: &mut dyn Collective) -> Result<()> {
    let mut flat = flat_params(model)?;
    collective.broadcast(&mut flat, 0)?;
    set_flat_params(model, &flat)
}

/// FNV-1a over the bits of every parameter: equal on all ranks iff their parameters are equal
/// (up to hash collisions).
pub fn checksum(model: &Model) -> Result<u64> {
    Ok(model.backend().checksum(&mut model.params())?)
}

/// Compares parameter checksums across ranks; divergence is an error naming the ranks.
pub fn verify_in_step(model: &Model, collective: &mut dyn Collective, step: u64) -> Result<()> {
    let mine = checksum(model)?;
    let all = collective.all_gather_u64(mine)?;
    if let Some((rank, other)) = all.iter().enumerate().find(|(_, v)| **v != all[0]) {
        return Err(TrainError::RanksDiverged {
            step,
            detail: format!("parameters of rank {rank} (checksum {other:016x}) differ from rank 0 ({:016x})", all[0]),
        });
    }
    Ok(())
}

/// Rows `rank`, `rank + world`, ... of `0..rows` (a strided shard).
pub fn shard_rows(rows: usize, rank: usize, world: usize) -> Vec<usize> {
    (rank..rows).step_by(world.max(1)).collect()
}

/// Sums of evaluation statistics across ranks.
pub fn reduce_sums(sums: &mut [f64], collective: &mut dyn Collective) -> Result<(), CollectiveError> {
    let mut buf: Vec<f32> = sums.iter().map(|v| *v as f32).collect();
    collective.all_reduce(&mut buf, ReduceOp::Sum)?;
    for (s, v) in sums.iter_mut().zip(buf) {
        *s = f64::from(v);
    }
    Ok(())
}

/// The range of micro-batches that make up optimizer step `step`.
pub fn micro_range(step: u64, accumulate: u64, total_micro: u64) -> Range<u64> {
    let start = step * accumulate;
    start..(start + accumulate).min(total_micro)
}
