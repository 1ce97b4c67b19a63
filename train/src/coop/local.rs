//! What the data-parallel strategies share: the gradients of one optimizer step over this rank's
//! own micro-batches.

use crate::distributed;
use crate::engine::{Step, checked_loss};
use crate::error::Result;
use crate::model::Model;
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// Forward, loss and backward over the step's micro-batches, accumulating gradients in the model.
/// The loss of a micro-batch is scaled by its share of the step's rows, and by 1/`ranks_summed`
/// where that many ranks' gradients are summed afterwards (all-reduce).
pub(super) fn accumulate(s: &mut Step<'_>, rank: usize, world: usize, ranks_summed: f32) -> Result<()> {
    accumulate_observed(s, rank, world, ranks_summed, &mut |_, _| Ok(()))
}

/// [`accumulate`], with the last micro-batch's backward reporting each layer whose gradients are
/// final to `after` (see [`Model::backward_observed`]).
pub(super) fn accumulate_observed(
    s: &mut Step<'_>,
    rank: usize,
    world: usize,
    ranks_summed: f32,
    after: &mut dyn FnMut(&Model, usize) -> Result<()>,
) -> Result<()> {
    let micro = distributed::micro_range(s.step, s.plan.accumulate, s.plan.total_micro);
    let scale_div = (micro.end - micro.start) as f32 * ranks_summed;
    let seed = s.cfg.training.seed;
    let last = micro.end.saturating_sub(1);
    for m in micro {
        let Some(b) = s.next_batch()? else { break };
        let mut ctx =
            Ctx::new(Mode::Train, s.threads, Rng::derive(seed, "dropout", b.step * world as u64 + rank as u64));
        let (out, saved) = s.model.forward(&b.x, &mut ctx)?;
        let rows = b.rows();
        let loss = checked_loss(
            &mut *s.objective,
            s.model.backend().as_ref(),
            &b.x,
            &out,
            &b.targets,
            1.0 / (rows as f32 * scale_div),
            s.step,
        )?;
        if m == last {
            s.model.backward_observed(saved, loss.grad, s.threads, after)?;
        } else {
            s.model.backward(saved, loss.grad, s.threads)?;
        }
        s.window.record(loss.loss_sum, rows, loss.correct as f64);
    }
    Ok(())
}
