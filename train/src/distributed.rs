//! Data-parallel helpers of the step loop: gradient buckets and their all-reduce, the stop flag
//! that rides along with the gradients, parameter broadcast and checksums.

use std::ops::Range;

use crate::collective::{Collective, CollectiveError, ReduceOp};
use crate::error::{Result, TrainError};
use crate::model::Model;
use crate::nn::{Param, cpu};

/// Stop-flag values summed across ranks: any drain stops everyone after the step; a cancel wins.
pub const FLAG_DRAIN: f32 = 1.0;
pub const FLAG_CANCEL: f32 = 1024.0;

/// Parameters grouped into buckets of about `bucket_bytes`, in the order backward produces them
/// (last layer first).
pub struct Buckets {
    /// Per bucket: (parameter indices, element count).
    groups: Vec<(Vec<usize>, usize)>,
    buffer: Vec<f32>,
}

impl Buckets {
    pub fn new(model: &Model, bucket_bytes: usize) -> Self {
        let sizes: Vec<usize> = model.params().map(Param::elem_count).collect();
        let limit = (bucket_bytes / 4).max(1);
        let mut groups: Vec<(Vec<usize>, usize)> = Vec::new();
        for i in (0..sizes.len()).rev() {
            match groups.last_mut() {
                Some((ids, len)) if *len + sizes[i] <= limit => {
                    ids.push(i);
                    *len += sizes[i];
                }
                _ => groups.push((vec![i], sizes[i])),
            }
        }
        if groups.is_empty() {
            groups.push((Vec::new(), 0));
        }
        let largest = groups.iter().map(|g| g.1).max().unwrap_or(0);
        Self { groups, buffer: Vec::with_capacity(largest + 1) }
    }

    pub fn count(&self) -> usize {
        self.groups.len()
    }

    /// Sums every gradient across ranks, in place, with `flag` appended to the last bucket.
    /// Returns the flag summed over ranks.
    pub fn all_reduce(&mut self, model: &mut Model, collective: &mut dyn Collective, flag: f32) -> Result<f32> {
        let mut params: Vec<&mut Param> = model.params_mut().collect();
        let mut total_flag = 0.0;
        let last = self.groups.len() - 1;
        for (b, (ids, len)) in self.groups.iter().enumerate() {
            self.buffer.clear();
            for &i in ids {
                let p = &params[i];
                if p.grad_valid {
                    cpu::read(&p.grad, |g| {
                        self.buffer.extend_from_slice(g);
                        Ok(())
                    })?;
                } else {
                    self.buffer.resize(self.buffer.len() + p.elem_count(), 0.0);
                }
            }
            debug_assert_eq!(self.buffer.len(), *len);
            if b == last {
                self.buffer.push(flag);
            }
            collective.all_reduce(&mut self.buffer, ReduceOp::Sum)?;
            if b == last {
                total_flag = self.buffer.pop().unwrap_or(0.0);
            }
            let mut offset = 0;
            for &i in ids {
                let p = &mut params[i];
                let n = p.elem_count();
                let part = &self.buffer[offset..offset + n];
                if !p.grad.is_contiguous() {
                    p.grad = p.grad.contiguous()?;
                }
                cpu::update(&p.grad, |g| {
                    g.copy_from_slice(part);
                    Ok(())
                })?;
                p.grad_valid = true;
                offset += n;
            }
        }
        Ok(total_flag)
    }
}

/// All parameters as one flat vector, in model order.
pub fn flat_params(model: &Model) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(model.param_count());
    for p in model.params() {
        cpu::read(p.value.as_tensor(), |v| {
            out.extend_from_slice(v);
            Ok(())
        })?;
    }
    Ok(out)
}

/// All gradients as one flat vector (zeros where a parameter got none).
pub fn flat_grads(model: &Model) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(model.param_count());
    for p in model.params() {
        if p.grad_valid {
            cpu::read(&p.grad, |g| {
                out.extend_from_slice(g);
                Ok(())
            })?;
        } else {
            out.resize(out.len() + p.elem_count(), 0.0);
        }
    }
    Ok(out)
}

/// Sets every parameter from a flat vector laid out as [`flat_params`] makes it.
pub fn set_flat_params(model: &mut Model, flat: &[f32]) -> Result<()> {
    let mut offset = 0;
    for p in model.params_mut() {
        let n = p.elem_count();
        let part =
            flat.get(offset..offset + n).ok_or(TrainError::ParamVector { needed: offset + n, len: flat.len() })?;
        if cpu::is_cpu_f32(p.value.as_tensor()) && p.value.as_tensor().is_contiguous() {
            cpu::update(p.value.as_tensor(), |v| {
                v.copy_from_slice(part);
                Ok(())
            })?;
        } else {
            let t = candle_core::Tensor::from_slice(part, p.value.shape(), &candle_core::Device::Cpu)?;
            p.value.set(&t)?;
        }
        offset += n;
    }
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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in model.params() {
        cpu::read(p.value.as_tensor(), |v| {
            for x in v {
                h = (h ^ u64::from(x.to_bits())).wrapping_mul(0x100_0000_01b3);
            }
            Ok(())
        })?;
    }
    Ok(h)
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
