//! Validation: loss and accuracy (or R²) over a held-out set without gradients, as sums that ranks
//! or stages can combine before they become an [`EvalPoint`].

use std::time::Instant;

use super::report::EvalPoint;
use crate::backend::{Backend, Tensor};
use crate::collective::Collective;
use crate::data::{Dataset, TargetData};
use crate::distributed;
use crate::error::Result;
use crate::model::Model;
use crate::nn::loss::{Targets, loss_and_grad};
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// Rows per forward pass during validation.
pub const EVAL_BATCH: usize = 1024;

/// Evaluation sums: [loss, correct, rows, squared error, Σ targets, Σ targets²].
pub type EvalSums = [f64; 6];

/// Loss and accuracy (or R²) of the model over a dataset, without gradients. With peers, each
/// rank evaluates a strided shard and the sums are combined, so all ranks get the same result.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    threads: usize,
    step: u64,
    epoch: u64,
    started: Instant,
    collective: Option<&mut dyn Collective>,
) -> Result<EvalPoint> {
    Ok(eval_point(&shard_sums(model, data, threads, collective)?, data, step, epoch, started))
}

/// The evaluation sums of this rank's strided shard, combined across `collective`'s ranks.
pub fn shard_sums(
    model: &Model,
    data: &Dataset,
    threads: usize,
    collective: Option<&mut dyn Collective>,
) -> Result<EvalSums> {
    let (rank, world) = collective.as_ref().map_or((0, 1), |c| (c.rank(), c.world_size()));
    let rows = distributed::shard_rows(data.rows, rank, world);
    let mut sums = [0f64; 6];
    let mut ctx = Ctx::new(Mode::Eval, threads, Rng::new(0));
    for chunk in rows.chunks(EVAL_BATCH) {
        let (x, targets) = data.gather(chunk);
        let x = model.backend().batch_from_host(x, &[chunk.len(), data.features])?;
        let (out, _) = model.forward(&x, &mut ctx)?;
        eval_sums(model.backend().as_ref(), &mut sums, &out, &targets)?;
    }
    if let Some(c) = collective.filter(|c| c.world_size() > 1) {
        distributed::reduce_sums(&mut sums, c)?;
    }
    Ok(sums)
}

/// Adds one chunk of rows to `sums`.
pub fn eval_sums(backend: &dyn Backend, sums: &mut EvalSums, out: &Tensor, targets: &Targets) -> Result<()> {
    let l = loss_and_grad(backend, out, targets, 1.0)?;
    sums[0] += l.loss_sum;
    sums[1] += l.correct as f64;
    sums[2] += targets.rows() as f64;
    if let Targets::Values { values, width } = targets {
        sums[3] += l.loss_sum * *width as f64;
        sums[4] += values.iter().map(|&v| f64::from(v)).sum::<f64>();
        sums[5] += values.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
    }
    Ok(())
}

/// The validation result from summed [`eval_sums`].
pub fn eval_point(sums: &EvalSums, data: &Dataset, step: u64, epoch: u64, started: Instant) -> EvalPoint {
    let n = sums[2].max(1.0);
    let (accuracy, r2) = match &data.targets {
        TargetData::Classes { .. } => (Some(sums[1] / n), None),
        TargetData::Values { width, .. } => {
            let count = n * *width as f64;
            let total = sums[5] - sums[4] * sums[4] / count;
            (None, Some(if total > 0.0 { 1.0 - sums[3] / total } else { 0.0 }))
        }
    };
    EvalPoint { step, epoch, loss: sums[0] / n, accuracy, r2, elapsed_s: started.elapsed().as_secs_f64() }
}
