//! What the data-parallel strategies share: the whole model (possibly inheriting a parent's
//! weights) and the gradients of one optimizer step over this rank's own micro-batches.

use shoal_common::spec::{InheritConfig, TrainConfig};

use crate::checkpoint;
use crate::distributed;
use crate::engine::{RunOptions, Step, checked_loss};
use crate::error::Result;
use crate::model::{DataShape, Model};
use crate::nn::{Ctx, Mode};
use crate::rng::Rng;

/// The whole model, with the parent's weights when the job inherits them (and does not resume).
pub(super) fn whole_model(cfg: &TrainConfig, shape: &DataShape, opts: &RunOptions) -> Result<(Model, String)> {
    let mut model = Model::build(&cfg.model, shape, cfg.training.seed)?;
    let mut described = model.describe();
    if let (Some(inherit), None) = (&cfg.inherit, &opts.resume_from) {
        described = format!("{described}; {}", inherit_weights(&mut model, cfg, inherit, shape)?);
    }
    Ok((model, described))
}

/// Loads a parent's checkpoint into `model` through function-preserving morphs. Returns what was
/// done, for the job's log.
fn inherit_weights(model: &mut Model, cfg: &TrainConfig, inherit: &InheritConfig, shape: &DataShape) -> Result<String> {
    let dir = if inherit.checkpoint.join("model.safetensors").exists() {
        inherit.checkpoint.clone()
    } else {
        checkpoint::latest(&inherit.checkpoint).unwrap_or_else(|| inherit.checkpoint.clone())
    };
    let parent = checkpoint::load(&dir)?;
    let (params, morphs) = crate::morph::inherit(&inherit.model, &parent.model, &cfg.model, shape, cfg.training.seed)?;
    model.load_named(&params, &dir)?;
    Ok(format!("inherited from {} ({morphs})", dir.display()))
}

/// Forward, loss and backward over the step's micro-batches, accumulating gradients in the model.
/// The loss of a micro-batch is scaled by its share of the step's rows; `ranks_summed` more ranks'
/// gradients will be added to these (all-reduce), so each rank scales its share by that too.
pub(super) fn accumulate(s: &mut Step<'_>, rank: usize, world: usize, ranks_summed: f32) -> Result<()> {
    let micro = distributed::micro_range(s.step, s.plan.accumulate, s.plan.total_micro);
    let scale_div = (micro.end - micro.start) as f32 * ranks_summed;
    let seed = s.cfg.training.seed;
    for _ in micro {
        let Some(b) = s.next_batch()? else { break };
        let mut ctx =
            Ctx::new(Mode::Train, s.threads, Rng::derive(seed, "dropout", b.step * world as u64 + rank as u64));
        let (out, saved) = s.model.forward(&b.x, &mut ctx)?;
        let rows = b.rows();
        let loss = checked_loss(&mut *s.objective, s.model.backend().as_ref(), &b.x, &out, &b.targets, 1.0 / (rows as f32 * scale_div), s.step)?;
        s.model.backward(saved, loss.grad, s.threads)?;
        s.window.record(loss.loss_sum, rows, loss.correct as f64);
    }
    Ok(())
}
